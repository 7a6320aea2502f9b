"""The keyed audit chain and its checkpoints: someone who can write to the database, and knows
the unkeyed hash function, still cannot edit, delete, re-chain or truncate unnoticed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

import stratus.iam.tables  # noqa: F401 - registers the IAM tables on Base.metadata
from stratus.core.database import Base, Database
from stratus.iam.audit import GENESIS, AuditEntry, AuditLog, entry_hash
from stratus.iam.audit_checkpoints import CHECKPOINT_KEY, CheckpointStore
from stratus.migrations.runner import upgrade

KEY = bytes(range(32))


class MemoryStore:
    """The object store's small objects, in memory."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.writes = 0

    def read_small_object(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def write_small_object(self, key: str, data: bytes) -> None:
        self.objects[key] = data
        self.writes += 1


def _typed(store: MemoryStore) -> CheckpointStore:
    return store  # mypy checks the fake against the Protocol


def entry(n: int) -> AuditEntry:
    return AuditEntry(
        actor=f"user:u{n % 3}",
        action="objects.put",
        resource=f"/api/v1/things/{n}",
        project="alpha",
        outcome="success",
        status_code=201,
        request_id=f"req-{n:04d}",
        source="127.0.0.1",
        details={"n": n},
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'audit.db'}")
    Base.metadata.create_all(database.engine)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def log(db: Database, store: MemoryStore) -> AuditLog:
    return AuditLog(db, KEY, checkpoints=_typed(store))


def fill(log: AuditLog, first: int, last: int) -> None:
    for n in range(first, last + 1):
        log.append(entry(n))


# --- tampering with plain SQL, as someone holding only the database would ---------------------


def sql(db: Database, statement: str, **params: Any) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(statement), params)


def rows(db: Database) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        found = conn.execute(text("SELECT * FROM audit_events ORDER BY seq")).mappings()
        return [dict(r) for r in found]


def rechain_unkeyed(db: Database) -> None:
    """Recompute every hash and link with the unkeyed function, and rewrite the head to match."""
    prev = GENESIS
    last = 0
    for r in rows(db):
        details = r["details"]
        fields = {
            k: r[k]
            for k in (
                "actor",
                "action",
                "resource",
                "project",
                "outcome",
                "status_code",
                "request_id",
                "source",
            )
        }
        fields["details"] = json.loads(details) if isinstance(details, str) else details
        time = datetime.fromisoformat(str(r["time"]))
        digest = entry_hash(r["seq"], time, fields, prev)
        sql(
            db,
            "UPDATE audit_events SET prev_hash = :prev, hash = :hash WHERE seq = :seq",
            prev=prev,
            hash=digest,
            seq=r["seq"],
        )
        prev, last = digest, r["seq"]
    sql(
        db,
        "UPDATE audit_head SET last_seq = :seq, last_hash = :hash, count = :seq",
        seq=last,
        hash=prev,
    )


def test_keyed_entries_are_not_the_unkeyed_hash(log: AuditLog, db: Database) -> None:
    fill(log, 1, 2)
    stored = rows(db)
    rechain_unkeyed(db)
    assert [r["hash"] for r in rows(db)] != [r["hash"] for r in stored]


def test_an_edit_rechained_with_the_unkeyed_function_is_named(log: AuditLog, db: Database) -> None:
    fill(log, 1, 6)
    sql(db, "UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 3")
    rechain_unkeyed(db)
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 1)  # nothing verifies under the key
    assert result.problem == "entry 1 was altered"


