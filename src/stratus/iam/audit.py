"""The audit log: an append-only hash chain of every change and every login.

Each entry's hash covers its fields and the previous entry's hash, keyed with a secret derived
from the root secret (HMAC-SHA256; the root secret is the first master key, and a rotation of
the master key keeps it), so someone who can write to the database cannot recompute
the chain after editing it. The head row keeps the last seq and hash, and signed checkpoints
of it in the object store (`audit_checkpoints.py`) show entries removed from the end even when
the head row was rewritten too. `verify` names the first entry altered, removed or replaced.
Entries written before the chain was keyed (seq < `audit_head.keyed_from`) keep their plain
SHA-256 hashes; the first keyed entry's link covers them. Appends serialize on the head row
(SQLite: BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR UPDATE).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.errors import InvalidInput, ServiceUnavailable
from stratus.core.resources import check_limit, decode_token, encode_token
from stratus.iam.audit_checkpoints import (
    CHECKPOINT_KEY,
    Checkpoint,
    CheckpointStore,
    ForgedCheckpoint,
    decode_checkpoint,
    encode_checkpoint,
)
from stratus.iam.schemas import AuditEventRead, AuditVerification
from stratus.iam.tables import AuditEventRow, AuditHeadRow

log = logging.getLogger(__name__)

GENESIS = "0" * 64
# The purpose the chain's key is derived for (`iam.credentials.derive_key(root, AUDIT_CHAIN)`).
AUDIT_CHAIN = "stratus audit chain v1"


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


def entry_hash(
    seq: int, time: datetime, entry: dict[str, Any], prev_hash: str, key: bytes | None = None
) -> str:
    """HMAC-SHA256 of the entry under `key`; without a key, the legacy plain SHA-256 that
    entries written before the chain was keyed carry."""
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
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    if key is None:
        return hashlib.sha256(raw).hexdigest()
    return hmac.new(key, raw, hashlib.sha256).hexdigest()


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
    """The chain; with `chain_key` new entries are keyed, with `checkpoints` its head is
    anchored in the object store. The platform gives both; without them (tests of other
    services) the log is the legacy unkeyed chain."""

    def __init__(
        self,
        db: Database,
        chain_key: bytes | None = None,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        self.db = db
        self._key = chain_key
        self._checkpoints = checkpoints if chain_key is not None else None
        self._checkpoint_lock = threading.Lock()
        self._last_checkpoint: Checkpoint | None = None

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
        if self._key is not None and head.keyed_from is None:
            head.keyed_from = seq  # a log written before keyed chains: keyed from here on
        if self._key is None and head.keyed_from is not None:
            raise RuntimeError("this audit log's chain is keyed: open it with the chain key")
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
        digest = entry_hash(seq, now, values, head.last_hash, self._key)
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
        """Walk the chain from the start and name the first entry altered, removed or
        replaced; then hold the head against the checkpoint in the object store, and on
        success move the checkpoint up to the head."""
        known = self._last_checkpoint  # before reading the store: never newer than the store
        try:
            anchor = self._read_checkpoint()
        except ForgedCheckpoint as exc:
            return AuditVerification(ok=False, checked=0, problem=str(exc))
        checked = 0
        prev_hash, expected_seq = GENESIS, 1
        anchored_hash: str | None = None
        with self.db.transaction() as session:
            head = session.get(AuditHeadRow, 1)
            keyed_from = head.keyed_from if head is not None else None
            if keyed_from is not None and self._key is None:
                raise RuntimeError("this audit log's chain is keyed: open it with the chain key")
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
                key = self._key if keyed_from is not None and row.seq >= keyed_from else None
                if entry_hash(row.seq, row.time, _fields(row), row.prev_hash, key) != row.hash:
                    return _bad(checked, row.seq, f"entry {row.seq} was altered")
                if anchor is not None and row.seq == anchor.seq:
                    anchored_hash = row.hash
                checked += 1
                prev_hash, expected_seq = row.hash, row.seq + 1
            if head is not None:
                if head.last_seq >= expected_seq:
                    return _bad(
                        checked, expected_seq, f"entry {expected_seq} was removed (from the end)"
                    )
                if head.last_hash != prev_hash:
                    return _bad(checked, expected_seq - 1, f"entry {expected_seq - 1} was altered")
        if known is not None and (anchor is None or anchor.seq < known.seq):
            return AuditVerification(
                ok=False,
                checked=checked,
                first_bad_seq=min(known.seq, expected_seq),
                problem=f"the audit checkpoint in the object store was removed or replaced by "
                f"an older one (this control plane anchored entry {known.seq})",
            )
        if anchor is not None:
            found = _against(anchor, checked, expected_seq - 1, anchored_hash, keyed_from)
            if found is not None:
                return found
        try:
            anchor = self.checkpoint() or anchor
        except ServiceUnavailable:
            log.warning("the audit checkpoint could not be written after a verify; will retry")
        return AuditVerification(
            ok=True, checked=checked, checkpoint_seq=anchor.seq if anchor is not None else None
        )

    # --- checkpoints ---------------------------------------------------------------------------

    def _read_checkpoint(self) -> Checkpoint | None:
        if self._checkpoints is None or self._key is None:
            return None
        data = self._checkpoints.read_small_object(CHECKPOINT_KEY)
        return None if data is None else decode_checkpoint(self._key, data)

    def checkpoint(self) -> Checkpoint | None:
        """Anchor the head in the object store when it has moved since the last checkpoint.

        The checkpoint only moves forward along the same chain: a head behind it, a changed
        `keyed_from`, or a chain that no longer holds the checkpointed entry is never anchored
        (that would erase the evidence); it is logged and left for `verify` to name. Called
        every few seconds, on verify and on shutdown: cheap when nothing changed."""
        if self._checkpoints is None or self._key is None:
            return None
        with self._checkpoint_lock:
            previous = self._last_checkpoint
            if previous is None:
                try:
                    previous = self._read_checkpoint()
                except ForgedCheckpoint as exc:
                    log.warning("%s: not replacing it (run `stratus audit verify`)", exc)
                    return None
            with self.db.transaction() as session:
                head = session.get(AuditHeadRow, 1)
                if head is None or head.last_seq == 0:
                    return previous
                now_at = (head.last_seq, head.last_hash, head.keyed_from)
                if previous is not None:
                    if now_at == (previous.seq, previous.hash, previous.keyed_from):
                        self._last_checkpoint = previous
                        return previous
                    at = session.get(AuditEventRow, previous.seq)
                    if (
                        head.last_seq < previous.seq
                        or head.keyed_from != previous.keyed_from
                        or at is None
                        or at.hash != previous.hash
                    ):
                        log.warning(
                            "the audit log no longer agrees with its checkpoint at entry %d: "
                            "not moving the checkpoint (run `stratus audit verify`)",
                            previous.seq,
                        )
                        return None
                new = Checkpoint(
                    seq=head.last_seq,
                    hash=head.last_hash,
                    keyed_from=head.keyed_from,
                    time=utcnow(),
                )
            self._checkpoints.write_small_object(CHECKPOINT_KEY, encode_checkpoint(self._key, new))
            self._last_checkpoint = new
            return new


def _against(
    anchor: Checkpoint, checked: int, last: int, anchored_hash: str | None, keyed_from: int | None
) -> AuditVerification | None:
    """What the database's chain (walked up to `last`) says against the checkpoint."""
    where = f"the checkpoint in the object store records entry {anchor.seq}"
    if anchor.seq > last:
        removed = (
            f"entry {last + 1} was"
            if last + 1 == anchor.seq
            else (f"entries {last + 1} to {anchor.seq} were")
        )
        return _bad(checked, last + 1, f"{removed} removed from the end ({where})")
    if anchor.keyed_from != keyed_from:
        moved = [s for s in (anchor.keyed_from, keyed_from) if s is not None]
        return _bad(
            checked,
            min(moved) if moved else 1,
            f"the keyed chain's start was moved from entry {anchor.keyed_from} to {keyed_from} "
            f"({where} keyed from entry {anchor.keyed_from})",
        )
    if anchor.seq > 0 and anchored_hash != anchor.hash:
        return _bad(
            checked, anchor.seq, f"entry {anchor.seq} was replaced (it differs from {where})"
        )
    return None


def _bad(checked: int, seq: int, problem: str) -> AuditVerification:
    return AuditVerification(ok=False, checked=checked, first_bad_seq=seq, problem=problem)
