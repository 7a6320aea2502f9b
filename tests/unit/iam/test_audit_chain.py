"""The audit log's hash chain: appends verify; every kind of tampering is found and named."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

import stratus.iam.tables  # noqa: F401 - registers the IAM tables on Base.metadata
from stratus.core.database import Base, Database
from stratus.core.errors import InvalidInput
from stratus.core.resources import encode_token
from stratus.iam.audit import GENESIS, AuditEntry, AuditLog, entry_hash


def entry(n: int, **kw: object) -> AuditEntry:
    values: dict[str, object] = {
        "actor": f"user:u{n % 3}",
        "action": ["projects.create", "buckets.create", "objects.put"][n % 3],
        "resource": f"/api/v1/things/{n}",
        "project": ["alpha", "beta", None][n % 3],
        "outcome": "success",
        "status_code": 201,
        "request_id": f"req-{n:04d}",
        "source": "127.0.0.1",
        "details": {"method": "POST", "n": n},
    }
    values.update(kw)
    return AuditEntry(**values)  # type: ignore[arg-type]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
def log(db_path: Path) -> Iterator[AuditLog]:
    db = Database(f"sqlite:///{db_path}")
    Base.metadata.create_all(db.engine)
    try:
        yield AuditLog(db)
    finally:
        db.dispose()


def fill(log: AuditLog, n: int) -> list[int]:
    return [log.append(entry(i)) for i in range(1, n + 1)]


def sql(db_path: Path, statement: str, *params: object) -> None:
    """Tamper with the file directly, as someone with access to the database would."""
    conn = sqlite3.connect(db_path)
    try:
        conn.execute(statement, params)
        conn.commit()
    finally:
        conn.close()


def row(db_path: Path, seq: int) -> dict[str, object]:
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        found = conn.execute("SELECT * FROM audit_events WHERE seq = ?", (seq,)).fetchone()
        return dict(found)
    finally:
        conn.close()


# --- appending -------------------------------------------------------------------------------


def test_empty_log_verifies(log: AuditLog) -> None:
    result = log.verify()
    assert result.ok and result.checked == 0 and result.first_bad_seq is None


def test_appends_get_consecutive_seqs_and_verify(log: AuditLog) -> None:
    assert fill(log, 25) == list(range(1, 26))
    result = log.verify()
    assert result.ok, result.problem
    assert result.checked == 25
    assert result.first_bad_seq is None and result.problem is None


def test_entries_link_to_the_previous_hash(log: AuditLog, db_path: Path) -> None:
    fill(log, 3)
    first, second, third = (row(db_path, s) for s in (1, 2, 3))
    assert first["prev_hash"] == GENESIS
    assert second["prev_hash"] == first["hash"]
    assert third["prev_hash"] == second["hash"]
    assert len({first["hash"], second["hash"], third["hash"]}) == 3


def test_stored_hash_is_the_hash_of_the_fields(log: AuditLog) -> None:
    fill(log, 2)
    events, _ = log.list(order="asc")
    for event, prev in zip(events, [GENESIS, events[0].hash], strict=True):
        fields = event.model_dump(include={"actor", "action", "resource", "project"})
        fields |= {
            "outcome": event.outcome,
            "status_code": event.status_code,
            "request_id": event.request_id,
            "source": event.source,
            "details": event.details,
        }
        assert entry_hash(event.seq, event.time, fields, prev) == event.hash


def test_long_fields_are_cut_to_fit(log: AuditLog) -> None:
    log.append(entry(1, actor="user:" + "a" * 500, request_id="r" * 100, resource="/" * 2000))
    [event], _ = log.list()
    assert len(event.actor) == 160 and len(event.request_id) == 64 and len(event.resource) == 1200
    assert log.verify().ok


def test_concurrent_appends_keep_one_chain(log: AuditLog) -> None:
    errors: list[BaseException] = []

    def work(base: int) -> None:
        try:
            for i in range(15):
                log.append(entry(base + i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(100 * t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    result = log.verify()
    assert result.ok, result.problem
    assert result.checked == 60


# --- tampering -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor", "user:mallory"),
        ("action", "projects.delete"),
        ("resource", "/api/v1/elsewhere"),
        ("project", "gamma"),
        ("outcome", "denied"),
        ("status_code", 403),
        ("request_id", "req-forged"),
        ("source", "10.0.0.66"),
        ("details", json.dumps({"method": "GET"})),
        ("time", "2001-01-01 00:00:00.000000"),
    ],
)
def test_an_altered_field_names_its_entry(
    log: AuditLog, db_path: Path, column: str, value: object
) -> None:
    fill(log, 6)
    sql(db_path, f"UPDATE audit_events SET {column} = ? WHERE seq = 4", value)
    result = log.verify()
    assert not result.ok
    assert result.first_bad_seq == 4
    assert result.problem == "entry 4 was altered"
    assert result.checked == 3


def test_an_altered_first_entry_is_found(log: AuditLog, db_path: Path) -> None:
    fill(log, 3)
    sql(db_path, "UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 1")
    result = log.verify()
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 1, 0)


def test_a_removed_middle_entry_is_named(log: AuditLog, db_path: Path) -> None:
    fill(log, 6)
    sql(db_path, "DELETE FROM audit_events WHERE seq = 3")
    result = log.verify()
    assert not result.ok
    assert result.first_bad_seq == 3
    assert result.problem == "entry 3 was removed"
    assert result.checked == 2


def test_a_removed_first_entry_is_named(log: AuditLog, db_path: Path) -> None:
    fill(log, 4)
    sql(db_path, "DELETE FROM audit_events WHERE seq = 1")
    result = log.verify()
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 1, "entry 1 was removed")


def test_a_removed_last_entry_is_detected(log: AuditLog, db_path: Path) -> None:
    fill(log, 5)
    sql(db_path, "DELETE FROM audit_events WHERE seq = 5")
    result = log.verify()
    assert not result.ok
    assert result.first_bad_seq == 5
    assert "entry 5 was removed" in (result.problem or "")
    assert "end" in (result.problem or "")
    assert result.checked == 4


def test_several_removed_from_the_end_are_detected(log: AuditLog, db_path: Path) -> None:
    fill(log, 5)
    sql(db_path, "DELETE FROM audit_events WHERE seq >= 3")
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)


def test_every_entry_removed_is_detected(log: AuditLog, db_path: Path) -> None:
    fill(log, 3)
    sql(db_path, "DELETE FROM audit_events")
    result = log.verify()
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 1, 0)


def _rehash(db_path: Path, seq: int) -> None:
    """Recompute an entry's own hash after altering it, as a careful forger would."""
    data = row(db_path, seq)
    fields = {k: data[k] for k in ("actor", "action", "resource", "project", "outcome")}
    fields |= {
        "status_code": data["status_code"],
        "request_id": data["request_id"],
        "source": data["source"],
        "details": json.loads(str(data["details"])),
    }
    time = datetime.fromisoformat(str(data["time"]))
    digest = entry_hash(seq, time, fields, str(data["prev_hash"]))
    sql(db_path, "UPDATE audit_events SET hash = ? WHERE seq = ?", digest, seq)


