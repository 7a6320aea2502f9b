"""Metering: what the platform gave each project, priced, hour by hour.

A pass (every `billing.meter_interval_seconds`, on the meter's background loop) reads the facts
the other services keep (the endpoint controller's replicas and their own request counters,
the jobs' run time, the bytes each bucket holds), prices what was used since the last pass
at the current catalog version, and adds it to the hourly usage lines, a raw record per line,
and each source's position (`MeterStateRow`), all in one transaction. A pass that fails adds
nothing; the next one counts from the positions it finds, so a crash or a restart neither loses
nor double-counts usage.

What is metered, per line of (project, subject, variant, model version, instance type,
pricing, idle, catalog version):
- replicas: instance-seconds (and vCPU-, GiB- and GPU-seconds) from the replica's start to its
  stop; the replica's requests and model busy time from its own counters (they survive a
  control-plane restart). Capacity-time of a replica that served no request during a pass is
  `idle`. A function's replicas (label `stratus.io/kind=function`) are `per_request`: their
  capacity costs nothing, their requests and busy GiB-seconds do.
- jobs: instance-seconds over all attempts, at the spot or on-demand price; the part in
  attempts a preemption cut short is also kept apart (`preempted_seconds`).
- storage: GiB-hours of each bucket (every version), of each endpoint's captured requests
  (`capture`, attributed to the endpoint), and of each project's other data (models, datasets,
  artifacts, logs: bucket ""), sampled each pass.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from stratus.billing.prices import GIB, HOURS_PER_MONTH, PriceCatalog
from stratus.billing.tables import MeterStateRow, UsageDailyRow, UsageRecordRow, UsageRow
from stratus.compute.instance_types import InstanceCatalog, InstanceType
from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.errors import InvalidInput
from stratus.endpoints.controller import ReplicaUsage
from stratus.jobs.service import JobUsage
from stratus.storage.service import StoredBytes

log = logging.getLogger("stratus.billing")

HOUR = timedelta(hours=1)
FORGET_AFTER = timedelta(days=2)  # a source's position kept this long after it was last seen
JOBS_CURSOR = "jobs"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FALLBACK_TYPE = "cpu.small"  # a replica of a type the catalog no longer has is priced as this
CAPTURE = "capture:"  # an endpoint's captured data, among the stored bytes


@dataclass(frozen=True)
class Line:
    """What a usage line is about (everything but its quantities)."""

    project: str
    meter: str
    subject_kind: str
    subject: str
    pricing: str
    catalog_version: int
    variant: str = ""
    model_version: str = ""
    instance_type: str = ""
    idle: bool = False

    @property
    def key(self) -> str:
        text = "\x1f".join(str(getattr(self, f.name)) for f in fields(self))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Amount:
    seconds: float = 0.0
    vcpu_seconds: float = 0.0
    gib_seconds: float = 0.0
    gpu_seconds: float = 0.0
    requests: int = 0
    request_seconds: float = 0.0
    gib_hours: float = 0.0
    preempted_seconds: float = 0.0
    cost: float = 0.0

    @classmethod
    def held(cls, instance: InstanceType, seconds: float, hourly_rate: float) -> Amount:
        """`seconds` of one instance of `instance`, at `hourly_rate`."""
        return cls(
            seconds=seconds,
            vcpu_seconds=seconds * instance.vcpus,
            gib_seconds=seconds * instance.memory_gib,
            gpu_seconds=seconds * instance.gpus,
            cost=seconds / 3600.0 * hourly_rate,
        )

    def scaled(self, share: float) -> Amount:
        """A share of this amount (for the part of a stretch that falls in one hour); requests
        are whole and go where the stretch ends."""
        return Amount(
            seconds=self.seconds * share,
            vcpu_seconds=self.vcpu_seconds * share,
            gib_seconds=self.gib_seconds * share,
            gpu_seconds=self.gpu_seconds * share,
            request_seconds=self.request_seconds * share,
            gib_hours=self.gib_hours * share,
            preempted_seconds=self.preempted_seconds * share,
            cost=self.cost * share,
        )

    def add(self, other: Amount) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


QUANTITIES = tuple(f.name for f in fields(Amount))


@dataclass
class Usage:
    """One pass's additions: (line, start, end, amount)."""

    items: list[tuple[Line, datetime, datetime, Amount]] = field(default_factory=list)

    def add(self, line: Line, start: datetime, end: datetime, amount: Amount) -> None:
        self.items.append((line, start, end, amount))


