"""The audit log: an append-only hash chain of every change and every login.

Each entry's hash covers its fields and the previous entry's hash; the head row keeps the last
seq and hash, so `verify` finds an entry that was altered, one removed from the middle, and
one removed from the end. Appends serialize on the head row (SQLite: BEGIN IMMEDIATE;
PostgreSQL: SELECT ... FOR UPDATE).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.errors import InvalidInput
from stratus.core.resources import check_limit, decode_token, encode_token
from stratus.iam.schemas import AuditEventRead, AuditVerification
from stratus.iam.tables import AuditEventRow, AuditHeadRow

GENESIS = "0" * 64


@dataclass
class AuditEntry:
    actor: str
    action: str
    resource: str
    project: str | None
    outcome: str
    status_code: int
    request_id: str
    source: str
    details: dict[str, Any] = field(default_factory=dict)


def entry_hash(seq: int, time: datetime, entry: dict[str, Any], prev_hash: str) -> str:
    payload = {
        "seq": seq,
        "time": as_utc(time).isoformat(timespec="microseconds"),
        "actor": entry["actor"],
        "action": entry["action"],
        "resource": entry["resource"],
        "project": entry["project"],
        "outcome": entry["outcome"],
        "status_code": entry["status_code"],
        "request_id": entry["request_id"],
        "source": entry["source"],
        "details": entry["details"],
        "prev_hash": prev_hash,
    }
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _fields(row: AuditEventRow) -> dict[str, Any]:
    return {
        "actor": row.actor,
        "action": row.action,
        "resource": row.resource,
        "project": row.project,
        "outcome": row.outcome,
        "status_code": row.status_code,
        "request_id": row.request_id,
        "source": row.source,
        "details": row.details or {},
    }


def _text(value: str, limit: int) -> str:
    """A field cut to its column; a NUL (which PostgreSQL text cannot hold) is spelled out."""
    return value.replace("\x00", "\\x00")[:limit]


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def append(self, entry: AuditEntry) -> int:
        with self.db.transaction() as session:
            return self.append_in(session, entry)

    def append_in(self, session: Session, entry: AuditEntry) -> int:
        """Append inside the caller's transaction: the entry is written (or not) with the
        change it records, and before anything that change sets off."""
        head = session.scalar(select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update())
        if head is None:
            head = AuditHeadRow(id=1, last_seq=0, last_hash=GENESIS, count=0)
            session.add(head)
        seq = head.last_seq + 1
        now = utcnow()
        values = {
            "actor": _text(entry.actor, 160),
            "action": _text(entry.action, 80),
            "resource": _text(entry.resource, 1200),
            "project": None if entry.project is None else _text(entry.project, 63),
            "outcome": entry.outcome,
            "status_code": entry.status_code,
            "request_id": _text(entry.request_id, 64),
            "source": _text(entry.source, 64),
            "details": entry.details,
        }
        digest = entry_hash(seq, now, values, head.last_hash)
        session.add(
            AuditEventRow(seq=seq, time=now, prev_hash=head.last_hash, hash=digest, **values)
        )
        head.last_seq, head.last_hash, head.count = seq, digest, head.count + 1
        return seq

    def record(
        self,
        actor: str,
        action: str,
        resource: str,
        project: str | None,
        details: dict[str, Any] | None = None,
    ) -> int:
        """An entry for something the platform did by itself (a controller acting on a
        trigger, an alert firing): the same chain as the requests' entries."""
        from stratus.core.ids import new_request_id

        return self.append(
            AuditEntry(
                actor=actor,
                action=action,
                resource=resource,
                project=project,
                outcome="success",
                status_code=200,
                request_id=new_request_id(),
                source="stratus",
                details=details or {},
            )
        )

    def list(
        self,
        *,
        project: str | None = None,
        projects: list[str] | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        order: str = "desc",
        limit: int | None = None,
        page_token: str | None = None,
    ) -> tuple[list[AuditEventRead], str | None]:
        size = check_limit(limit)
        if order not in ("asc", "desc"):
            raise InvalidInput("order must be 'asc' or 'desc'")
        stmt = select(AuditEventRow)
        if project is not None:
            stmt = stmt.where(AuditEventRow.project == project)
        if projects is not None:
            stmt = stmt.where(AuditEventRow.project.in_(projects))
        if actor is not None:
            stmt = stmt.where(AuditEventRow.actor == actor)
        if action is not None:
            if action.endswith("*"):
                stmt = stmt.where(AuditEventRow.action.startswith(action[:-1], autoescape=True))
            else:
                stmt = stmt.where(AuditEventRow.action == action)
        if since is not None:
            stmt = stmt.where(AuditEventRow.time >= as_utc(since))
        if until is not None:
            stmt = stmt.where(AuditEventRow.time < as_utc(until))
        after = decode_token(page_token)
        if after is not None:
            if isinstance(after, bool) or not isinstance(after, int):
                raise InvalidInput(f"page_token {page_token!r} is not valid")
            stmt = stmt.where(
                AuditEventRow.seq < after if order == "desc" else AuditEventRow.seq > after
            )
        key = AuditEventRow.seq.desc() if order == "desc" else AuditEventRow.seq.asc()
        with self.db.transaction() as session:
            rows = list(session.scalars(stmt.order_by(key).limit(size + 1)))
        token = None
        if len(rows) > size:
            rows = rows[:size]
            token = encode_token(rows[-1].seq)
        return [self._read(r) for r in rows], token

    @staticmethod
    def _read(row: AuditEventRow) -> AuditEventRead:
        return AuditEventRead(
            seq=row.seq,
            time=as_utc(row.time),
            actor=row.actor,
            action=row.action,
            resource=row.resource,
            project=row.project,
            outcome=row.outcome,
            status_code=row.status_code,
            request_id=row.request_id,
            source=row.source,
            details=row.details or {},
            hash=row.hash,
        )

    def verify(self) -> AuditVerification:
        """Walk the chain from the start; name the first entry altered or removed."""
        checked = 0
        prev_hash, expected_seq = GENESIS, 1
        with self.db.transaction() as session:
            head = session.get(AuditHeadRow, 1)
            stmt = (
                select(AuditEventRow).order_by(AuditEventRow.seq).execution_options(yield_per=1000)
            )
            for row in session.scalars(stmt):
                if row.seq != expected_seq:
                    return _bad(checked, expected_seq, f"entry {expected_seq} was removed")
                if row.prev_hash != prev_hash:
                    return _bad(
                        checked,
                        row.seq - 1,
                        f"entry {row.seq - 1} was altered or replaced "
                        f"(entry {row.seq} no longer links to it)",
                    )
                if entry_hash(row.seq, row.time, _fields(row), row.prev_hash) != row.hash:
                    return _bad(checked, row.seq, f"entry {row.seq} was altered")
                checked += 1
                prev_hash, expected_seq = row.hash, row.seq + 1
            if head is not None:
                if head.last_seq >= expected_seq:
                    return _bad(
                        checked, expected_seq, f"entry {expected_seq} was removed (from the end)"
                    )
                if head.last_hash != prev_hash:
                    return _bad(checked, expected_seq - 1, f"entry {expected_seq - 1} was altered")
        return AuditVerification(ok=True, checked=checked)


def _bad(checked: int, seq: int, problem: str) -> AuditVerification:
    return AuditVerification(ok=False, checked=checked, first_bad_seq=seq, problem=problem)