def test_an_altered_and_rehashed_entry_breaks_the_next_link(log: AuditLog, db_path: Path) -> None:
    fill(log, 6)
    sql(db_path, "UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 3")
    _rehash(db_path, 3)
    result = log.verify()
    assert not result.ok
    assert result.first_bad_seq == 3  # the altered one, found through entry 4's link
    assert result.problem is not None
    assert "entry 3 was altered or replaced" in result.problem
    assert "entry 4 no longer links to it" in result.problem
    assert result.checked == 3


def test_an_altered_and_rehashed_last_entry_disagrees_with_the_head(
    log: AuditLog, db_path: Path
) -> None:
    fill(log, 4)
    sql(db_path, "UPDATE audit_events SET outcome = 'failure' WHERE seq = 4")
    _rehash(db_path, 4)
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert result.problem == "entry 4 was altered"


def test_rehash_helper_reproduces_an_untouched_hash(log: AuditLog, db_path: Path) -> None:
    fill(log, 2)
    before = row(db_path, 2)["hash"]
    _rehash(db_path, 2)
    assert row(db_path, 2)["hash"] == before
    assert log.verify().ok


def test_appending_after_verify_keeps_working(log: AuditLog) -> None:
    fill(log, 3)
    assert log.verify().ok
    assert log.append(entry(99)) == 4
    assert log.verify().checked == 4


