"""The audit log end to end: what is recorded, by whom, how it is filtered, and tampering."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from stratus.client import Client
from stratus.core.errors import NotFound, PermissionDenied
from stratus.iam.audit import GENESIS, entry_hash
from stratus.iam.schemas import AuditEventRead
from stratus.testing import LocalPlatform

PASSWORD = "correct-horse-battery"


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def http(platform: LocalPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.url, timeout=30) as client:
        yield client


def by_request(admin: Client, request_id: str, **filters: Any) -> AuditEventRead:
    found = [e for e in admin.audit.list(**filters, limit=500) if e.request_id == request_id]
    assert len(found) == 1, f"{len(found)} audit entries for request {request_id}"
    return found[0]


@dataclass
class Story:
    """One user's mutating steps, each with the request id the server answered with."""

    user: str
    key: str
    project: str
    bucket: str
    started: datetime
    request_ids: dict[str, str]


@pytest.fixture(scope="module")
def story(platform: LocalPlatform) -> Story:
    started = datetime.now(UTC) - timedelta(seconds=1)
    user, project, bucket = uniq("auditor"), uniq("aud"), uniq("bk")
    ids: dict[str, str] = {}
    with platform.client() as admin, httpx.Client(base_url=platform.url, timeout=30) as http:
        response = http.post(
            "/api/v1/users",
            json={"name": user, "password": PASSWORD},
            headers=bearer(platform.api_key),
        )
        assert response.status_code == 201
        ids["users.create"] = response.headers["x-request-id"]
        key = admin.keys.create(user=user).secret
        steps = [
            ("projects.create", "POST", "/api/v1/projects", {"json": {"name": project}}),
            (
                "buckets.create",
                "POST",
                f"/api/v1/projects/{project}/buckets",
                {"json": {"name": bucket}},
            ),
            (
                "objects.put",
                "PUT",
                f"/api/v1/projects/{project}/buckets/{bucket}/objects/data/a.txt",
                {"content": b"hello", "headers": {"content-type": "text/plain", **bearer(key)}},
            ),
            ("keys.create", "POST", "/api/v1/keys", {"json": {"name": "second"}}),
        ]
        for action, method, path, kwargs in steps:
            kwargs.setdefault("headers", bearer(key))
            response = http.request(method, path, **kwargs)
            assert response.status_code == 201, response.text
            ids[action] = response.headers["x-request-id"]
    return Story(user, key, project, bucket, started, ids)


# --- what is recorded ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "in_project", "resource"),
    [
        ("users.create", False, "/api/v1/users"),
        ("projects.create", True, "/api/v1/projects"),
        ("buckets.create", True, "/api/v1/projects/{p}/buckets"),
        ("objects.put", True, "/api/v1/projects/{p}/buckets/{b}/objects/data/a.txt"),
        ("keys.create", False, "/api/v1/keys"),
    ],
)
def test_each_change_is_recorded(
    story: Story, admin: Client, action: str, in_project: bool, resource: str
) -> None:
    event = by_request(admin, story.request_ids[action], action=action)
    actor = "user:admin" if action == "users.create" else f"user:{story.user}"
    assert event.actor == actor
    assert event.action == action
    assert event.project == (story.project if in_project else None)
    assert event.outcome == "success"
    assert event.status_code == 201
    assert event.request_id == story.request_ids[action]
    assert event.resource == resource.format(p=story.project, b=story.bucket)
    assert event.details["method"] in ("POST", "PUT")
    assert event.source == "127.0.0.1"
    assert len(event.hash) == 64
    assert story.started <= event.time <= datetime.now(UTC) + timedelta(seconds=5)


def test_request_ids_are_unique_and_well_formed(story: Story) -> None:
    ids = list(story.request_ids.values())
    assert len(set(ids)) == len(ids)
    for rid in ids:
        assert rid.startswith("req-")


def test_a_caller_supplied_request_id_is_kept(
    http: httpx.Client, admin: Client, platform: LocalPlatform
) -> None:
    rid = f"trace-{uuid.uuid4().hex}"[:40]
    response = http.post(
        "/api/v1/projects",
        json={"name": uniq("p")},
        headers={**bearer(platform.api_key), "X-Request-Id": rid},
    )
    assert response.status_code == 201
    assert response.headers["x-request-id"] == rid
    assert by_request(admin, rid).action == "projects.create"


