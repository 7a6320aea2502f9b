"""Budgets on a real, migrated platform in this process (no controller running), with spend
written as the meter writes it and a clock the test moves: each threshold is told once a month,
a freeze refuses what adds capacity (not what shrinks), holds autoscaled endpoints at their
minimum through `capped`, stops spot jobs and is audited; it lifts when the budget is raised or
the month turns."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from stratus.api.platform import Platform
from stratus.billing import schemas as s
from stratus.billing.metering import Amount, Line, Usage, write_usage
from stratus.core.errors import BudgetExceeded
from stratus.iam.principals import Principal
from stratus.iam.tables import AuditEventRow
from stratus.jobs import schemas as js
from stratus.jobs.schemas import JobPhase

ADMIN = Principal(kind="user", uid="u-admin", name="admin", is_admin=True)
NOW = datetime(2026, 12, 20, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def platform(embedded_platform: Callable[..., Platform]) -> Platform:
    return embedded_platform()


@pytest.fixture
def clock(platform: Platform) -> Clock:
    made = Clock()
    platform.budgets.clock = made
    return made


def spend(platform: Platform, dollars: float, at: datetime) -> None:
    line = Line(project="default", meter="job", subject_kind="job", subject="train",
                pricing="on_demand", catalog_version=1)  # fmt: skip
    usage = Usage()
    usage.add(line, at - timedelta(minutes=1), at, Amount(seconds=60, cost=dollars))
    with platform.db.transaction() as session:
        write_usage(session, usage)


def audited(platform: Platform) -> list[str]:
    with platform.db.transaction() as session:
        return list(
            session.scalars(
                select(AuditEventRow.action)
                .where(AuditEventRow.action.like("budgets.%"))
                .order_by(AuditEventRow.seq)
            )
        )


def submit(platform: Platform, name: str, spot: bool = False) -> js.JobRead:
    trainer = js.TrainerSpec(estimator="sklearn.dummy.DummyClassifier")
    data = js.JobCreate.model_construct(
        name=name, trainer=trainer, spot=spot, instance_type="cpu.nano"
    )
    job, _ = platform.jobs.submit("default", data, ADMIN)
    return job


def test_thresholds_are_told_once_a_month_and_a_freeze_acts_then_lifts(
    platform: Platform, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    told: list[dict[str, Any]] = []
    real_notify = platform.alerts.notify

    def notify(project: str, rule: str, channels: list[str], **kw: Any) -> None:
        told.append({"rule": rule, **kw})
        real_notify(project, rule, channels, **kw)

    monkeypatch.setattr(platform.alerts, "notify", notify)
    budgets = platform.budgets
    spot = submit(platform, "spot-sweep", spot=True)
    budgets.apply(
        "default",
        s.BudgetApply(
            amount=100.0,
            thresholds=[s.Threshold(percent=50), s.Threshold(percent=100)],
            action="freeze",
        ),
        actor="user:admin",
    )
    spend(platform, 60.0, clock.now - timedelta(hours=1))
    budgets.evaluate()
    budgets.evaluate()  # told once, not every pass
    assert [t["labels"]["percent"] for t in told] == ["50"]
    assert budgets.capped("default") is None
    assert not budgets.get("default", "monthly").status.frozen

    spend(platform, 45.0, clock.now)
    budgets.evaluate()
    assert [t["labels"]["percent"] for t in told] == ["50", "100"]
    assert told[-1]["severity"] == "critical"
    read = budgets.get("default", "monthly")
    assert read.status.frozen and read.status.spent == pytest.approx(105.0)
    assert "budget 'monthly'" in (budgets.capped("default") or "")
    assert platform.jobs.get("default", spot.metadata.name).status.phase == JobPhase.cancelled
    with pytest.raises(BudgetExceeded, match="new jobs that add capacity are refused"):
        submit(platform, "another")
    assert [j.metadata.name for j in platform.jobs.list_jobs("default", None, None, None)[0]] == [
        spot.metadata.name
    ]  # nothing half-made
    # the alert history has both crossings, with the budget's labels
    history, _ = platform.alerts.history("default", "budget-monthly", None, None, None)
    assert len(history) == 2

    budgets.apply(
        "default", s.BudgetApply(amount=200.0, action="freeze"), actor="user:admin"
    )  # raised past the spend: lifted at once
    raised = budgets.get("default", "monthly")
    assert not raised.status.frozen
    crossed = [(c.percent, c.basis) for c in raised.status.crossed]
    assert crossed == [(50, "actual"), (100, "forecast")]  # afresh: 105 of 200, and the rate
    assert budgets.capped("default") is None
    submit(platform, "allowed")
    assert audited(platform) == ["budgets.freeze", "budgets.stop-spot-job", "budgets.lift"]


def test_the_month_turning_lifts_a_freeze_and_starts_the_thresholds_over(
    platform: Platform, clock: Clock
) -> None:
    budgets = platform.budgets
    budgets.apply("default", s.BudgetApply(amount=10.0, action="freeze"), actor="user:admin")
    spend(platform, 12.0, clock.now)
    budgets.evaluate()
    assert budgets.get("default", "monthly").status.frozen
    clock.now = datetime(2027, 1, 1, 0, 5, tzinfo=UTC)
    budgets.evaluate()
    status = budgets.get("default", "monthly").status
    assert status.month == "2027-01" and not status.frozen and status.crossed == []
    assert status.spent == 0
    submit(platform, "new-month")
    assert audited(platform)[-1] == "budgets.lift"


def test_a_frozen_project_may_still_shrink_and_roll_over(platform: Platform, clock: Clock) -> None:
    from stratus.core.demand import Demand, Resource

    budgets = platform.budgets
    budgets.apply("default", s.BudgetApply(amount=1.0, action="freeze"), actor="user:admin")
    spend(platform, 2.0, clock.now)
    budgets.evaluate()
    with platform.db.transaction() as session:
        uid = platform.iam.project_uid(session, "default")
        shrink = Demand("default", uid, "endpoint", {Resource.replicas: -1})
        platform.blobs.admission.check(session, shrink)  # nothing grows: admitted
        upload = Demand("default", uid, "upload", {Resource.stored_bytes: 10})
        budgets.check(session, upload)  # bytes are the quota's business, not the budget's
        with pytest.raises(BudgetExceeded):
            budgets.check(session, Demand("default", uid, "endpoint", {Resource.replicas: 1}))
