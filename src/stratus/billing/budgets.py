"""Budgets that act: a monthly amount per project, thresholds on what is spent or forecast, alert
channels told of each crossing, and an optional action once the month's spend reaches the
amount.

Budgets are evaluated after every metering pass (so within a pass and a half of the usage that
crosses one): each threshold of this month's spend (or forecast) that is crossed for the first
time this month is written to the project's alert history, audited and sent to the budget's
channels. A `freeze` budget whose spend reaches 100 % freezes its project: new jobs and deploys
that add capacity are refused (403 `budget-exceeded`, through `core.demand`), autoscaled
endpoints are held at their minimum (the endpoint controller reads `capped`), and spot jobs are
cancelled; all of it audited. The freeze lifts when the budget is raised past the spend (or
deleted) or the month turns, at the next evaluation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from stratus.billing import schemas as s
from stratus.billing.schemas import money
from stratus.billing.service import BillingService
from stratus.billing.tables import BudgetRow
from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.demand import Demand
from stratus.core.errors import BudgetExceeded, NotFound, StratusError
from stratus.iam.audit import AuditLog
from stratus.iam.tables import ProjectRow
from stratus.jobs.schemas import JobPhase
from stratus.jobs.service import JobService
from stratus.monitoring.alerts import AlertService

log = logging.getLogger("stratus.billing")

ProjectLookup = Callable[[Session, str], str]
FROZEN_KINDS = ("endpoint", "job")  # what a frozen project may not grow


class Budgets:
    def __init__(
        self,
        db: Database,
        billing: BillingService,
        alerts: AlertService,
        jobs: JobService,
        audit: AuditLog,
        project_uid: ProjectLookup,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.billing = billing
        self.alerts = alerts
        self.jobs = jobs
        self.audit = audit
        self._project_uid = project_uid
        self.clock = clock
        self.on_change: Callable[[], None] = lambda: None
        self._frozen: dict[str, str] = {}  # project -> why (for the endpoint controller)
        self._lock = threading.Lock()

    # --- the API -----------------------------------------------------------------------------

    def apply(self, project: str, data: s.BudgetApply, *, actor: str) -> s.BudgetRead:
        """Create or replace a budget; it is evaluated at once (a raise lifts a freeze)."""
        if data.channels:
            self.alerts.check_channels(project, data.channels)
        with self.db.transaction() as session:
            uid = self._project_uid(session, project)
            row = session.scalar(
                select(BudgetRow).where(BudgetRow.project_uid == uid, BudgetRow.name == data.name)
            )
            if row is None:
                row = BudgetRow(project_uid=uid, name=data.name, status={})
                session.add(row)
            spec = data.model_dump(mode="json")
            if row.spec and (row.spec.get("amount"), row.spec.get("thresholds")) != (
                spec["amount"],
                spec["thresholds"],
            ):  # a new amount: its thresholds are crossed afresh
                row.status = {**(row.status or {}), "crossed": []}
            row.spec = spec
            row.updated_at, row.updated_by = self.clock(), actor
            session.flush()
        self.evaluate()
        self.on_change()
        return self.get(project, data.name)

    def list(self, project: str) -> list[s.BudgetRead]:
        currency = self.billing.prices()[1].currency  # (its own transaction, first)
        with self.db.transaction() as session:
            uid = self._project_uid(session, project)
            rows = session.scalars(
                select(BudgetRow).where(BudgetRow.project_uid == uid).order_by(BudgetRow.name)
            ).all()
            return [self._read(project, row, currency) for row in rows]

    def get(self, project: str, name: str) -> s.BudgetRead:
        currency = self.billing.prices()[1].currency
        with self.db.transaction() as session:
            return self._read(project, self._row(session, project, name), currency)

    def delete(self, project: str, name: str) -> None:
        with self.db.transaction() as session:
            session.delete(self._row(session, project, name))
        self.evaluate()
        self.on_change()

    def _row(self, session: Session, project: str, name: str) -> BudgetRow:
        uid = self._project_uid(session, project)
        row = session.scalar(
            select(BudgetRow).where(BudgetRow.project_uid == uid, BudgetRow.name == name)
        )
        if row is None:
            raise NotFound(f"budget {name!r} not found in project {project!r}")
        return row

    @staticmethod
    def _read(project: str, row: BudgetRow, currency: str) -> s.BudgetRead:
        return s.BudgetRead(
            project=project,
            name=row.name,
            spec=s.BudgetApply.model_validate(row.spec),
            status=s.BudgetStatus.model_validate(row.status or {}),
            currency=currency,
            updated_at=as_utc(row.updated_at),
            updated_by=row.updated_by,
        )

    # --- what the others read ----------------------------------------------------------------

    def capped(self, project: str) -> str | None:
        """Why the project's autoscaled endpoints are held at their minimum, or None."""
        return self._frozen.get(project)

    def check(self, session: Session, demand: Demand) -> None:
        """The `core.demand` check: a frozen project adds no jobs and no replicas."""
        if demand.kind not in FROZEN_KINDS:
            return
        month = self.clock().strftime("%Y-%m")
        for row in session.scalars(
            select(BudgetRow).where(BudgetRow.project_uid == demand.project_uid)
        ):
            status = row.status or {}
            if status.get("frozen") and status.get("month") == month:
                spec = s.BudgetApply.model_validate(row.spec)
                raise BudgetExceeded(
                    f"project {demand.project!r} has spent its budget {row.name!r} "
                    f"({money(status.get('spent', 0))} of {money(spec.amount)} this month): new "
                    f"{demand.kind}s that add capacity are refused until the budget is raised "
                    "or the month turns (stratus budgets apply)",
                    budget=row.name,
                    amount=spec.amount,
                    spent=status.get("spent", 0),
                )

    # --- evaluation --------------------------------------------------------------------------

    def evaluate(self) -> None:
        """Every budget against this month's spend: crossings told, freezes set and lifted."""
        with self._lock:
            self._evaluate()

    def _evaluate(self) -> None:
        now = self.clock()
        month = now.strftime("%Y-%m")
        with self.db.transaction() as session:
            found = session.execute(
                select(BudgetRow, ProjectRow.name).join(
                    ProjectRow, ProjectRow.uid == BudgetRow.project_uid
                )
            ).all()
            budgets = [(row.id, project, row.name, row.spec, dict(row.status or {}))
                       for row, project in found]  # fmt: skip
        spend: dict[str, s.Forecast] = {}
        frozen: dict[str, str] = {}
        for budget_id, project, name, raw_spec, status in budgets:
            spec = s.BudgetApply.model_validate(raw_spec)
            if project not in spend:
                spend[project] = self.billing.forecast([project], now)
            figures = spend[project]
            if status.get("month") != month:  # a new month: nothing crossed, no freeze
                if status.get("frozen"):
                    self._audit("budgets.lift", project, name, {"reason": "the month turned"})
                status = {"month": month, "crossed": [], "frozen": False}
            crossed = list(status.get("crossed", []))
            for threshold in spec.thresholds:
                value = figures.to_date if threshold.basis == "actual" else figures.projected
                limit = spec.amount * threshold.percent / 100.0
                done = any(
                    c["percent"] == threshold.percent and c["basis"] == threshold.basis
                    for c in crossed
                )
                if value >= limit and not done:
                    self._tell(project, name, spec, threshold, value)
                    crossed.append(
                        {"percent": threshold.percent, "basis": threshold.basis,
                         "at": now.isoformat(), "value": round(value, 9)}
                    )  # fmt: skip
            over = figures.to_date >= spec.amount
            was_frozen = bool(status.get("frozen"))
            is_frozen = spec.action == "freeze" and over
            if is_frozen and not was_frozen:
                status["frozen_since"] = now.isoformat()
                self._audit(
                    "budgets.freeze", project, name,
                    {"spent": figures.to_date, "amount": spec.amount},
                )  # fmt: skip
            elif was_frozen and not is_frozen:
                status["frozen_since"] = None
                reason = "raised" if spec.action == "freeze" else "its action was removed"
                details = {"reason": f"the budget was {reason}", "amount": spec.amount}
                self._audit("budgets.lift", project, name, details)
            if is_frozen:
                frozen[project] = f"budget {name!r} of project {project!r} is spent"
                self._stop_spot_jobs(project, name)
            status.update(
                month=month,
                spent=round(figures.to_date, 9),
                forecast=round(figures.projected, 9),
                crossed=crossed,
                frozen=is_frozen,
                evaluated_at=now.isoformat(),
            )
            with self.db.transaction() as session:
                row = session.get(BudgetRow, budget_id)
                if row is not None:
                    row.status = status
        self._frozen = frozen

    def _tell(
        self, project: str, name: str, spec: s.BudgetApply, threshold: s.Threshold, value: float
    ) -> None:
        currency = self.billing.prices()[1].currency
        what = "spent" if threshold.basis == "actual" else "forecast for the month"
        summary = (
            f"budget {name!r} of project {project!r}: {money(value)} {currency} {what}, "
            f"{threshold.percent:g} % of {money(spec.amount)}"
        )
        try:
            self.alerts.notify(
                project,
                f"budget-{name}",
                spec.channels,
                summary=summary,
                metric="stratus_cost_month_to_date"
                if threshold.basis == "actual"
                else "stratus_cost_month_forecast",
                value=value,
                threshold=spec.amount * threshold.percent / 100.0,
                labels={
                    "budget": name,
                    "percent": f"{threshold.percent:g}",
                    "basis": threshold.basis,
                },  # fmt: skip
                source="budget",
                severity="critical" if threshold.percent >= 100 else "warning",
            )
        except StratusError as exc:  # a channel deleted since: the crossing still counts
            log.warning("budget %s/%s: cannot notify: %s", project, name, exc.detail)

    def _stop_spot_jobs(self, project: str, budget: str) -> None:
        for job in self.jobs.active():
            if job.project != project or not job.spec.spot:
                continue
            if job.phase not in (JobPhase.queued, JobPhase.running):
                continue
            try:
                self.jobs.cancel(project, job.name)
            except StratusError as exc:
                log.warning("budget %s/%s: cannot stop spot job %s: %s", project, budget,
                            job.name, exc.detail)  # fmt: skip
                continue
            self._audit("budgets.stop-spot-job", project, budget, {"job": job.name})

    def _audit(self, action: str, project: str, budget: str, details: dict[str, Any]) -> None:
        self.audit.record(
            "system:billing",
            action,
            f"/api/v1/projects/{project}/budgets/{budget}",
            project,
            details,
        )