@pytest.mark.parametrize("unsafe", ["has spaces in it", "x" * 65, "semi;colon", "new\tline"])
def test_an_unsafe_request_id_is_replaced(http: httpx.Client, unsafe: str) -> None:
    response = http.get("/healthz", headers={"X-Request-Id": unsafe})
    assert response.headers["x-request-id"] != unsafe
    assert response.headers["x-request-id"].startswith("req-")


def test_failed_login_is_recorded_as_denied(http: httpx.Client, admin: Client) -> None:
    name = uniq("u")
    admin.users.create(name, PASSWORD)
    bad = http.post("/api/v1/auth/login", json={"username": name, "password": "wrong-password"})
    assert bad.status_code == 401
    event = by_request(admin, bad.headers["x-request-id"], actor=f"user:{name}")
    assert event.action == "auth.login"
    assert event.actor == f"user:{name}"
    assert event.outcome == "denied"
    assert event.status_code == 401
    assert event.project is None

    good = http.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert good.status_code == 200
    event = by_request(admin, good.headers["x-request-id"], actor=f"user:{name}")
    assert (event.action, event.outcome, event.status_code) == ("auth.login", "success", 200)
    assert good.json()["token"] not in json.dumps(event.model_dump(mode="json"))


def test_login_of_an_unknown_user_is_recorded(http: httpx.Client, admin: Client) -> None:
    ghost = uniq("ghost")
    response = http.post("/api/v1/auth/login", json={"username": ghost, "password": "whatever1"})
    assert response.status_code == 401
    event = by_request(admin, response.headers["x-request-id"], action="auth.login")
    assert (event.actor, event.outcome) == (f"user:{ghost}", "denied")


def test_denied_requests_are_recorded(http: httpx.Client, admin: Client) -> None:
    project = uniq("p")
    admin.projects.create(project)
    viewer = uniq("viewer")
    admin.users.create(viewer)
    admin.projects.set_member(project, "viewer", user=viewer)
    key = admin.keys.create(user=viewer).secret

    forbidden = http.post(
        f"/api/v1/projects/{project}/buckets", json={"name": "nope"}, headers=bearer(key)
    )
    assert forbidden.status_code == 403
    event = by_request(admin, forbidden.headers["x-request-id"], project=project)
    assert event.actor == f"user:{viewer}"
    assert event.action == "buckets.create"
    assert (event.outcome, event.status_code) == ("denied", 403)

    anonymous = http.post(f"/api/v1/projects/{project}/buckets", json={"name": "nope"})
    assert anonymous.status_code == 401
    event = by_request(admin, anonymous.headers["x-request-id"], project=project)
    assert (event.actor, event.outcome, event.status_code) == ("anonymous", "denied", 401)

    hidden = uniq("hidden")
    admin.projects.create(hidden)
    not_found = http.delete(f"/api/v1/projects/{hidden}", headers=bearer(key))
    assert not_found.status_code == 404
    event = by_request(admin, not_found.headers["x-request-id"], project=hidden)
    assert (event.actor, event.action, event.outcome) == (
        f"user:{viewer}",
        "projects.delete",
        "failure",
    )

    invalid = http.post("/api/v1/projects", json={"name": "Bad_Name"}, headers=bearer(key))
    assert invalid.status_code == 422
    event = by_request(admin, invalid.headers["x-request-id"], action="projects.create")
    assert (event.outcome, event.status_code) == ("failure", 422)