def test_an_edit_rechained_from_the_edited_entry_is_named(log: AuditLog, db: Database) -> None:
    fill(log, 1, 6)
    sql(db, "UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 3")
    # a careful forger leaves entries 1 and 2 as they were and re-chains from 3 on
    prev = rows(db)[1]["hash"]
    for r in rows(db)[2:]:
        fields = {k: r[k] for k in ("actor", "action", "resource", "project", "outcome")}
        fields |= {
            "status_code": r["status_code"],
            "request_id": r["request_id"],
            "source": r["source"],
            "details": json.loads(r["details"]),
        }
        digest = entry_hash(r["seq"], datetime.fromisoformat(str(r["time"])), fields, prev)
        sql(
            db,
            "UPDATE audit_events SET prev_hash = :p, hash = :h WHERE seq = :s",
            p=prev,
            h=digest,
            s=r["seq"],
        )
        prev = digest
    sql(db, "UPDATE audit_head SET last_hash = :h", h=prev)
    result = log.verify()
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 3, 2)
    assert result.problem == "entry 3 was altered"


def test_a_deletion_closed_up_and_rechained_is_named(log: AuditLog, db: Database) -> None:
    fill(log, 1, 6)
    sql(db, "DELETE FROM audit_events WHERE seq = 3")
    sql(db, "UPDATE audit_events SET seq = seq - 1 WHERE seq > 3")
    rechain_unkeyed(db)
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 1)


def test_a_truncation_with_the_head_rewritten_is_found_by_the_checkpoint(
    log: AuditLog, db: Database
) -> None:
    fill(log, 1, 6)
    assert log.checkpoint() is not None
    fourth = rows(db)[3]["hash"]
    sql(db, "DELETE FROM audit_events WHERE seq > 4")
    sql(db, "UPDATE audit_head SET last_seq = 4, last_hash = :h, count = 4", h=fourth)
    result = log.verify()
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 5, 4)
    assert result.problem == (
        "entries 5 to 6 were removed from the end "
        "(the checkpoint in the object store records entry 6)"
    )


def test_a_truncation_is_found_by_a_fresh_process_too(
    db: Database, store: MemoryStore, log: AuditLog
) -> None:
    fill(log, 1, 3)
    log.checkpoint()
    second = rows(db)[1]["hash"]
    sql(db, "DELETE FROM audit_events WHERE seq = 3")
    sql(db, "UPDATE audit_head SET last_seq = 2, last_hash = :h, count = 2", h=second)
    restarted = AuditLog(db, KEY, checkpoints=store)
    result = restarted.verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert result.problem is not None and "entry 3 was removed from the end" in result.problem


def test_the_checkpoint_never_moves_over_a_truncation(
    log: AuditLog, db: Database, store: MemoryStore
) -> None:
    fill(log, 1, 4)
    log.checkpoint()
    anchored = store.objects[CHECKPOINT_KEY]
    second = rows(db)[1]["hash"]
    sql(db, "DELETE FROM audit_events WHERE seq > 2")
    sql(db, "UPDATE audit_head SET last_seq = 2, last_hash = :h, count = 2", h=second)
    fill(log, 10, 13)  # new entries 3..6 cover the gap and pass the checkpoint's seq
    assert log.checkpoint() is None
    assert store.objects[CHECKPOINT_KEY] == anchored
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert result.problem is not None and "entry 4 was replaced" in result.problem


def test_moving_the_keyed_start_and_rechaining_is_found(log: AuditLog, db: Database) -> None:
    fill(log, 1, 5)
    log.checkpoint()
    sql(db, "UPDATE audit_head SET keyed_from = 100")
    rechain_unkeyed(db)
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 1)
    assert result.problem is not None and "keyed chain's start was moved" in result.problem


def test_entries_after_the_last_checkpoint_are_the_unprotected_window(
    log: AuditLog, db: Database
) -> None:
    fill(log, 1, 4)
    log.checkpoint()
    fill(log, 5, 6)
    fifth = rows(db)[4]["hash"]
    sql(db, "DELETE FROM audit_events WHERE seq = 6")
    sql(db, "UPDATE audit_head SET last_seq = 5, last_hash = :h, count = 5", h=fifth)
    result = log.verify()
    assert result.ok and result.checkpoint_seq == 5  # verify anchored the head it found