def hours_of(start: datetime, end: datetime) -> Iterator[tuple[datetime, float]]:
    """Each UTC hour that [start, end) touches, with the share of the stretch in it. A stretch
    of no length is all in the hour of its end."""
    total = (end - start).total_seconds()
    if total <= 0:
        yield end.replace(minute=0, second=0, microsecond=0), 1.0
        return
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        next_hour = hour + HOUR
        inside = (min(end, next_hour) - max(start, hour)).total_seconds()
        if inside > 0:
            yield hour, inside / total
        hour = next_hour


@dataclass
class _Pass:
    """What one metering pass works with: its transaction, the sources' positions, the catalog
    version in force, its time, the usage it adds and the sources it saw."""

    session: Session
    states: dict[str, MeterStateRow]
    version: int
    catalog: PriceCatalog
    now: datetime
    # the first pass on this database (a platform that ran before metering existed): what ran
    # before it is not metered, so the past is not billed at once to this hour
    first: bool = False
    usage: Usage = field(default_factory=Usage)
    seen: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class PassSummary:
    lines: int
    cost: float
    at: datetime


class Meter:
    """One metering pass at a time, from the sources it is given (callables, so it depends on
    what they say, not on the services' internals)."""

    def __init__(
        self,
        db: Database,
        instance_types: InstanceCatalog,
        prices: Callable[[], tuple[int, PriceCatalog]],
        *,
        replicas: Callable[[], list[ReplicaUsage]] = list,
        jobs: Callable[[datetime], list[JobUsage]] = lambda since: [],
        storage: Callable[[], list[StoredBytes]] = list,
        captures: Callable[[], list[tuple[str, str, int]]] = list,
        reservations: Callable[[], dict[tuple[str, str], int]] = dict,
        clock: Callable[[], datetime] = utcnow,
        raw_retention: timedelta = timedelta(days=35),
    ) -> None:
        self.db = db
        self.instance_types = instance_types
        self.prices = prices
        self.replicas = replicas
        self.jobs = jobs
        self.storage = storage
        self.captures = captures
        self.reservations = reservations
        self.clock = clock
        self.raw_retention = raw_retention

    def run(self) -> PassSummary:
        version, catalog = self.prices()
        replicas = self.replicas()
        stored = self._stored()
        with self.db.transaction() as session:  # (only this meter moves it)
            jobs_since = session.get(MeterStateRow, JOBS_CURSOR)
            since = as_utc(jobs_since.metered_until) if jobs_since else EPOCH
            first = jobs_since is None  # this database's first pass ever
        jobs = self.jobs(since)
        reserved = self.reservations()
        with self.db.transaction() as session:
            states = {row.source: row for row in session.scalars(select(MeterStateRow))}
            now = self.clock()  # after the facts were read: nothing they hold is later
            p = _Pass(session, states, version, catalog, now, first)
            self._replicas(p, replicas)
            self._jobs(p, jobs)
            self._storage(p, stored)
            self._position(session, states, JOBS_CURSOR, now, p.seen)
            usage, seen = p.usage, p.seen
            if reserved:
                usage = self._reserve(session, usage, reserved, catalog)
            cost = write_usage(session, usage)
            self._forget(session, states, seen, now)
            return PassSummary(lines=len(usage.items), cost=cost, at=now)

    # --- sources -----------------------------------------------------------------------------

    def _stored(self) -> list[StoredBytes]:
        """Buckets, then each endpoint's captured data (bucket `capture:ENDPOINT`), taken out
        of its project's other data (bucket "") so that no byte is counted twice."""
        stored = self.storage()
        captured = [StoredBytes(p, f"{CAPTURE}{e}", n) for p, e, n in self.captures() if n > 0]
        per_project: dict[str, int] = {}
        for item in captured:
            per_project[item.project] = per_project.get(item.project, 0) + item.bytes
        rest = [
            StoredBytes(i.project, i.bucket, max(0, i.bytes - per_project.get(i.project, 0)))
            if i.bucket == ""
            else i
            for i in stored
        ]
        return rest + captured

    def _type(self, name: str) -> InstanceType:
        try:
            return self.instance_types.get(name)
        except InvalidInput:
            log.warning(
                "instance type %r is gone from the catalog; priced as %s", name, FALLBACK_TYPE
            )
            return self.instance_types.get(FALLBACK_TYPE)

    def _replicas(self, p: _Pass, replicas: list[ReplicaUsage]) -> None:
        session, states, version, catalog = p.session, p.states, p.version, p.catalog
        now, usage, seen = p.now, p.usage, p.seen
        for u in replicas:
            source = f"replica:{u.replica_id}"
            if source in seen:  # listed twice (running, then stopped): the first says enough
                continue
            state = states.get(source)
            if state is not None and state.ended:
                seen.add(source)
                continue
            seen.add(source)
            started = datetime.fromtimestamp(u.started_at, UTC)
            if p.first:
                started = max(started, now)
            start = max(started, as_utc(state.metered_until)) if state else started
            end = min(now, datetime.fromtimestamp(u.ended_at, UTC)) if u.ended_at else now
            end = max(end, start)
            requests, busy = 0, 0.0
            last_requests = state.requests if state else 0
            last_busy = state.busy_seconds if state else 0.0
            if u.requests is not None:
                # counters that went back are a replica that started over: all of them are new
                requests = u.requests - last_requests if u.requests >= last_requests else u.requests
                last_requests = u.requests
            if u.busy_seconds is not None:
                busy = u.busy_seconds - last_busy if u.busy_seconds >= last_busy else u.busy_seconds
                last_busy = u.busy_seconds
            if p.first:  # counters that predate metering: a baseline, not usage
                requests, busy = 0, 0.0
            instance = self._type(u.instance_type)
            price = catalog.instance(instance)
            pricing = "per_request" if u.per_request else "on_demand"
            rate = 0.0 if u.per_request else price.on_demand
            seconds = (end - start).total_seconds()
            line = Line(
                project=u.project,
                meter="replica",
                subject_kind="endpoint",
                subject=u.endpoint,
                pricing=pricing,
                catalog_version=version,
                variant=u.variant,
                model_version=u.model_version,
                instance_type=instance.name,
                idle=requests == 0,
            )
            amount = Amount.held(instance, seconds, rate)
            amount.requests, amount.request_seconds = requests, busy
            if u.per_request:
                amount.cost += requests * catalog.requests_per_million / 1e6
                amount.cost += busy * instance.memory_gib * catalog.function_gib_second
            if seconds > 0 or requests or busy:
                usage.add(line, start, end, amount)
            if state is None:
                state = MeterStateRow(source=source, metered_until=end)
                session.add(state)
                states[source] = state
            state.metered_until = end
            state.requests, state.busy_seconds = last_requests, last_busy
            state.ended = u.ended_at is not None

    def _jobs(self, p: _Pass, jobs: list[JobUsage]) -> None:
        session, states, version, catalog = p.session, p.states, p.version, p.catalog
        now, usage, seen = p.now, p.usage, p.seen
        for job in jobs:
            source = f"job:{job.uid}"
            seen.add(source)
            state = states.get(source)
            before = state.seconds if state else 0.0
            run = job.seconds - before
            if state is None:
                state = MeterStateRow(source=source, metered_until=now)
                session.add(state)
                states[source] = state
            state.metered_until = now
            if p.first:  # its run so far predates metering: counted from here on
                state.seconds, state.preempted_seconds = job.seconds, job.preempted_seconds
                continue
            if run <= 0:
                continue
            state.seconds = job.seconds
            preempted = max(0.0, job.preempted_seconds - (state.preempted_seconds or 0.0))
            state.preempted_seconds = job.preempted_seconds
            instance = self._type(job.instance_type)
            pricing = "spot" if job.spot else "on_demand"
            rate = catalog.instance(instance).rate(pricing)
            line = Line(
                project=job.project,
                meter="job",
                subject_kind="job",
                subject=job.name,
                pricing=pricing,
                catalog_version=version,
                model_version=job.model_version or "",
                instance_type=instance.name,
            )
            amount = Amount.held(instance, run, rate)
            amount.preempted_seconds = min(preempted, run)
            usage.add(line, now - timedelta(seconds=run), now, amount)

    def _storage(self, p: _Pass, stored: list[StoredBytes]) -> None:
        session, states, version, catalog = p.session, p.states, p.version, p.catalog
        now, usage, seen = p.now, p.usage, p.seen
        for item in stored:
            source = f"bucket:{item.project}/{item.bucket}"
            seen.add(source)
            state = states.get(source)
            if state is None:  # counted from now on
                state = MeterStateRow(source=source, metered_until=now)
                session.add(state)
                states[source] = state
                continue
            start = as_utc(state.metered_until)
            state.metered_until = now
            hours = (now - start).total_seconds() / 3600.0
            if hours <= 0 or item.bytes <= 0:
                continue
            gib_hours = item.bytes / GIB * hours
            capture = item.bucket.startswith(CAPTURE)
            line = Line(
                project=item.project,
                meter="storage",
                subject_kind="capture" if capture else "bucket",
                subject=item.bucket[len(CAPTURE) :] if capture else item.bucket,
                pricing="storage",
                catalog_version=version,
            )
            cost = gib_hours * catalog.storage_gib_month / HOURS_PER_MONTH
            usage.add(line, start, now, Amount(gib_hours=gib_hours, cost=cost))

    def _reserve(
        self,
        session: Session,
        usage: Usage,
        reserved: dict[tuple[str, str], int],
        catalog: PriceCatalog,
    ) -> Usage:
        """Price the on-demand instance-seconds within a project's reservations at the reserved
        rate: per hour, the first `count` x 3600 of each reserved type (those earlier passes
        took first), split off as `reserved` lines."""
        taken: dict[tuple[str, str, datetime], float] = {}
        out = Usage()
        for line, start, end, amount in usage.items:
            key = (line.project, line.instance_type)
            count = reserved.get(key, 0)
            if line.pricing != "on_demand" or count <= 0 or amount.seconds <= 0:
                out.add(line, start, end, amount)
                continue
            price = catalog.instance(self._type(line.instance_type))
            parts = list(hours_of(start, end))
            for i, (hour, share) in enumerate(parts):
                piece = amount.scaled(share)
                if i == len(parts) - 1:
                    piece.requests = amount.requests
                low, high = max(start, hour), min(end, hour + HOUR)
                slot = (line.project, line.instance_type, hour)
                if slot not in taken:
                    taken[slot] = float(
                        session.scalar(
                            select(func.coalesce(func.sum(UsageRow.seconds), 0.0)).where(
                                UsageRow.project == line.project,
                                UsageRow.instance_type == line.instance_type,
                                UsageRow.hour == hour,
                                UsageRow.pricing == "reserved",
                            )
                        )
                        or 0.0
                    )
                free = max(0.0, count * 3600.0 - taken[slot])
                within = min(piece.seconds, free)
                if within > 0:
                    part = piece.scaled(within / piece.seconds)
                    part.cost = within / 3600.0 * price.reserved
                    rest = piece.seconds - within
                    part.requests = piece.requests if rest <= 0 else 0
                    taken[slot] += within
                    out.add(replace(line, pricing="reserved"), low, high, part)
                    if rest <= 0:
                        continue
                    piece = piece.scaled(rest / piece.seconds)
                    piece.requests = amount.requests if i == len(parts) - 1 else 0
                out.add(line, low, high, piece)
        return out

    @staticmethod
    def _position(
        session: Session,
        states: dict[str, MeterStateRow],
        source: str,
        now: datetime,
        seen: set[str],
    ) -> None:
        seen.add(source)
        state = states.get(source)
        if state is None:
            session.add(MeterStateRow(source=source, metered_until=now))
        else:
            state.metered_until = now

    def _forget(
        self, session: Session, states: dict[str, MeterStateRow], seen: set[str], now: datetime
    ) -> None:
        """Positions of sources gone for a while, and raw records past their retention."""
        stale = [
            source
            for source, state in states.items()
            if source not in seen and now - as_utc(state.metered_until) > FORGET_AFTER
        ]
        if stale:
            session.execute(delete(MeterStateRow).where(MeterStateRow.source.in_(stale)))
        session.execute(delete(UsageRecordRow).where(UsageRecordRow.end < now - self.raw_retention))


