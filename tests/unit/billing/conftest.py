"""A database with the billing tables (SQLite, and PostgreSQL where the `postgres` marker runs),
a clock the test moves, and sources the test fills: replicas, jobs, stored bytes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stratus.billing.metering import Meter
from stratus.billing.service import BillingService
from stratus.billing.tables import (
    MeterStateRow,
    PriceCatalogRow,
    UsageDailyRow,
    UsageRecordRow,
    UsageRow,
)
from stratus.compute.instance_types import InstanceCatalog
from stratus.core.database import Base, Database
from stratus.endpoints.controller import ReplicaUsage
from stratus.jobs.service import JobUsage
from stratus.storage.service import StoredBytes

T0 = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)  # two hours before a month ends


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'billing.db'}"
        drop = None
    else:
        import psycopg
        from sqlalchemy.engine import make_url

        base = make_url(request.getfixturevalue("postgres_url"))
        name = f"billing_{uuid.uuid4().hex[:12]}"
        server = base.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = base.set(database=name).render_as_string(hide_password=False)
        drop = (server, name)
    database = Database(url)
    tables = [
        t.__table__
        for t in (PriceCatalogRow, UsageRow, UsageDailyRow, UsageRecordRow, MeterStateRow)
    ]
    Base.metadata.create_all(database.engine, tables=tables)  # type: ignore[arg-type]
    yield database
    database.dispose()
    if drop is not None:
        import psycopg

        with psycopg.connect(drop[0], autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{drop[1]}" WITH (FORCE)')


@dataclass
class World:
    """What the meter reads, as the test sets it, and the time."""

    now: datetime = T0
    replicas: list[ReplicaUsage] = field(default_factory=list)
    jobs: list[JobUsage] = field(default_factory=list)
    stored: list[StoredBytes] = field(default_factory=list)

    def clock(self) -> datetime:
        return self.now

    def at(self, **delta: float) -> datetime:
        self.now = self.now + timedelta(**delta)
        return self.now

    def replica(
        self,
        replica_id: str,
        *,
        project: str = "p",
        endpoint: str = "e",
        variant: str = "main",
        model_version: str = "m:1",
        instance_type: str = "cpu.small",
        per_request: bool = False,
        started: datetime | None = None,
        requests: int | None = 0,
        busy: float | None = 0.0,
    ) -> ReplicaUsage:
        usage = ReplicaUsage(
            replica_id=replica_id,
            project=project,
            endpoint=endpoint,
            variant=variant,
            model_version=model_version,
            instance_type=instance_type,
            per_request=per_request,
            started_at=(started or self.now).timestamp(),
            ended_at=None,
            requests=requests,
            busy_seconds=busy,
        )
        self.replicas.append(usage)
        return usage

    def update(self, replica_id: str, **changes: object) -> None:
        self.replicas = [
            replace(r, **changes) if r.replica_id == replica_id else r  # type: ignore[arg-type]
            for r in self.replicas
        ]

    def end(self, replica_id: str, requests: int | None = None) -> None:
        changes: dict[str, object] = {"ended_at": self.now.timestamp()}
        if requests is not None:
            changes["requests"] = requests
        self.update(replica_id, **changes)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def billing(db: Database) -> BillingService:
    return BillingService(db)


@pytest.fixture
def meter(db: Database, billing: BillingService, world: World) -> Meter:
    """A meter that has made its first pass, at T0, before anything ran (a database's first
    pass counts only from then on)."""
    made = make_meter(db, billing, world)
    made.run()
    return made


def make_meter(db: Database, billing: BillingService, world: World) -> Meter:
    return Meter(
        db,
        InstanceCatalog.load(),
        billing.prices,
        replicas=lambda: list(world.replicas),
        jobs=lambda since: list(world.jobs),
        storage=lambda: list(world.stored),
        clock=world.clock,
    )
