"""The outbox: work that must happen because something was committed (a notification to send,
a pipeline run to start), written as a row in the very transaction that records its cause and
delivered afterwards by its consumer's loop, at least once.

A producer calls `Outbox.add(session, topic, payload)` inside its transaction (often from an
event handler on the core bus, so a lower service need not know its consumers). A consumer
`claim`s due rows of its topics, does the work, and marks each `done` (the row is deleted) or
`retry`s it later with a backoff. A claimed row is leased: if the control plane dies before it
is done, the row comes back when the lease ends, or at once when the consumer starts again
(`release`). Work can thus be done twice, so each consumer is idempotent on its side, keyed by
the row's `uid` — never reused, unlike a deleted row's integer id on SQLite (a pipeline run
records it as its trigger key, under a unique constraint).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from stratus.core.clock import utcnow
from stratus.core.database import Base, Database
from stratus.core.ids import new_id

LEASE_SECONDS = 600.0  # longer than any delivery takes: a notifier retries for at most minutes
RETRY_MAX_SECONDS = 300.0
MAX_ATTEMPTS = 20  # about an hour and a half of backoff, then the work is given up (logged)

log = logging.getLogger("stratus.outbox")


class OutboxRow(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_topic_next_attempt_at", "topic", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(Text, default="")


@dataclass(frozen=True)
class Message:
    """A claimed row: `attempts` counts this claim (1 on the first delivery); `uid` names the
    work for good (the key a consumer dedupes on)."""

    id: int
    uid: str
    topic: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: 2, 4, 8… up to 5 min."""
    return float(min(2.0 ** max(attempts, 1), RETRY_MAX_SECONDS))


class Outbox:
    """Rows of work per topic, in the metadata database.

    `hold_seconds` keeps a new row back that long before its first delivery (a grace period,
    0 by default); `lease_seconds` is how long a claim lasts before the row is due again.
    """

    def __init__(
        self,
        db: Database,
        *,
        hold_seconds: float = 0.0,
        lease_seconds: float = LEASE_SECONDS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.hold = timedelta(seconds=hold_seconds)
        self.lease = timedelta(seconds=lease_seconds)
        self.clock = clock

    def add(self, session: Session, topic: str, payload: dict[str, Any]) -> None:
        """Queue work in the caller's transaction: it exists exactly when its cause does."""
        now = self.clock()
        session.add(
            OutboxRow(
                uid=new_id("obx"),
                topic=topic,
                payload=payload,
                created_at=now,
                attempts=0,
                next_attempt_at=now,
                last_error="",
            )
        )

    def claim(self, topics: Sequence[str], limit: int = 100) -> list[Message]:
        """Due rows of these topics, oldest first, leased to the caller."""
        now = self.clock()
        with self.db.transaction() as session:
            stmt = (
                select(OutboxRow)
                .where(
                    OutboxRow.topic.in_(list(topics)),
                    OutboxRow.next_attempt_at <= now,
                    OutboxRow.created_at <= now - self.hold,
                )
                .order_by(OutboxRow.id)
                .limit(limit)
            )
            if self.db.dialect != "sqlite":  # SQLite's BEGIN IMMEDIATE already serialises
                stmt = stmt.with_for_update(skip_locked=True)
            rows = session.scalars(stmt).all()
            messages = []
            for row in rows:
                row.attempts += 1
                row.next_attempt_at = now + self.lease
                messages.append(_message(row))
            return messages

    def done(self, message_id: int) -> None:
        """The work is done: the row goes."""
        with self.db.transaction() as session:
            row = session.get(OutboxRow, message_id)
            if row is not None:
                session.delete(row)

    def retry(self, message: Message, error: str, delay: float | None = None) -> bool:
        """The work failed for now: due again after `delay` (default: the backoff); after
        `MAX_ATTEMPTS` it is given up, with an error in the log (False)."""
        if message.attempts >= MAX_ATTEMPTS:
            log.error("giving up %s %d after %d attempts: %s", message.topic, message.id,
                      message.attempts, error)  # fmt: skip
            self.done(message.id)
            return False
        wait = backoff(message.attempts) if delay is None else delay
        with self.db.transaction() as session:
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.id == message.id)
                .values(
                    next_attempt_at=self.clock() + timedelta(seconds=wait),
                    last_error=error[:2000],
                )
            )
        return True

    def release(self, topics: Sequence[str]) -> int:
        """Make every row already tried due now, those claimed by a control plane that is gone
        among them (its consumer starting again); the number released."""
        now = self.clock()
        with self.db.transaction() as session:
            result = session.execute(
                update(OutboxRow)
                .where(
                    OutboxRow.topic.in_(list(topics)),
                    OutboxRow.attempts > 0,
                    OutboxRow.next_attempt_at > now,
                )
                .values(next_attempt_at=now)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def pending(self, topics: Sequence[str]) -> list[Message]:
        """Every row of these topics not yet done, oldest first (for tests and inspection)."""
        with self.db.transaction() as session:
            rows = session.scalars(
                select(OutboxRow).where(OutboxRow.topic.in_(list(topics))).order_by(OutboxRow.id)
            ).all()
            return [_message(r) for r in rows]


def _message(row: OutboxRow) -> Message:
    return Message(row.id, row.uid, row.topic, dict(row.payload), row.attempts, row.created_at)
