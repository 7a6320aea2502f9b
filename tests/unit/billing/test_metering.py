"""Metering on a simulated clock: replica time split by the hour and priced, idle capacity apart,
functions priced per request, jobs at spot or on-demand, storage in GiB-hours; a failed pass
adds nothing and a restarted meter neither loses nor double-counts; a new catalog version
prices only what is metered after it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from conftest import T0, World, make_meter
from stratus.billing import metering
from stratus.billing import schemas as s
from stratus.billing.metering import Meter, hours_of
from stratus.billing.prices import shipped_catalog
from stratus.billing.service import BillingService
from stratus.billing.tables import UsageRecordRow, UsageRow
from stratus.core.database import Database
from stratus.core.errors import InvalidInput
from stratus.jobs.service import JobUsage
from stratus.storage.service import StoredBytes

SMALL = shipped_catalog().instance_types["cpu.small"]


def lines(db: Database) -> list[UsageRow]:
    with db.transaction() as session:
        return list(session.scalars(select(UsageRow).order_by(UsageRow.hour, UsageRow.id)))


def total(db: Database, column: str = "cost") -> float:
    with db.transaction() as session:
        return float(session.scalar(select(func.sum(getattr(UsageRow, column)))) or 0.0)


def test_hours_of_splits_a_stretch_at_each_hour() -> None:
    start = T0 + timedelta(minutes=30)
    parts = list(hours_of(start, start + timedelta(hours=2)))
    assert [hour for hour, _ in parts] == [T0 + timedelta(hours=h) for h in range(3)]
    assert [round(share, 9) for _, share in parts] == [0.25, 0.5, 0.25]
    assert list(hours_of(start, start)) == [(T0, 1.0)]


def test_replica_time_is_priced_by_the_hour_from_start_to_stop(
    meter: Meter, world: World, db: Database
) -> None:
    world.replica("r1", started=T0 + timedelta(minutes=45), requests=0)
    world.at(minutes=50)
    meter.run()  # 5 minutes in the first hour
    world.at(minutes=30)
    world.update("r1", requests=7)
    meter.run()  # 10 more in the first hour, 20 in the second, with 7 requests
    world.at(minutes=5)
    world.end("r1", requests=7)
    world.at(minutes=30)  # ended 30 minutes before this pass: counted until its end
    meter.run()
    meter.run()  # nothing more: it ended
    rows = lines(db)
    seconds = sum(r.seconds for r in rows)
    assert seconds == pytest.approx(40 * 60)
    assert total(db) == pytest.approx(40 / 60 * SMALL.on_demand)
    assert {r.hour.hour for r in rows} == {22, 23}
    busy = [r for r in rows if not r.idle]
    assert sum(r.requests for r in busy) == 7
    idle = [r for r in rows if r.idle]  # the first pass and the last stretch served nothing
    assert sum(r.seconds for r in idle) == pytest.approx((5 + 5) * 60)
    assert all(r.vcpu_seconds == pytest.approx(r.seconds * 1) for r in rows)  # cpu.small: 1
    assert all(r.gib_seconds == pytest.approx(r.seconds * 2) for r in rows)


def test_a_function_is_priced_per_request_not_per_hour(
    meter: Meter, world: World, db: Database
) -> None:
    world.replica("f1", per_request=True, requests=0, busy=0.0)
    world.at(minutes=10)
    world.update("f1", requests=1_000_000, busy_seconds=500.0)
    meter.run()
    catalog = shipped_catalog()
    expected = 1.0 * catalog.requests_per_million + 500.0 * 2 * catalog.function_gib_second
    assert total(db) == pytest.approx(expected)
    assert total(db, "seconds") == pytest.approx(600)  # its capacity-time is still metered
    assert {r.pricing for r in lines(db)} == {"per_request"}


def test_jobs_are_priced_at_spot_or_on_demand(meter: Meter, world: World, db: Database) -> None:
    world.jobs = [
        JobUsage("u1", "p", "train", "cpu.large", False, 0.0, 0, None),
        JobUsage("u2", "p", "sweep", "cpu.large", True, 0.0, 1, None),
    ]
    meter.run()
    world.at(hours=1)
    world.jobs = [
        JobUsage("u1", "p", "train", "cpu.large", False, 1800.0, 0, "churn:3"),
        JobUsage("u2", "p", "sweep", "cpu.large", True, 3600.0, 1, None),
    ]
    meter.run()
    meter.run()  # no more run time: nothing added
    large = shipped_catalog().instance_types["cpu.large"]
    by_job = {r.subject: r for r in lines(db)}
    assert by_job["train"].cost == pytest.approx(0.5 * large.on_demand)
    assert by_job["train"].model_version == "churn:3"
    assert by_job["sweep"].cost == pytest.approx(1.0 * large.spot)
    assert by_job["sweep"].pricing == "spot"
    assert by_job["train"].vcpu_seconds == pytest.approx(1800 * 4)


def test_storage_is_metered_in_gib_hours(meter: Meter, world: World, db: Database) -> None:
    world.stored = [StoredBytes("p", "raw", 10 << 30), StoredBytes("p", "", 2 << 30)]
    meter.run()  # counted from here
    world.at(hours=73)
    meter.run()
    rows = {r.subject: r for r in lines(db) if r.meter == "storage"}
    assert sum(r.gib_hours for r in lines(db) if r.subject == "raw") == pytest.approx(730)
    assert total(db) == pytest.approx(12 * 73 / 730 * shipped_catalog().storage_gib_month)
    assert set(rows) == {"raw", ""}


def test_a_failed_pass_adds_nothing_and_the_next_counts_it_all(
    meter: Meter, world: World, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.replica("r1", requests=0)
    world.at(minutes=10)
    meter.run()
    world.at(minutes=10)
    real = metering.write_usage

    def broken(session: object, usage: object) -> float:
        real(session, usage)  # type: ignore[arg-type]
        raise RuntimeError("the database went away mid-pass")

    monkeypatch.setattr(metering, "write_usage", broken)
    with pytest.raises(RuntimeError):
        meter.run()
    assert total(db, "seconds") == pytest.approx(600)
    monkeypatch.setattr(metering, "write_usage", real)
    world.at(minutes=10)
    meter.run()
    assert total(db, "seconds") == pytest.approx(1800)


def test_a_restarted_meter_neither_loses_nor_double_counts(
    db: Database, billing: BillingService, world: World
) -> None:
    make_meter(db, billing, world).run()  # the database's first pass, before anything ran
    world.replica("r1", requests=3)
    world.jobs = [JobUsage("u1", "p", "train", "cpu.small", False, 0.0, 0, None)]
    make_meter(db, billing, world).run()
    world.at(minutes=20)
    world.jobs = [JobUsage("u1", "p", "train", "cpu.small", False, 1200.0, 0, None)]
    make_meter(db, billing, world).run()
    # the control plane is down for an hour; the replica and the job kept running
    world.at(hours=1)
    world.update("r1", requests=10)
    world.jobs = [JobUsage("u1", "p", "train", "cpu.small", False, 4800.0, 0, None)]
    again = make_meter(db, BillingService(db), world)
    again.run()
    again.run()
    replica = [r for r in lines(db) if r.meter == "replica"]
    job = [r for r in lines(db) if r.meter == "job"]
    assert sum(r.seconds for r in replica) == pytest.approx(80 * 60)
    assert sum(r.requests for r in replica) == 10
    assert sum(r.seconds for r in job) == pytest.approx(4800)


def test_a_new_catalog_prices_only_what_is_metered_after_it(
    meter: Meter, world: World, db: Database, billing: BillingService
) -> None:
    world.replica("r1", requests=0)
    world.at(minutes=30)
    meter.run()
    document = shipped_catalog().model_dump(mode="json")
    document["instance_types"]["cpu.small"] = {"on_demand": 1.0, "spot": 0.5, "reserved": 0.6}
    applied = billing.apply_prices(document, actor="user:admin")
    assert applied.version == 2
    world.at(minutes=30)
    meter.run()
    versions = {r.catalog_version: r.cost for r in lines(db)}
    assert versions[1] == pytest.approx(0.5 * SMALL.on_demand)
    assert versions[2] == pytest.approx(0.5 * 1.0)
    assert [v.version for v in billing.price_versions()] == [2, 1]
    assert billing.read_prices(1).catalog["instance_types"]["cpu.small"]["on_demand"] == 0.0425


def test_a_catalog_that_does_not_add_up_is_refused(billing: BillingService) -> None:
    document = shipped_catalog().model_dump(mode="json")
    document["instance_types"]["cpu.small"]["spot"] = 9.0
    with pytest.raises(InvalidInput, match="instance_types.cpu.small"):
        billing.apply_prices(document, actor="user:admin")
    with pytest.raises(InvalidInput, match="storage_gib_month"):
        billing.apply_prices({"instance_types": {}}, actor="user:admin")
    assert billing.prices()[0] == 1


def test_raw_records_are_kept_for_their_retention(
    db: Database, billing: BillingService, world: World
) -> None:
    meter = make_meter(db, billing, world)
    meter.raw_retention = timedelta(days=1)
    meter.run()
    world.replica("r1", requests=0)
    world.at(minutes=10)
    meter.run()
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(UsageRecordRow)) == 1
    world.at(days=2)
    world.replicas = []
    meter.run()
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(UsageRecordRow)) == 0
    assert total(db, "seconds") == pytest.approx(600)  # the hourly lines stay


def test_captured_requests_are_stored_data_of_their_endpoint(
    db: Database, billing: BillingService, world: World
) -> None:
    meter = make_meter(db, billing, world)
    captured = [("p", "churn-api", 4 << 30)]
    meter.captures = lambda: captured
    world.stored = [StoredBytes("p", "", 10 << 30)]  # the capture files are among these
    meter.run()
    world.at(hours=10)
    meter.run()
    by: dict[tuple[str, str], float] = {}
    for r in lines(db):
        by[(r.subject_kind, r.subject)] = by.get((r.subject_kind, r.subject), 0.0) + r.gib_hours
    assert by == {("capture", "churn-api"): pytest.approx(40), ("bucket", ""): pytest.approx(60)}
    endpoints = billing.report(
        ["p"], by=s.By.endpoint, start=T0, end=world.now, granularity=s.Granularity.total,
        now=world.now,
    )  # fmt: skip
    assert [line.name for line in endpoints.lines] == ["churn-api"]  # its capture, by endpoint
    assert endpoints.lines[0].gib_hours == pytest.approx(40)


def test_usage_within_a_reservation_is_priced_at_the_reserved_rate(
    db: Database, billing: BillingService, world: World
) -> None:
    meter = make_meter(db, billing, world)
    meter.reservations = lambda: {("p", "cpu.small"): 1}
    world.replica("r1", requests=0)
    world.replica("r2", requests=0)
    world.replica("other", project="q", requests=0)  # not reserved there
    world.jobs = [JobUsage("u1", "p", "train", "cpu.small", False, 0.0, 0, None)]
    meter.run()
    world.at(minutes=30)
    meter.run()
    world.at(minutes=30)
    world.jobs = [JobUsage("u1", "p", "train", "cpu.small", False, 1800.0, 0, None)]
    meter.run()
    rows = lines(db)
    reserved = sum(r.seconds for r in rows if r.pricing == "reserved")
    on_demand = sum(r.seconds for r in rows if r.pricing == "on_demand" and r.project == "p")
    # an hour: two replicas and half an hour of the job on cpu.small; one instance reserved
    assert reserved == pytest.approx(3600)
    assert on_demand == pytest.approx(2 * 3600 + 1800 - 3600)
    assert sum(r.cost for r in rows if r.project == "p") == pytest.approx(
        SMALL.reserved + (2 * 3600 + 1800 - 3600) / 3600 * SMALL.on_demand
    )
    assert {r.pricing for r in rows if r.project == "q"} == {"on_demand"}
    # the next hour starts with the reservation free again: by the instance-hour, as AWS
    # applies it, two replicas for half an hour fill one reserved instance
    world.at(minutes=30)
    meter.run()
    later = [r for r in lines(db) if r.hour.hour == 23 and r.project == "p"]
    assert sum(r.seconds for r in later if r.pricing == "reserved") == pytest.approx(3600)
    assert sum(r.seconds for r in later if r.pricing == "on_demand") == pytest.approx(0)


def test_a_jobs_preempted_time_is_kept_apart(meter: Meter, world: World, db: Database) -> None:
    world.jobs = [JobUsage("u1", "p", "sweep", "cpu.large", True, 0.0, 0, None)]
    meter.run()
    world.at(minutes=30)
    # a first attempt of 20 minutes was preempted; the second has run 10
    world.jobs = [JobUsage("u1", "p", "sweep", "cpu.large", True, 1800.0, 1, None, 1200.0)]
    meter.run()
    meter.run()
    rows = [r for r in lines(db) if r.meter == "job"]
    assert sum(r.seconds for r in rows) == pytest.approx(1800)
    assert sum(r.preempted_seconds for r in rows) == pytest.approx(1200)
    report = billing_report(db)
    assert report.lines[0].preempted_hours == pytest.approx(1200 / 3600)


def billing_report(db: Database) -> s.CostReport:
    from stratus.billing.service import BillingService as Billing

    return Billing(db).report(
        None, by=s.By.job, start=T0, end=T0 + timedelta(days=1), granularity=s.Granularity.total,
        now=T0 + timedelta(days=1),
    )  # fmt: skip


def test_what_ran_before_metering_existed_is_not_billed_at_once(
    db: Database, billing: BillingService, world: World
) -> None:
    # a platform upgraded to metering: a replica up for a day, a job 5000 s into its run
    meter = make_meter(db, billing, world)
    world.replica("old", started=T0 - timedelta(days=1), requests=100, busy=5.0)
    world.jobs = [JobUsage("u1", "p", "train", "cpu.small", False, 5000.0, 0, None)]
    meter.run()
    assert total(db, "seconds") == 0 and total(db, "requests") == 0
    world.at(minutes=10)
    world.update("old", requests=130)
    world.jobs = [JobUsage("u1", "p", "train", "cpu.small", False, 5600.0, 0, None)]
    meter.run()
    rows = lines(db)
    assert sum(r.seconds for r in rows if r.meter == "replica") == pytest.approx(600)
    assert sum(r.requests for r in rows) == 30
    assert sum(r.seconds for r in rows if r.meter == "job") == pytest.approx(600)
