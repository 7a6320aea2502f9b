"""The outbox on a migrated SQLite database, on a clock of the test's choosing: rows exist
exactly when their transaction commits, a claim leases them, a failure comes back after its
backoff, a hold keeps new rows back, and a restart releases what a dead process claimed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stratus.core.database import Database
from stratus.core.outbox import MAX_ATTEMPTS, Outbox, backoff
from stratus.migrations.runner import upgrade

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_claim_lease_retry_hold_and_release(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'stratus.db'}")
    try:
        upgrade(db)
        clock = Clock()
        outbox = Outbox(db, lease_seconds=60, clock=clock)
        with pytest.raises(RuntimeError):
            with db.transaction() as session:
                outbox.add(session, "t", {"n": 0})
                raise RuntimeError("rolled back")
        with db.transaction() as session:
            outbox.add(session, "t", {"n": 1})
            outbox.add(session, "other", {"n": 2})
        (first,) = outbox.claim(["t"])
        assert (first.payload, first.attempts) == ({"n": 1}, 1)
        assert outbox.claim(["t"]) == []  # leased
        clock.advance(61)
        (again,) = outbox.claim(["t"])  # the lease ran out: due again
        assert (again.id, again.attempts) == (first.id, 2)
        outbox.retry(again, "HTTP 503")
        clock.advance(backoff(2) - 1)
        assert outbox.claim(["t"]) == []
        clock.advance(1)
        (third,) = outbox.claim(["t"])
        assert third.attempts == 3
        assert outbox.release(["t"]) == 1  # a restart: due at once
        (fourth,) = outbox.claim(["t"])
        outbox.done(fourth.id)
        assert [m.payload for m in outbox.pending(["t", "other"])] == [{"n": 2}]
        (other,) = outbox.claim(["other"])
        assert outbox.retry(replace(other, attempts=MAX_ATTEMPTS - 1), "boom")
        assert not outbox.retry(replace(other, attempts=MAX_ATTEMPTS), "boom")  # given up
        assert outbox.pending(["other"]) == []

        held = Outbox(db, hold_seconds=30, clock=clock)
        with db.transaction() as session:
            held.add(session, "h", {"n": 3})
        clock.advance(29)
        assert held.claim(["h"]) == []
        assert outbox.claim(["h"]) != []  # the hold is the consumer's setting, not the row's
    finally:
        db.dispose()