def test_a_forged_checkpoint_is_reported_and_not_overwritten(
    log: AuditLog, store: MemoryStore
) -> None:
    fill(log, 1, 3)
    log.checkpoint()
    document = json.loads(store.objects[CHECKPOINT_KEY])
    document["seq"] = 1
    store.objects[CHECKPOINT_KEY] = json.dumps(document).encode()
    restarted = AuditLog(log.db, KEY, checkpoints=store)
    result = restarted.verify()
    assert not result.ok and result.first_bad_seq is None
    assert result.problem is not None and "fails its signature" in result.problem
    writes = store.writes
    assert restarted.checkpoint() is None
    assert store.writes == writes


def test_a_checkpoint_rolled_back_is_reported(log: AuditLog, store: MemoryStore) -> None:
    fill(log, 1, 2)
    log.checkpoint()
    old = store.objects[CHECKPOINT_KEY]
    fill(log, 3, 5)
    log.checkpoint()
    store.objects[CHECKPOINT_KEY] = old
    result = log.verify()
    assert not result.ok
    assert result.problem is not None and "older one" in result.problem


def test_checkpoints_are_written_only_when_the_head_moves(
    log: AuditLog, store: MemoryStore
) -> None:
    assert log.checkpoint() is None and store.writes == 0  # nothing to anchor yet
    fill(log, 1, 3)
    first = log.checkpoint()
    assert first is not None and first.seq == 3 and first.keyed_from == 1
    log.checkpoint()
    assert store.writes == 1
    log.append(entry(4))
    assert log.checkpoint() is not None and store.writes == 2
    assert log.verify().checkpoint_seq == 4


# --- an existing log, written before the chain was keyed ---------------------------------------


def test_an_upgraded_log_keeps_its_unkeyed_entries_verifiable(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        upgrade(db, "0013")
        prev = GENESIS
        for n in range(1, 4):  # what a release before the keyed chain wrote
            fields: dict[str, Any] = dict(vars(entry(n)))
            time = datetime(2026, 11, 1, 12, 0, n)
            digest = entry_hash(n, time, fields, prev)
            sql(
                db,
                "INSERT INTO audit_events (seq, time, actor, action, resource, project, outcome,"
                " status_code, request_id, source, details, prev_hash, hash) VALUES (:seq, :time,"
                " :actor, :action, :resource, :project, :outcome, :status_code, :request_id,"
                " :source, :details, :prev, :hash)",
                **(fields | {"details": json.dumps(fields["details"])}),
                seq=n,
                time=time,
                prev=prev,
                hash=digest,
            )
            prev = digest
        sql(db, "INSERT INTO audit_head VALUES (1, 3, :h, 3)", h=prev)
        upgrade(db)
        store = MemoryStore()
        log = AuditLog(db, KEY, checkpoints=store)
        assert log.verify().ok
        fill(log, 4, 6)
        with db.engine.connect() as conn:
            assert conn.scalar(text("SELECT keyed_from FROM audit_head")) == 4
        result = log.verify()
        assert result.ok and result.checked == 6, result.problem

        # an old entry re-chained with the unkeyed function breaks the first keyed link
        sql(db, "UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 2")
        olds = rows(db)[:3]
        prev = olds[0]["hash"]
        for r in olds[1:]:
            fields = {k: r[k] for k in ("actor", "action", "resource", "project", "outcome")}
            fields |= {
                "status_code": r["status_code"],
                "request_id": r["request_id"],
                "source": r["source"],
                "details": json.loads(r["details"]),
            }
            digest = entry_hash(r["seq"], datetime.fromisoformat(str(r["time"])), fields, prev)
            sql(
                db,
                "UPDATE audit_events SET prev_hash = :p, hash = :h WHERE seq = :s",
                p=prev,
                h=digest,
                s=r["seq"],
            )
            prev = digest
        result = log.verify()
        assert (result.ok, result.first_bad_seq) == (False, 3)
        assert result.problem == "entry 3 was altered or replaced (entry 4 no longer links to it)"
    finally:
        db.dispose()
