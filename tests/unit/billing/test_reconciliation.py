"""Every figure reconciles: over random replicas, jobs and buckets metered at random pass times
(starts and stops between passes, hours crossed, the meter restarted), the cost report's lines
by endpoint, job and storage add up to its total, idle is a part of the endpoints' cost, and the
total equals what the catalog's prices give for the capacity-time that was used, to 0.1 %. On
SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from conftest import T0, World, make_meter
from stratus.billing import schemas as s
from stratus.billing.prices import HOURS_PER_MONTH, shipped_catalog
from stratus.billing.service import BillingService
from stratus.billing.tables import MeterStateRow, UsageDailyRow, UsageRecordRow, UsageRow
from stratus.compute.instance_types import InstanceCatalog
from stratus.core.database import Database
from stratus.endpoints.controller import ReplicaUsage
from stratus.jobs.service import JobUsage
from stratus.storage.service import StoredBytes

CATALOG = shipped_catalog()
SIZES = InstanceCatalog.load()
TYPES = sorted(CATALOG.instance_types)
SPAN = 6 * 3600  # seconds of simulated time


@dataclass(frozen=True)
class Run:
    """A replica or a job: when it started and stopped (seconds after T0), and its size."""

    start: int
    length: int
    instance_type: str
    endpoint: int  # which of three endpoints, or the job's spot flag (odd: spot)
    per_request: bool
    requests: int


runs = st.builds(
    Run,
    start=st.integers(0, SPAN - 60),
    length=st.integers(1, SPAN),
    instance_type=st.sampled_from(TYPES),
    endpoint=st.integers(0, 2),
    per_request=st.booleans(),
    requests=st.integers(0, 5000),
)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _replicas(replicas: list[Run], now: float) -> list[ReplicaUsage]:
    """What the endpoint controller would say at `now`: running replicas, and stopped ones."""
    said = []
    for i, r in enumerate(replicas):
        if r.start > now:
            continue
        end = r.start + r.length
        done = end <= now
        ran = min(end, now) - r.start
        said.append(
            ReplicaUsage(
                replica_id=f"r{i}",
                project="p" if i % 2 else "q",
                endpoint=f"e{r.endpoint}",
                variant="main",
                model_version=f"m:{r.endpoint + 1}",
                instance_type=r.instance_type,
                per_request=r.per_request,
                started_at=_at(r.start).timestamp(),
                ended_at=_at(end).timestamp() if done else None,
                requests=int(r.requests * ran / r.length),
                busy_seconds=ran / 100.0,
            )
        )
    return said


def _jobs(jobs: list[Run], now: float) -> list[JobUsage]:
    return [
        JobUsage(
            f"j{i}",
            "p",
            f"job{i}",
            j.instance_type,
            bool(j.endpoint % 2),
            float(max(0, min(j.start + j.length, now) - j.start)),
            0,
            None,
        )
        for i, j in enumerate(jobs)
        if j.start <= now
    ]


def _expected(
    replicas: list[Run], jobs: list[Run], stored: int, first: float, last: float
) -> float:
    cost = 0.0
    for r in replicas:
        ran = max(0.0, min(r.start + r.length, last) - r.start) if r.start <= last else 0.0
        if r.start > last:
            continue
        price = CATALOG.instance_types[r.instance_type]
        memory = SIZES.get(r.instance_type).memory_gib
        if r.per_request:
            requests = int(r.requests * ran / r.length)
            cost += requests * CATALOG.requests_per_million / 1e6
            cost += ran / 100.0 * memory * CATALOG.function_gib_second
        else:
            cost += ran / 3600.0 * price.on_demand
    for j in jobs:
        if j.start > last:
            continue
        price = CATALOG.instance_types[j.instance_type]
        ran = max(0.0, min(j.start + j.length, last) - j.start)
        cost += ran / 3600.0 * (price.spot if j.endpoint % 2 else price.on_demand)
    gib = stored / float(1 << 30)
    cost += gib * (last - first) / 3600.0 * CATALOG.storage_gib_month / HOURS_PER_MONTH
    return cost


def _clear(db: Database) -> None:
    with db.transaction() as session:
        for table in (UsageRow, UsageDailyRow, UsageRecordRow, MeterStateRow):
            session.execute(delete(table))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    replicas=st.lists(runs, max_size=8),
    jobs=st.lists(runs, max_size=4),
    stored=st.integers(0, 50 << 30),
    passes=st.lists(st.integers(1, SPAN + 3600), min_size=1, max_size=12, unique=True),
    restarts=st.sets(st.integers(0, 11), max_size=3),
)
def test_the_report_reconciles_with_the_prices_of_what_was_used(
    db: Database,
    replicas: list[Run],
    jobs: list[Run],
    stored: int,
    passes: list[int],
    restarts: set[int],
) -> None:
    _clear(db)
    billing = BillingService(db)
    world = World()
    world.stored = [StoredBytes("p", "b", stored)]
    meter = make_meter(db, billing, world)
    times = [0, *sorted(passes)]
    for n, moment in enumerate(times):
        world.now = _at(moment)
        world.replicas = _replicas(replicas, moment)
        world.jobs = _jobs(jobs, moment)
        if n in restarts:  # a new control plane: only the database remembers
            meter = make_meter(db, BillingService(db), world)
        meter.run()
    last = times[-1]
    expected = _expected(replicas, jobs, stored, 0, last)

    def report(by: s.By) -> s.CostReport:
        return billing.report(
            None,
            by=by,
            start=T0,
            end=_at(last + 3600),
            granularity=s.Granularity.total,
            now=_at(last + 3600),
        )

    everything = report(s.By.project)
    endpoints, by_job = report(s.By.endpoint), report(s.By.job)
    storage = sum(
        line.cost
        for line in billing.report(
            None, by=s.By.project, start=T0, end=_at(last + 3600),
            granularity=s.Granularity.total, now=_at(last + 3600),
        ).lines
    ) - endpoints.total - by_job.total  # fmt: skip
    assert everything.total == pytest.approx(expected, rel=1e-3, abs=1e-5)
    assert endpoints.total + by_job.total + storage == pytest.approx(everything.total, abs=1e-5)
    assert 0 <= endpoints.idle_total <= endpoints.total + 1e-9
    assert report(s.By.instance_type).total == pytest.approx(
        endpoints.total + by_job.total, abs=1e-5
    )
    by_day = billing.report(
        None, by=s.By.endpoint, start=T0, end=_at(last + 3600),
        granularity=s.Granularity.hour, now=_at(last + 3600),
    )  # fmt: skip
    assert by_day.total == pytest.approx(endpoints.total, abs=1e-5)


def test_report_groupings_idle_per_request_cost_and_forecast(
    db: Database, billing: BillingService, world: World
) -> None:
    meter = make_meter(db, billing, world)
    world.replica("a1", endpoint="churn", model_version="churn:2", requests=0)
    world.replica("b1", endpoint="fraud", model_version="fraud:1", requests=0)
    world.jobs = [JobUsage("j1", "p", "train-churn", "cpu.large", False, 0.0, 0, None)]
    meter.run()
    world.at(hours=1)
    world.update("a1", requests=1000)
    world.jobs = [JobUsage("j1", "p", "train-churn", "cpu.large", False, 1800.0, 0, None)]
    meter.run()
    billing.job_models = lambda project, names: {"train-churn": "churn:2"}
    now = world.now
    by_endpoint = billing.report(
        ["p"], by=s.By.endpoint, start=None, end=None, granularity=s.Granularity.total, now=now
    )
    lines = {line.name: line for line in by_endpoint.lines}
    small = CATALOG.instance_types["cpu.small"].on_demand
    assert lines["churn"].cost == pytest.approx(small)
    assert lines["churn"].idle_cost == 0
    assert lines["churn"].requests == 1000
    assert lines["churn"].cost_per_request == pytest.approx(small / 1000)
    assert lines["fraud"].idle_cost == pytest.approx(small)  # an hour without a request
    assert by_endpoint.idle_total == pytest.approx(small)
    by_model = billing.report(
        ["p"], by=s.By.model, start=None, end=None, granularity=s.Granularity.total, now=now
    )
    models = {line.name: line.cost for line in by_model.lines}
    large = CATALOG.instance_types["cpu.large"].on_demand
    assert models["churn:2"] == pytest.approx(small + 0.5 * large)  # serving and training
    assert models["fraud:1"] == pytest.approx(small)
    by_day = billing.report(
        ["p"], by=s.By.project, start=None, end=None, granularity=s.Granularity.day, now=now
    )
    assert [line.period for line in by_day.lines] == ["2026-11-30"]
    assert (
        billing.report(
            ["other"], by=s.By.project, start=None, end=None, granularity=s.Granularity.day, now=now
        ).lines
        == []
    )
    forecast = by_day.forecast
    assert forecast.month == "2026-11" and forecast.to_date == pytest.approx(by_day.total)
    # the month ends an hour after `now`: the last day's rate (all of it in the last hour
    # and a bit) carries it on for that hour
    assert forecast.projected > forecast.to_date
    assert billing.month_to_date(now)["p"] == pytest.approx(by_day.total)


def test_bad_report_ranges_are_refused(billing: BillingService) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(Exception, match="not after its start"):
        billing.report(None, by=s.By.project, start=start, end=start, granularity=s.Granularity.day)
    with pytest.raises(Exception, match="at most 31 days"):
        billing.report(
            None,
            by=s.By.project,
            start=start,
            end=start + timedelta(days=40),
            granularity=s.Granularity.hour,
        )
