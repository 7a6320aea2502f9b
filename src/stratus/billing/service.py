"""Billing: the versioned price catalog, and cost reports read from the hourly usage lines.

Every figure of a report is a sum of metered lines, each priced when it was metered at the
catalog version it names: the lines of a report add up to its total, and its total to what
the catalog's prices give for the metered usage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select

from stratus.billing import schemas as s
from stratus.billing.prices import PriceCatalog, shipped_catalog, validate_catalog
from stratus.billing.tables import MeterStateRow, PriceCatalogRow, UsageDailyRow, UsageRow
from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.errors import InvalidInput

MAX_REPORT_DAYS = 400
MAX_HOURLY_DAYS = 31
# a job's lines name the model version it made once it has made one; before, the job's
# report maps them (project, job) -> "model:version"
JobModels = Callable[[str, Sequence[str]], dict[str, str]]


class BillingService:
    def __init__(self, db: Database, job_models: JobModels | None = None) -> None:
        self.db = db
        self.job_models = job_models or (lambda project, names: {})
        self._lock = threading.Lock()
        self._current: tuple[int, PriceCatalog] | None = None

    # --- prices ------------------------------------------------------------------------------

    def prices(self) -> tuple[int, PriceCatalog]:
        """The current catalog and its version (the shipped one, as version 1, at first)."""
        current = self._current
        if current is not None:
            return current
        with self._lock:
            if self._current is None:
                with self.db.transaction() as session:
                    row = session.scalars(
                        select(PriceCatalogRow).order_by(PriceCatalogRow.version.desc()).limit(1)
                    ).first()
                    if row is None:
                        catalog = shipped_catalog()
                        row = PriceCatalogRow(
                            version=1, document=catalog.model_dump(mode="json"), created_by=""
                        )
                        session.add(row)
                        session.flush()
                    self._current = (row.version, PriceCatalog.model_validate(row.document))
            return self._current

    def read_prices(self, version: int | None = None) -> s.PricesRead:
        current, _ = self.prices()
        wanted = current if version is None else version
        with self.db.transaction() as session:
            row = session.get(PriceCatalogRow, wanted)
            if row is None:
                raise InvalidInput(f"no price catalog version {wanted} (the newest is {current})")
            return _prices_read(row)

    def price_versions(self) -> list[s.PricesRead]:
        self.prices()
        with self.db.transaction() as session:
            rows = session.scalars(
                select(PriceCatalogRow).order_by(PriceCatalogRow.version.desc())
            ).all()
            return [_prices_read(row) for row in rows]

    def apply_prices(self, document: dict[str, Any], *, actor: str) -> s.PricesRead:
        """A new catalog version; usage metered from now on is priced by it."""
        catalog = validate_catalog(document, "the request")
        self.prices()
        with self._lock, self.db.transaction() as session:
            newest = session.scalar(select(func.max(PriceCatalogRow.version))) or 0
            row = PriceCatalogRow(
                version=newest + 1, document=catalog.model_dump(mode="json"), created_by=actor
            )
            session.add(row)
            session.flush()
            read = _prices_read(row)
            self._current = None  # read again after the commit
        return read

    # --- reports -----------------------------------------------------------------------------

    def report(
        self,
        projects: list[str] | None,
        *,
        by: s.By,
        start: datetime | None,
        end: datetime | None,
        granularity: s.Granularity,
        now: datetime | None = None,
    ) -> s.CostReport:
        """Costs between `start` and `end` (default: this month to now), grouped by `by` and
        period, for `projects` (None: every project)."""
        now = now or utcnow()
        month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        start = as_utc(start) if start else month
        end = as_utc(end) if end else now
        if end <= start:
            raise InvalidInput(f"the report's end ({end:%Y-%m-%d %H:%M}) is not after its start")
        if end - start > timedelta(days=MAX_REPORT_DAYS):
            raise InvalidInput(f"a report covers at most {MAX_REPORT_DAYS} days")
        if granularity is s.Granularity.hour and end - start > timedelta(days=MAX_HOURLY_DAYS):
            raise InvalidInput(
                f"an hourly report covers at most {MAX_HOURLY_DAYS} days; use --granularity day"
            )
        lines = self._lines(projects, by, _hour_floor(start), end, granularity)
        catalog = self.prices()[1]
        with self.db.transaction() as session:
            metered = session.get(MeterStateRow, "jobs")
            metered_until = as_utc(metered.metered_until) if metered else None
        return s.CostReport(
            currency=catalog.currency,
            by=by,
            granularity=granularity,
            start=start,
            end=end,
            lines=lines,
            total=round(sum(line.cost for line in lines), 9),
            idle_total=round(sum(line.idle_cost for line in lines), 9),
            forecast=self.forecast(projects, now),
            metered_until=metered_until,
        )

    def _lines(
        self,
        projects: list[str] | None,
        by: s.By,
        start: datetime,
        end: datetime,
        granularity: s.Granularity,
    ) -> list[s.CostLine]:
        hourly = granularity is s.Granularity.hour
        u: Any = UsageRow if hourly else UsageDailyRow
        period: Any = {
            s.Granularity.hour: UsageRow.hour,
            s.Granularity.day: UsageDailyRow.day,
            s.Granularity.total: None,
        }[granularity]
        names: list[Any] = {
            s.By.project: [],
            s.By.endpoint: [u.subject],
            s.By.model: [u.model_version, u.meter, u.subject],
            s.By.job: [u.subject],
            s.By.instance_type: [u.instance_type],
        }[by]
        keep: Any = {
            s.By.project: None,
            s.By.endpoint: or_(u.meter == "replica", u.subject_kind == "capture"),
            s.By.model: u.meter.in_(("replica", "job")),
            s.By.job: u.meter == "job",
            s.By.instance_type: u.instance_type != "",
        }[by]
        groups = ([period] if period is not None else []) + [u.project, *names]
        if hourly:
            conditions = [u.hour >= start, u.hour < end]
        else:  # whole UTC days: from start's day to the day end falls in
            conditions = [u.day >= _day(start), u.day <= _day(end - timedelta(microseconds=1))]
        if projects is not None:
            conditions.append(u.project.in_(projects))
        if keep is not None:
            conditions.append(keep)
        query = (
            select(
                *groups,
                func.sum(u.cost),
                func.sum(case((u.idle, u.cost), else_=0.0)),
                func.sum(u.requests),
                func.sum(u.seconds),
                func.sum(u.gib_hours),
                func.sum(u.preempted_seconds),
            )
            .where(and_(*conditions))
            .group_by(*groups)
        )
        with self.db.transaction() as session:
            rows = session.execute(query).all()
        merged: dict[tuple[str, str, str], list[float]] = {}
        jobs_to_map: dict[str, set[str]] = {}
        for row in rows:
            values = list(row)
            when = ""
            if period is not None:
                first = values.pop(0)
                when = as_utc(first).isoformat() if isinstance(first, datetime) else str(first)
            project = values.pop(0)
            if by is s.By.model:
                model_version, meter, subject = values[:3]
                if not model_version and meter == "job":
                    jobs_to_map.setdefault(project, set()).add(subject)
                    name = f"\x00job:{subject}"
                else:
                    name = model_version
                values = values[3:]
            elif names:
                name = values.pop(0)
            else:
                name = ""
            figures = merged.setdefault((when, project, name), [0.0] * 6)
            for i, value in enumerate(values):
                figures[i] += float(value or 0)
        if jobs_to_map:
            merged = self._jobs_to_models(merged, jobs_to_map)
        lines = []
        for (when, project, name), figures in sorted(merged.items()):
            cost, idle, requests, seconds, gib_hours, preempted = figures
            count = int(requests)
            lines.append(
                s.CostLine(
                    period=when,
                    project=project,
                    name=name,
                    cost=round(cost, 9),
                    idle_cost=round(idle, 9),
                    requests=count,
                    cost_per_request=float(f"{cost / count:.6g}") if count else None,
                    instance_hours=round(seconds / 3600.0, 9),
                    preempted_hours=round(preempted / 3600.0, 9),
                    gib_hours=round(gib_hours, 9),
                )
            )
        return lines

    def _jobs_to_models(
        self, merged: dict[tuple[str, str, str], list[float]], jobs: dict[str, set[str]]
    ) -> dict[tuple[str, str, str], list[float]]:
        """Lines of jobs metered before they made a model: under the model they made, or
        `(job NAME)` when they made none."""
        made = {project: self.job_models(project, sorted(names)) for project, names in jobs.items()}
        out: dict[tuple[str, str, str], list[float]] = {}
        for (when, project, name), figures in merged.items():
            if name.startswith("\x00job:"):
                job = name[len("\x00job:") :]
                name = made.get(project, {}).get(job) or f"(job {job})"
            into = out.setdefault((when, project, name), [0.0] * 6)
            for i, value in enumerate(figures):
                into[i] += value
        return out

    def forecast(self, projects: list[str] | None, now: datetime | None = None) -> s.Forecast:
        """This month's spend so far, and where the last 24 hours' rate takes it by the end."""
        now = now or utcnow()
        month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        next_month = (month + timedelta(days=32)).replace(day=1)
        day_ago = now - timedelta(hours=24)
        since = max(_hour_floor(day_ago), month)
        daily = [UsageDailyRow.day >= _day(month)]
        hourly = [UsageRow.hour >= since]
        if projects is not None:
            daily.append(UsageDailyRow.project.in_(projects))
            hourly.append(UsageRow.project.in_(projects))
        with self.db.transaction() as session:
            to_date = float(
                session.scalar(select(func.sum(UsageDailyRow.cost)).where(and_(*daily))) or 0.0
            )
            recent = float(
                session.scalar(select(func.sum(UsageRow.cost)).where(and_(*hourly))) or 0.0
            )
        # the recent window runs from the start of the hour a day ago (or the month's start)
        window = (now - since).total_seconds() / 3600.0
        rate = recent / window if window > 0 else 0.0
        left = (next_month - now).total_seconds() / 3600.0
        return s.Forecast(
            month=month.strftime("%Y-%m"),
            to_date=round(to_date, 9),
            projected=round(to_date + rate * left, 9),
        )

    def month_to_date(self, now: datetime | None = None) -> dict[str, float]:
        """Each project's spend this month (for the Prometheus gauge)."""
        now = now or utcnow()
        month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        with self.db.transaction() as session:
            rows = session.execute(
                select(UsageDailyRow.project, func.sum(UsageDailyRow.cost))
                .where(UsageDailyRow.day >= _day(month))
                .group_by(UsageDailyRow.project)
            ).all()
        return {project: float(cost or 0) for project, cost in rows}


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def _hour_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _prices_read(row: PriceCatalogRow) -> s.PricesRead:
    return s.PricesRead(
        version=row.version,
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
        catalog=row.document,
    )
