"""Recommendations from metered usage, each with its monthly saving: an idle endpoint, an
over-provisioned variant, steady capacity cheaper reserved (with its break-even), an on-demand
job cheaper on spot (with the project's preemptions); functions and deleted endpoints are left
alone, and a bad window is a clear error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stratus.billing.metering import Amount, Line, Usage, write_usage
from stratus.billing.prices import HOURS_PER_MONTH, shipped_catalog
from stratus.billing.recommendations import Recommender
from stratus.billing.service import BillingService
from stratus.compute.instance_types import InstanceCatalog
from stratus.core.database import Database
from stratus.core.errors import InvalidInput
from stratus.endpoints import schemas as es
from stratus.endpoints.service import DesiredEndpoint

NOW = datetime(2026, 12, 20, 12, 0, tzinfo=UTC)
DAYS = 14
HOURS = DAYS * 24.0
PRICES = shipped_catalog().instance_types


def endpoint(name: str, replicas: int = 1, autoscaled: bool = False) -> DesiredEndpoint:
    scaling = es.Autoscaling(min_replicas=1, max_replicas=4) if autoscaled else None
    variant = es.VariantSpec(
        name="main", model=f"{name}-model:3", version=3, replicas=replicas, autoscaling=scaling
    )
    return DesiredEndpoint(
        uid=f"u-{name}", project="p", name=name, public=False, revision=1,
        variants=[variant], capture=es.CaptureSpec(),
    )  # fmt: skip


def used(
    db: Database,
    subject: str,
    *,
    replicas: float,
    requests: int,
    busy_share: float,
    meter: str = "replica",
    pricing: str = "on_demand",
    instance_type: str = "cpu.small",
    days: int = DAYS + 1,
) -> float:
    """`replicas` running for `days` days up to now (by default from the window's first day
    on), spread over its days; the cost written."""
    line = Line(
        project="p",
        meter=meter,
        subject_kind="endpoint" if meter == "replica" else "job",
        subject=subject,
        pricing=pricing,
        catalog_version=1,
        variant="main" if meter == "replica" else "",
        instance_type=instance_type,
    )
    usage, total = Usage(), 0.0
    rate = PRICES[instance_type].on_demand if pricing != "per_request" else 0.0
    for day in range(days):
        end = NOW - timedelta(days=day, hours=1)
        seconds = replicas * 86400.0
        cost = seconds / 3600.0 * rate
        total += cost
        amount = Amount(seconds=seconds, requests=requests // DAYS,
                        request_seconds=seconds * busy_share, cost=cost)  # fmt: skip
        usage.add(line, end - timedelta(hours=1), end, amount)
    with db.transaction() as session:
        write_usage(session, usage)
    return total


def test_recommendations_with_their_savings(db: Database, billing: BillingService) -> None:
    quiet = used(db, "quiet", replicas=1, requests=0, busy_share=0)
    used(db, "wide", replicas=4, requests=1400, busy_share=0.02)
    used(db, "steady", replicas=2, requests=14000, busy_share=0.6)
    used(db, "fn", replicas=1, requests=0, busy_share=0, pricing="per_request")
    used(db, "gone", replicas=1, requests=0, busy_share=0)  # deleted since
    used(db, "new", replicas=1, requests=0, busy_share=0, days=2)  # too new to say it is idle
    job_hours = 10.0
    line = Line(project="p", meter="job", subject_kind="job", subject="train",
                pricing="on_demand", catalog_version=1, instance_type="cpu.large")  # fmt: skip
    usage = Usage()
    cost = job_hours * PRICES["cpu.large"].on_demand
    ran = Amount(seconds=job_hours * 3600, cost=cost)
    usage.add(line, NOW - timedelta(days=2, hours=10), NOW - timedelta(days=2), ran)
    with db.transaction() as session:
        write_usage(session, usage)
    live = [endpoint("quiet"), endpoint("wide", replicas=4), endpoint("steady", replicas=2),
            endpoint("fn"), endpoint("new")]  # fmt: skip
    recommender = Recommender(
        db, InstanceCatalog.load(), billing.prices, lambda: live, lambda project, since: 3
    )
    found = recommender.recommend(["p"], DAYS, NOW)
    by_subject = {r.subject: r for r in found.items}
    assert set(by_subject) == {"quiet", "wide/main", "steady/main", "train"}

    idle = by_subject["quiet"]
    assert idle.kind == "idle-endpoint" and "no request in 14 days" in idle.reason
    assert idle.monthly_saving == pytest.approx(quiet * HOURS_PER_MONTH / HOURS, abs=0.01)
    assert "--model quiet-model:3 --min-replicas 0" in idle.action

    wide = by_subject["wide/main"]
    small = PRICES["cpu.small"]
    assert wide.kind == "over-provisioned" and "busy 2.0%" in wide.reason
    assert "--replicas 1" in wide.action
    assert wide.monthly_saving == pytest.approx(3 * small.on_demand * HOURS_PER_MONTH, abs=0.01)

    steady = by_subject["steady/main"]
    assert steady.kind == "reserved" and "reserve 2 × cpu.small" in steady.action
    assert f"{small.reserved / small.on_demand:.0%} of the hours" in steady.reason
    assert steady.monthly_saving == pytest.approx(
        2 * (small.on_demand - small.reserved) * HOURS_PER_MONTH, abs=0.01
    )

    spot = by_subject["train"]
    large = PRICES["cpu.large"]
    assert spot.kind == "spot-job" and "preempted 3 times" in spot.reason
    assert spot.monthly_saving == pytest.approx(
        (large.on_demand - large.spot) * job_hours * HOURS_PER_MONTH / HOURS, abs=0.01
    )
    assert found.items[0].monthly_saving >= found.items[-1].monthly_saving  # largest first
    assert found.total_monthly_saving == pytest.approx(
        sum(r.monthly_saving for r in found.items), abs=0.01
    )
    assert recommender.recommend(["other"], DAYS, NOW).items == []
    with pytest.raises(InvalidInput, match="days"):
        recommender.recommend(["p"], 0, NOW)
