"""Endpoint events as the controller records them and the API reads them, through the service
on a real migrated database (SQLite, and PostgreSQL where the `postgres` marker runs): newest
first, at most `limit`, the newest 1000 kept, nothing for a deleted endpoint, none left after
the endpoint goes, and no reading them from another project."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from stratus.api.platform import Platform
from stratus.core.errors import InvalidInput, NotFound
from stratus.endpoints import schemas as es
from stratus.endpoints.service import MAX_EVENTS, EndpointService
from stratus.endpoints.tables import EndpointEventRow
from stratus.iam.tables import ProjectRow
from stratus.registry import schemas as rs


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (SQLite in the home), or a fresh PostgreSQL database of this test's own."""
    if request.param == "sqlite":
        yield None
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(request.getfixturevalue("postgres_url"))
    name = f"events_{uuid.uuid4().hex[:12]}"
    server = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def platform(
    embedded_platform: Callable[..., Platform], database_url: str | None, tiny_model: Path
) -> Platform:
    """A platform (no controller running) whose `default` project serves m:1 at `api`."""
    platform = embedded_platform(db={"url": database_url})
    registry, data = platform.registry, tiny_model.read_bytes()
    registry.create_model("default", rs.ModelCreate(name="m"))
    entry = rs.FileEntry(
        path="model.skops", sha256=hashlib.sha256(data).hexdigest(), size=len(data)
    )
    version = registry.create_version(
        "default", "m", rs.VersionCreate(files=[entry]), actor="test", can_trust=True
    )
    upload = registry.begin_upload("default", "m", version.version, "model.skops")
    upload.write(data)
    registry.finish_upload(upload)
    registry.commit_version("default", "m", version.version)
    create(platform.endpoints, "api")
    return platform


def create(service: EndpointService, name: str) -> str:
    variant = es.VariantSpec(
        model="m:1", autoscaling=es.Autoscaling(min_replicas=0, max_replicas=4)
    )
    created = service.create(
        "default", es.EndpointCreate(name=name, variants=[variant]), actor="me"
    )
    return created.metadata.uid


def uid_of(platform: Platform, name: str) -> str:
    return platform.endpoints.get("default", name).metadata.uid


def stored(platform: Platform, endpoint_uid: str) -> int:
    with platform.db.reading() as session:
        count = session.scalar(
            select(func.count()).where(EndpointEventRow.endpoint_uid == endpoint_uid)
        )
    return int(count or 0)


def test_events_are_listed_newest_first_and_cut_at_the_limit(platform: Platform) -> None:
    service, uid = platform.endpoints, uid_of(platform, "api")
    before = datetime.now(UTC)
    service.record_event(uid, "main", "scaled", 0, 1, "a request while at zero")
    service.record_event(uid, "main", "scaled", 1, 4, "12 in flight, 4 per replica")
    service.record_event(uid, "main", "scaled", 4, 2, "x" * 1500)

    events = service.events("default", "api")
    assert [(e.variant, e.kind, e.from_replicas, e.to_replicas) for e in events] == [
        ("main", "scaled", 4, 2),
        ("main", "scaled", 1, 4),
        ("main", "scaled", 0, 1),
    ]
    assert events[0].reason == "x" * 1000  # cut to what the column keeps
    assert events[2].reason == "a request while at zero"
    for event in events:
        assert event.time.tzinfo is not None and event.time.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= event.time <= datetime.now(UTC)
    assert [e.to_replicas for e in service.events("default", "api", limit=2)] == [2, 4]
    assert [e.to_replicas for e in service.events("default", "api", limit=1)] == [2]


def test_the_newest_1000_of_each_endpoint_are_kept(platform: Platform) -> None:
    service = platform.endpoints
    uid, other = uid_of(platform, "api"), create(service, "other")
    service.record_event(other, "main", "scaled", 1, 2, "the other endpoint's")
    service.record_event(uid, "main", "scaled", 0, 1, "step 0")
    # steps 1 to 1002 written at once (a thousand transactions would take seconds) ...
    with platform.db.transaction() as session:
        session.add_all(
            EndpointEventRow(
                endpoint_uid=uid, variant="main", kind="scaled", from_replicas=n,
                to_replicas=n + 1, reason=f"step {n}",
            )
            for n in range(1, MAX_EVENTS + 3)
        )  # fmt: skip
    assert stored(platform, uid) == MAX_EVENTS + 3
    # ... and the next one recorded leaves the newest 1000: steps 4 to 1003
    service.record_event(uid, "main", "scaled", 0, 1, f"step {MAX_EVENTS + 3}")
    assert stored(platform, uid) == MAX_EVENTS
    events = service.events("default", "api", limit=MAX_EVENTS)
    assert [e.reason for e in events] == [f"step {n}" for n in range(MAX_EVENTS + 3, 3, -1)]
    service.record_event(uid, "main", "scaled", 1, 0, "one more")
    assert stored(platform, uid) == MAX_EVENTS
    assert service.events("default", "api", limit=MAX_EVENTS)[-1].reason == "step 5"
    # another endpoint's events count apart
    assert [e.reason for e in service.events("default", "other")] == ["the other endpoint's"]


def test_an_endpoint_deleted_takes_its_events_and_gets_no_more(platform: Platform) -> None:
    service, uid = platform.endpoints, uid_of(platform, "api")
    service.record_event(uid, "main", "scaled", 0, 1, "first")
    assert stored(platform, uid) == 1
    service.delete("default", "api")
    assert stored(platform, uid) == 0
    service.record_event(uid, "main", "scaled", 1, 0, "after the delete")  # no error
    service.record_event("no-such-endpoint", "main", "scaled", 1, 0, "never was")
    assert stored(platform, uid) == 0 and stored(platform, "no-such-endpoint") == 0
    with pytest.raises(NotFound, match="'api'"):
        service.events("default", "api")


def test_events_are_read_in_the_endpoint_s_project_only(platform: Platform) -> None:
    with platform.db.transaction() as session:
        session.add(ProjectRow(name="elsewhere"))
    platform.endpoints.record_event(uid_of(platform, "api"), "main", "scaled", 0, 1, "here")
    with pytest.raises(NotFound) as from_elsewhere:
        platform.endpoints.events("elsewhere", "api")
    with pytest.raises(NotFound) as get_elsewhere:
        platform.endpoints.get("elsewhere", "api")
    assert from_elsewhere.value.detail == get_elsewhere.value.detail  # as for the endpoint
    with pytest.raises(NotFound):
        platform.endpoints.events("no-such-project", "api")


def test_bad_limits_and_kinds_are_refused(platform: Platform) -> None:
    for limit in (0, -1, MAX_EVENTS + 1):
        with pytest.raises(InvalidInput, match=f"limit must be 1 to {MAX_EVENTS}"):
            platform.endpoints.events("default", "api", limit=limit)
    with pytest.raises(ValueError, match="unknown endpoint event kind 'exploded'"):
        platform.endpoints.record_event(uid_of(platform, "api"), "main", "exploded", 1, 0, "")