def test_reads_are_not_recorded(
    http: httpx.Client, admin: Client, story: Story, platform: LocalPlatform
) -> None:
    rids = []
    for method, path in [
        ("GET", "/api/v1/projects"),
        ("GET", f"/api/v1/projects/{story.project}"),
        ("GET", f"/api/v1/projects/{story.project}/buckets/{story.bucket}/objects/data/a.txt"),
        ("HEAD", f"/api/v1/projects/{story.project}/buckets/{story.bucket}/objects/data/a.txt"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/auth/whoami"),
        ("GET", "/api/v1/projects/no-such-project-anywhere"),
    ]:
        rid = f"read-{uuid.uuid4().hex[:12]}"
        response = http.request(
            method, path, headers={**bearer(platform.api_key), "X-Request-Id": rid}
        )
        assert response.headers["x-request-id"] == rid
        rids.append(rid)
    recorded = {e.request_id for e in admin.audit.list(limit=300)}
    assert not recorded & set(rids)


# --- filters ---------------------------------------------------------------------------------


def test_filter_by_project(story: Story, admin: Client) -> None:
    events = admin.audit.list(project=story.project)
    assert {e.project for e in events} == {story.project}
    assert {"projects.create", "buckets.create", "objects.put"} <= {e.action for e in events}


def test_filter_by_actor(story: Story, admin: Client) -> None:
    events = admin.audit.list(actor=f"user:{story.user}")
    assert {e.actor for e in events} == {f"user:{story.user}"}
    assert {e.action for e in events} == {
        "projects.create",
        "buckets.create",
        "objects.put",
        "keys.create",
    }


def test_filter_by_action_and_prefix(story: Story, admin: Client) -> None:
    exact = admin.audit.list(action="buckets.create", since=story.started.isoformat())
    assert exact and {e.action for e in exact} == {"buckets.create"}
    assert story.request_ids["buckets.create"] in {e.request_id for e in exact}
    prefixed = admin.audit.list(action="objects.*", actor=f"user:{story.user}")
    assert [e.action for e in prefixed] == ["objects.put"]


def test_filter_by_time(story: Story, admin: Client) -> None:
    mine = f"user:{story.user}"
    assert len(admin.audit.list(actor=mine, since=story.started.isoformat())) == 4
    future = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    assert admin.audit.list(actor=mine, since=future) == []
    assert admin.audit.list(actor=mine, until=story.started.isoformat()) == []
    assert len(admin.audit.list(actor=mine, until=future)) == 4


@pytest.mark.parametrize("hours", [-7, 3, 9])
def test_filter_by_time_in_another_time_zone(story: Story, admin: Client, hours: int) -> None:
    zone = timezone(timedelta(hours=hours))
    mine = f"user:{story.user}"
    since = story.started.astimezone(zone).isoformat()
    assert len(admin.audit.list(actor=mine, since=since)) == 4
    future = (datetime.now(UTC) + timedelta(minutes=10)).astimezone(zone).isoformat()
    assert admin.audit.list(actor=mine, since=future) == []


def test_order_and_limit(story: Story, admin: Client) -> None:
    mine = f"user:{story.user}"
    newest = admin.audit.list(actor=mine)
    oldest = admin.audit.list(actor=mine, order="asc")
    assert [e.seq for e in newest] == sorted((e.seq for e in newest), reverse=True)
    assert [e.seq for e in oldest] == [e.seq for e in reversed(newest)]
    assert oldest[0].action == "projects.create"
    assert len(admin.audit.list(actor=mine, limit=2)) == 2


def test_bad_filters_are_refused(http: httpx.Client, platform: LocalPlatform) -> None:
    for params in ({"since": "yesterday"}, {"order": "sideways"}, {"limit": 0}):
        response = http.get("/api/v1/audit", params=params, headers=bearer(platform.api_key))
        assert response.status_code == 422, params


def test_owners_see_their_projects_only(story: Story, http: httpx.Client, admin: Client) -> None:
    with Client(url=admin.url, api_key=story.key) as c:
        events = c.audit.list()
        assert {e.project for e in events} == {story.project}
        with pytest.raises(NotFound):
            c.audit.list(project="default")
        with pytest.raises(PermissionDenied):
            c.audit.verify()


def test_editors_may_not_read_the_audit_log(admin: Client, story: Story) -> None:
    editor = uniq("ed")
    admin.users.create(editor)
    admin.projects.set_member(story.project, "editor", user=editor)
    key = admin.keys.create(user=editor).secret
    with Client(url=admin.url, api_key=key) as c:
        with pytest.raises(PermissionDenied):
            c.audit.list(project=story.project)
        assert c.audit.list() == []


# --- the CLI ---------------------------------------------------------------------------------

CliRun = Callable[..., Any]


def test_cli_audit_list_json(cli: CliRun, story: Story) -> None:
    result = cli("audit", "list", "-p", story.project, "-o", "json", "-n", "500")
    assert result.code == 0, result.stderr
    events = json.loads(result.stdout)
    assert {e["project"] for e in events} == {story.project}
    assert story.request_ids["objects.put"] in {e["request_id"] for e in events}
    oldest = cli("audit", "list", "--actor", f"user:{story.user}", "--oldest-first", "-o", "json")
    assert [e["action"] for e in json.loads(oldest.stdout)] == [
        "projects.create",
        "buckets.create",
        "objects.put",
        "keys.create",
    ]
    table = cli("audit", "list", "--action", "objects.*", "-n", "3")
    assert table.code == 0 and "objects.put" in table.stdout and "SEQ" in table.stdout


def test_cli_audit_verify(cli: CliRun) -> None:
    result = cli("audit", "verify")
    assert result.code == 0, result.stderr
    assert "intact" in result.stdout
    as_json = cli("audit", "verify", "-o", "json")
    assert as_json.code == 0
    verdict = json.loads(as_json.stdout)
    assert verdict["ok"] is True and verdict["checked"] > 0 and verdict["first_bad_seq"] is None


# --- tampering -------------------------------------------------------------------------------


def _cli(run_cli: Callable[..., Any], p: LocalPlatform, *args: str) -> tuple[int, str, str]:
    result = run_cli(*args, env=p.cli_env())
    return result.code, result.stdout, result.stderr


def _make_changes(c: Client) -> None:
    c.projects.create("one")  # seq 1
    c.users.create("bob", PASSWORD)  # seq 2
    c.buckets.create("data", project="one")  # seq 3
    c.buckets.upload("data", "x.bin", b"x", project="one")  # seq 4
    c.keys.create("spare")  # seq 5


def _tamper(db: Path, statement: str) -> None:
    conn = sqlite3.connect(db)
    try:
        with conn:
            changed = conn.execute(statement).rowcount
        assert changed == 1
    finally:
        conn.close()


def _digest(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT seq, hash FROM audit_events ORDER BY seq").fetchall()
    finally:
        conn.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def test_an_altered_entry_is_reported(tmp_path: Path, run_cli: Callable[..., Any]) -> None:
    with LocalPlatform(tmp_path / "home") as p:
        with p.client() as c:
            _make_changes(c)
            assert c.audit.verify().ok
            assert c.audit.verify().checked == 5
            assert c.audit.list(order="asc")[1].actor == "user:admin"
        p.stop()
        _tamper(p.home / "stratus.db", "UPDATE audit_events SET actor='user:mallory' WHERE seq=2")
        p.start()
        with p.client() as c:
            verdict = c.audit.verify()
            assert not verdict.ok
            assert verdict.first_bad_seq == 2
            assert verdict.checked == 1
            assert verdict.problem == "entry 2 was altered"
            assert c.audit.list(order="asc")[1].actor == "user:mallory"
        code, out, err = _cli(run_cli, p, "audit", "verify")
        assert code == 1
        assert "tampered" in err and "entry 2" in err
        assert "intact" not in out
        code, out, _ = _cli(run_cli, p, "audit", "verify", "-o", "json")
        assert code == 1
        assert json.loads(out)["first_bad_seq"] == 2


def test_a_removed_entry_is_reported(tmp_path: Path, run_cli: Callable[..., Any]) -> None:
    with LocalPlatform(tmp_path / "home") as p:
        with p.client() as c:
            _make_changes(c)
        p.stop()
        db = p.home / "stratus.db"
        before = _digest(db)
        _tamper(db, "DELETE FROM audit_events WHERE seq=3")
        assert _digest(db) != before
        p.start()
        with p.client() as c:
            verdict = c.audit.verify()
            assert not verdict.ok
            assert verdict.first_bad_seq == 3
            assert verdict.problem == "entry 3 was removed"
            # the log keeps working: new changes are appended after the gap
            c.projects.create("two")
            assert c.audit.verify().first_bad_seq == 3
        code, _, err = _cli(run_cli, p, "audit", "verify")
        assert code == 1
        assert "removed" in err and "entry 3" in err


# --- tampering by someone who can write to the database and knows the unkeyed hash ------------


def _rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        found = conn.execute(text("SELECT * FROM audit_events ORDER BY seq")).mappings()
        return [dict(r) for r in found]


def _rechain_unkeyed(engine: Engine, start: int) -> None:
    """Recompute every hash and link from entry `start` on with the unkeyed `entry_hash` (as
    `iam/audit.py` had it), and rewrite `audit_head` to match: a forger's best effort."""
    rows = _rows(engine)
    prev = GENESIS
    with engine.begin() as conn:
        for r in rows:
            if r["seq"] >= start:
                fields = {
                    k: r[k] for k in ("actor", "action", "resource", "project", "outcome", "source")
                }
                fields |= {
                    "status_code": r["status_code"],
                    "request_id": r["request_id"],
                    "details": json.loads(r["details"]),
                }
                time = datetime.fromisoformat(str(r["time"]))
                r["prev_hash"], r["hash"] = prev, entry_hash(r["seq"], time, fields, prev)
                conn.execute(
                    text("UPDATE audit_events SET prev_hash = :p, hash = :h WHERE seq = :s"),
                    {"p": r["prev_hash"], "h": r["hash"], "s": r["seq"]},
                )
            prev = r["hash"]
        conn.execute(
            text("UPDATE audit_head SET last_seq = :s, last_hash = :h, count = :s"),
            {"s": rows[-1]["seq"], "h": prev},
        )


def _edit(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 2"))
    _rechain_unkeyed(engine, 2)


def _delete(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 3"))
        conn.execute(text("UPDATE audit_events SET seq = seq - 1 WHERE seq > 3"))
    _rechain_unkeyed(engine, 3)


def _rechain(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET outcome = 'failure' WHERE seq = 4"))
    _rechain_unkeyed(engine, 1)


def _truncate(engine: Engine) -> None:
    third = _rows(engine)[2]["hash"]
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq > 3"))
        conn.execute(
            text("UPDATE audit_head SET last_seq = 3, last_hash = :h, count = 3"), {"h": third}
        )


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "problem"),
    [
        pytest.param(_edit, 2, "entry 2 was altered", id="edited"),
        pytest.param(_delete, 3, "entry 3 was altered", id="deleted"),
        pytest.param(_rechain, 1, "entry 1 was altered", id="re-chained"),
        pytest.param(
            _truncate,
            4,
            "entries 4 to 5 were removed from the end "
            "(the checkpoint in the object store records entry 5)",
            id="truncated",
        ),
    ],
)
def test_tampering_with_the_unkeyed_hash_is_reported(
    tmp_path: Path,
    run_cli: Callable[..., Any],
    tamper: Callable[[Engine], None],
    bad_seq: int,
    problem: str,
) -> None:
    with LocalPlatform(tmp_path / "home") as p:
        with p.client() as c:
            _make_changes(c)
            intact = c.audit.verify()
            assert intact.ok and intact.checked == 5 and intact.checkpoint_seq == 5
        p.stop()  # tampered at rest, and the checkpoint outlives the restart
        engine = create_engine(f"sqlite:///{p.home / 'stratus.db'}")
        try:
            tamper(engine)
        finally:
            engine.dispose()
        p.start()
        with p.client() as c:
            verdict = c.audit.verify()
        assert (verdict.ok, verdict.first_bad_seq, verdict.problem) == (False, bad_seq, problem)
        code, out, err = _cli(run_cli, p, "audit", "verify")
        assert code == 1 and "intact" not in out
        assert "tampered" in err and problem.split(" (")[0] in " ".join(err.split())
        code, out, _ = _cli(run_cli, p, "audit", "verify", "-o", "json")
        assert code == 1 and json.loads(out)["first_bad_seq"] == bad_seq