def write_usage(session: Session, usage: Usage) -> float:
    """Add a pass's usage to the hourly lines (and one raw record per item); the cost added."""
    per_hour: dict[tuple[str, datetime], tuple[Line, Amount]] = {}
    total = 0.0
    for line, start, end, amount in usage.items:
        total += amount.cost
        session.add(UsageRecordRow(key=line.key, start=start, end=end, **_columns(line, amount)))
        parts = list(hours_of(start, end))
        for i, (hour, share) in enumerate(parts):
            part = amount.scaled(share)
            if i == len(parts) - 1:
                part.requests = amount.requests
            key = (line.key, hour)
            if key in per_hour:
                per_hour[key][1].add(part)
            else:
                per_hour[key] = (line, part)
    if not per_hour:
        return total
    per_day: dict[tuple[str, str], tuple[Line, Amount]] = {}
    for (line_key, hour), (line, part) in per_hour.items():
        key_day = (line_key, hour.strftime("%Y-%m-%d"))
        if key_day in per_day:
            per_day[key_day][1].add(part)
        else:
            per_day[key_day] = (line, Amount(**{n: getattr(part, n) for n in QUANTITIES}))
    keys = {key for key, _ in per_hour}
    hours = {hour for _, hour in per_hour}
    hourly = {
        (row.key, as_utc(row.hour)): row
        for row in session.scalars(
            select(UsageRow).where(UsageRow.key.in_(keys), UsageRow.hour.in_(hours))
        )
    }
    for (line_key, hour), (line, part) in per_hour.items():
        row = hourly.get((line_key, hour))
        if row is None:
            day = hour.strftime("%Y-%m-%d")
            session.add(UsageRow(key=line_key, hour=hour, day=day, **_columns(line, part)))
        else:
            _add(row, part)
    days = {day for _, day in per_day}
    daily = {
        (row.key, row.day): row
        for row in session.scalars(
            select(UsageDailyRow).where(UsageDailyRow.key.in_(keys), UsageDailyRow.day.in_(days))
        )
    }
    for (line_key, day), (line, part) in per_day.items():
        found = daily.get((line_key, day))
        if found is None:
            session.add(UsageDailyRow(key=line_key, day=day, **_columns(line, part)))
        else:
            _add(found, part)
    return total


def _add(row: UsageRow | UsageDailyRow, part: Amount) -> None:
    for name in QUANTITIES:
        setattr(row, name, getattr(row, name) + getattr(part, name))


def _columns(line: Line, amount: Amount) -> dict[str, object]:
    columns: dict[str, object] = {f.name: getattr(line, f.name) for f in fields(line)}
    columns.update({name: getattr(amount, name) for name in QUANTITIES})
    return columns
