"""The control plane's lease on a clock the test moves: held, refused, expired, taken over."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stratus.core.database import Base, Database
from stratus.core.errors import Conflict
from stratus.core.lease import ControlPlaneLease, ControlPlaneLeaseRow

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'lease.db'}")
    Base.metadata.create_all(database.engine, tables=[ControlPlaneLeaseRow.__table__])
    yield database
    database.dispose()


def lease(db: Database, clock: Clock, holder: str, pid: int) -> ControlPlaneLease:
    return ControlPlaneLease(
        db,
        holder=holder,
        host="node-1",
        pid=pid,
        url=f"http://127.0.0.1:{8000 + pid}",
        ttl_seconds=30,
        clock=clock,
    )


def test_a_held_lease_refuses_another_holder_until_it_expires(db: Database) -> None:
    clock = Clock()
    first, second = lease(db, clock, "node-1:/a", 1), lease(db, clock, "node-1:/b", 2)
    first.acquire()
    with pytest.raises(Conflict, match=r"pid 1 on node-1, serving http://127.0.0.1:8001"):
        second.acquire()
    clock.now += timedelta(seconds=20)
    assert first.renew()  # now good until T0 + 50 s
    clock.now = T0 + timedelta(seconds=45)
    with pytest.raises(Conflict, match="expires within 5 s"):
        second.acquire()
    clock.now = T0 + timedelta(seconds=51)
    second.acquire()  # expired: taken over
    assert not first.renew()  # the first one learns it lost the lease


def test_the_same_home_takes_its_lease_back_at_once(db: Database) -> None:
    clock = Clock()
    lease(db, clock, "node-1:/a", 1).acquire()
    restarted = lease(db, clock, "node-1:/a", 7)  # killed and started again on its home
    restarted.acquire()
    assert restarted.renew()


def test_a_released_lease_is_free(db: Database) -> None:
    clock = Clock()
    first = lease(db, clock, "node-1:/a", 1)
    first.acquire()
    first.release()
    lease(db, clock, "node-1:/b", 2).acquire()
    first.release()  # releasing a lease held by another leaves it alone
    with pytest.raises(Conflict):
        lease(db, clock, "node-1:/c", 3).acquire()