# --- reading ---------------------------------------------------------------------------------


def test_list_newest_first_by_default_and_oldest_first_on_request(log: AuditLog) -> None:
    fill(log, 5)
    newest, _ = log.list()
    oldest, _ = log.list(order="asc")
    assert [e.seq for e in newest] == [5, 4, 3, 2, 1]
    assert [e.seq for e in oldest] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_list_pages(log: AuditLog, order: str) -> None:
    fill(log, 7)
    seen: list[int] = []
    token: str | None = None
    while True:
        page, token = log.list(order=order, limit=3, page_token=token)
        seen += [e.seq for e in page]
        if token is None:
            break
    expected = list(range(1, 8))
    assert seen == (expected if order == "asc" else expected[::-1])


def test_list_filters(log: AuditLog) -> None:
    fill(log, 9)
    by_project, _ = log.list(project="alpha")
    assert {e.project for e in by_project} == {"alpha"} and len(by_project) == 3
    by_projects, _ = log.list(projects=["alpha", "beta"])
    assert {e.project for e in by_projects} == {"alpha", "beta"} and len(by_projects) == 6
    none_allowed, _ = log.list(projects=[])
    assert none_allowed == []
    by_actor, _ = log.list(actor="user:u1")
    assert {e.actor for e in by_actor} == {"user:u1"} and len(by_actor) == 3
    by_action, _ = log.list(action="objects.put")
    assert {e.action for e in by_action} == {"objects.put"}
    by_prefix, _ = log.list(action="b*")
    assert {e.action for e in by_prefix} == {"buckets.create"}


def test_action_prefix_treats_wildcards_literally(log: AuditLog) -> None:
    log.append(entry(1, action="a_b.create"))
    log.append(entry(2, action="axb.create"))
    log.append(entry(3, action="a%b.create"))
    found, _ = log.list(action="a_b*")
    assert [e.action for e in found] == ["a_b.create"]
    found, _ = log.list(action="a%*")
    assert [e.action for e in found] == ["a%b.create"]


def test_since_and_until(log: AuditLog) -> None:
    fill(log, 3)
    now = datetime.now(UTC)
    assert len(log.list(since=now - timedelta(minutes=5))[0]) == 3
    assert log.list(since=now + timedelta(minutes=5))[0] == []
    assert log.list(until=now - timedelta(minutes=5))[0] == []
    assert len(log.list(until=now + timedelta(minutes=5))[0]) == 3


@pytest.mark.parametrize("hours", [-8, -2, 2, 5, 14])
def test_since_and_until_in_other_time_zones(log: AuditLog, hours: int) -> None:
    fill(log, 2)
    zone = timezone(timedelta(hours=hours))
    a_minute_ago = (datetime.now(UTC) - timedelta(minutes=1)).astimezone(zone)
    in_a_minute = (datetime.now(UTC) + timedelta(minutes=1)).astimezone(zone)
    assert len(log.list(since=a_minute_ago)[0]) == 2
    assert log.list(since=in_a_minute)[0] == []
    assert log.list(until=a_minute_ago)[0] == []
    assert len(log.list(until=in_a_minute)[0]) == 2


def test_bad_order_and_tokens(log: AuditLog) -> None:
    fill(log, 2)
    with pytest.raises(InvalidInput):
        log.list(order="sideways")
    for position in ("abc", [1], True, 1.5):
        with pytest.raises(InvalidInput, match="page_token"):
            log.list(page_token=encode_token(position))
    with pytest.raises(InvalidInput):
        log.list(limit=0)
