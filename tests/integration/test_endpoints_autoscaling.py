"""Autoscaling as a user drives it, through the API, the SDK and the CLI of a real control
plane: the events the controller records (written here through the service, on the platform's
own database, as the controller writes them), listed newest first, cut at a limit, hidden
from other projects and gone with their endpoint; and `stratus deploy` with the autoscaling
flags. No endpoint here runs a replica (none wants one), and the controller's own scaling is
not tested here."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from stratus.api.platform import Platform
from stratus.client import Client
from stratus.core.errors import InvalidInput, NotFound
from stratus.core.settings import load_settings
from stratus.endpoints import schemas as ep
from stratus.endpoints.tables import EndpointEventRow
from stratus.testing import LocalPlatform

EVENTS = "with-events"  # an endpoint with six events
QUIET = "no-events"  # an endpoint with none


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def services(platform: LocalPlatform) -> Iterator[Platform]:
    """The running platform's services, built in this process on its database (nothing of
    them started): what its controller calls to record an event."""
    settings = load_settings({"home": str(platform.home), "db": {"url": platform.db}})
    built = Platform.build(settings, Platform.master_key(settings))
    try:
        yield built
    finally:
        built.db.dispose()


@pytest.fixture(scope="module")
def project(platform: LocalPlatform, tiny_model: Path) -> Iterator[str]:
    """A project with m:1, and two endpoints of it without replicas: one with six events."""
    name = uniq("scale")
    with platform.client() as admin:
        admin.projects.create(name)
        admin.models.push(tiny_model, "m", project=name, flavor="sklearn")
        for endpoint in (EVENTS, QUIET):
            admin.endpoints.deploy(endpoint, "m:1", replicas=0, project=name)
        try:
            yield name
        finally:
            for endpoint in admin.endpoints.list(name):
                admin.endpoints.delete(endpoint.metadata.name, name)


Step = tuple[int, int, str]  # from, to, reason


@pytest.fixture(scope="module")
def recorded(admin_client: Client, services: Platform, project: str) -> list[Step]:
    """Six scaling steps of `with-events`, oldest first."""
    uid = admin_client.endpoints.get(EVENTS, project).metadata.uid
    pairs = [(0, 1), (1, 3), (3, 6), (6, 4), (4, 2), (2, 0)]
    steps = [(a, b, f"step {n}: {a} -> {b} replicas") for n, (a, b) in enumerate(pairs)]
    for before, after, reason in steps:
        services.endpoints.record_event(uid, "main", "scaled", before, after, reason)
    return steps


def reasons(steps: list[Step]) -> list[str]:
    return [reason for _, _, reason in steps]


@pytest.fixture(scope="module")
def admin_client(platform: LocalPlatform) -> Iterator[Client]:
    with platform.client() as client:
        yield client


def stored(services: Platform, endpoint_uid: str) -> int:
    with services.db.reading() as session:
        count = session.scalar(
            select(func.count()).where(EndpointEventRow.endpoint_uid == endpoint_uid)
        )
    return int(count or 0)


# --- the events, through the API and the SDK -------------------------------------------------


def test_sdk_lists_the_events_newest_first_cut_at_the_limit(
    admin: Client, platform: LocalPlatform, project: str, recorded: list[Step]
) -> None:
    events = admin.endpoints.events(EVENTS, project)
    assert [(e.from_replicas, e.to_replicas, e.reason) for e in events] == recorded[::-1]
    assert {(e.variant, e.kind) for e in events} == {("main", "scaled")}
    assert all(e.time.tzinfo is not None for e in events)
    assert [e.time for e in events] == sorted((e.time for e in events), reverse=True)
    limited = admin.endpoints.events(EVENTS, project, limit=2)
    assert [e.reason for e in limited] == reasons(recorded)[:-3:-1]
    assert admin.endpoints.events(QUIET, project) == []
    path = f"{platform.url}/api/v1/projects/{project}/endpoints/{EVENTS}/events"
    headers = {"authorization": f"Bearer {platform.api_key}"}
    for limit in ("0", "1001", "many"):
        refused = httpx.get(path, params={"limit": limit}, headers=headers, timeout=30)
        assert refused.status_code == 422, refused.text
        assert "limit" in refused.json()["detail"], refused.text
    with pytest.raises(InvalidInput, match="limit"):
        admin.endpoints.events(EVENTS, project, limit=0)
    with pytest.raises(NotFound, match="'nope'"):
        admin.endpoints.events("nope", project)


def test_only_those_who_may_read_the_endpoint_read_its_events(
    admin: Client, platform: LocalPlatform, project: str, recorded: list[Step]
) -> None:
    other = uniq("other")
    admin.projects.create(other)
    keys = {}
    for role, where in (("owner", other), ("viewer", project)):
        user = uniq(role)
        admin.users.create(user, "a long enough password")
        admin.projects.set_member(where, role, user=user)
        keys[where] = admin.keys.create(user=user).secret
    with platform.client(keys[project]) as viewer:  # reads endpoints: reads their events
        read = viewer.endpoints.events(EVENTS, project)
        assert [e.reason for e in read] == reasons(recorded)[::-1]
    with platform.client(keys[other]) as outsider:  # another project's owner: as for the endpoint
        with pytest.raises(NotFound) as events:
            outsider.endpoints.events(EVENTS, project)
        with pytest.raises(NotFound) as endpoint:
            outsider.endpoints.get(EVENTS, project)
        assert events.value.detail == endpoint.value.detail


def test_an_endpoint_deleted_takes_its_events(
    admin: Client, services: Platform, project: str
) -> None:
    name = uniq("gone")
    uid = admin.endpoints.deploy(name, "m:1", replicas=0, project=project).metadata.uid
    for to in (1, 0):
        services.endpoints.record_event(uid, "main", "scaled", 1 - to, to, "traffic came, went")
    assert len(admin.endpoints.events(name, project)) == 2
    admin.endpoints.delete(name, project)
    assert stored(services, uid) == 0
    services.endpoints.record_event(uid, "main", "scaled", 0, 1, "too late")  # no error
    assert stored(services, uid) == 0
    with pytest.raises(NotFound):
        admin.endpoints.events(name, project)


# --- the CLI ---------------------------------------------------------------------------------


def rows(lines: list[str]) -> list[list[str]]:
    """Table rows as [variant, from, to, reason] (the time, two words, left out)."""
    return [line.split(maxsplit=5)[2:] for line in lines]


def test_cli_events(cli: Any, project: str, recorded: list[Step]) -> None:
    table = cli("endpoints", "events", EVENTS, "-p", project)
    assert table.code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TIME", "VARIANT", "FROM", "TO", "REASON"]
    assert rows(lines[1:]) == [["main", str(a), str(b), why] for a, b, why in recorded[::-1]]
    cut = cli("endpoints", "events", EVENTS, "--limit", "2", "-p", project, "-o", "json")
    assert cut.code == 0, cut.stderr
    assert [e["reason"] for e in json.loads(cut.stdout)] == reasons(recorded)[:-3:-1]
    assert set(json.loads(cut.stdout)[0]) == {
        "time", "variant", "kind", "from_replicas", "to_replicas", "reason",
    }  # fmt: skip
    none = cli("endpoints", "events", QUIET, "-p", project)
    assert (none.code, none.stdout) == (0, "")
    assert f"endpoint {QUIET} has no events" in none.stderr
    assert cli("endpoints", "events", EVENTS, "--limit", "0", "-p", project).code == 2
    missing = cli("endpoints", "events", "nope", "-p", project)
    assert missing.code == 1 and missing.stderr.startswith("error: ") and "'nope'" in missing.stderr


def test_cli_show_ends_with_the_latest_five_events(
    cli: Any, project: str, recorded: list[Step]
) -> None:
    shown = cli("endpoints", "show", EVENTS, "-p", project)
    assert shown.code == 0, shown.stderr
    after = shown.stdout.split("latest events", 1)[1].splitlines()
    assert after[0].strip() == f"(all of them: stratus endpoints events {EVENTS})"
    assert after[1].split() == ["TIME", "VARIANT", "FROM", "TO", "REASON"]
    assert rows(after[2:]) == [["main", str(a), str(b), why] for a, b, why in recorded[:0:-1]]
    quiet = cli("endpoints", "show", QUIET, "-p", project)
    assert quiet.code == 0 and "latest events" not in quiet.stdout
    as_json = cli("endpoints", "show", EVENTS, "-p", project, "-o", "json")
    assert (
        "latest events" not in as_json.stdout and json.loads(as_json.stdout)["kind"] == "Endpoint"
    )


def test_cli_deploys_an_autoscaled_variant_and_back_to_fixed(
    cli: Any, admin: Client, project: str
) -> None:
    name = uniq("auto")
    deployed = cli("deploy", name, "--model", "m:1", "--min-replicas", "0", "--max-replicas", "4",
                   "--target-concurrency", "2", "--no-wait", "-p", project)  # fmt: skip
    assert deployed.code == 0, deployed.stderr
    (main,) = admin.endpoints.get(name, project).spec.variants
    assert main.autoscaling == ep.Autoscaling(min_replicas=0, max_replicas=4, target_concurrency=2)
    shown = cli("endpoints", "show", name, "-p", project)
    row = next(line for line in shown.stdout.splitlines() if line.startswith("main "))
    assert "0-4 replicas, 2 in flight each" in row

    # a flag alone changes only that setting of an autoscaled variant
    more = cli("deploy", name, "--model", "m:1", "--max-replicas", "8", "--scale-to-zero-after",
               "60", "--no-wait", "-p", project)  # fmt: skip
    assert more.code == 0, more.stderr
    (main,) = admin.endpoints.get(name, project).spec.variants
    assert main.autoscaling == ep.Autoscaling(
        min_replicas=0, max_replicas=8, target_concurrency=2, scale_to_zero_after_seconds=60
    )

    # a new version keeps the autoscaling; --replicas turns it off
    rolled = cli("deploy", name, "--model", "m:1", "--no-wait", "-p", project)
    assert rolled.code == 0, rolled.stderr
    assert admin.endpoints.get(name, project).spec.variants[0].autoscaling is not None
    fixed = cli("deploy", name, "--model", "m:1", "--replicas", "0", "--no-wait", "-p", project)
    assert fixed.code == 0, fixed.stderr
    (main,) = admin.endpoints.get(name, project).spec.variants
    assert (main.autoscaling, main.replicas) == (None, 0)
    history = admin.endpoints.history(name, project=project)
    assert [r.spec.variants[0].autoscaling is None for r in history] == [True, False, False]


def test_sdk_deploys_an_autoscaled_variant(admin: Client, project: str) -> None:
    name = uniq("sdk-auto")
    settings = {"min_replicas": 0, "max_replicas": 2}
    created = admin.endpoints.deploy(name, "m:1", autoscaling=settings, project=project)
    assert created.spec.variants[0].autoscaling == ep.Autoscaling(**settings)
    fixed = admin.endpoints.deploy(name, "m:1", replicas=0, project=project)
    assert (fixed.spec.variants[0].autoscaling, fixed.spec.variants[0].replicas) == (None, 0)
    with pytest.raises(InvalidInput, match="not both"):
        admin.endpoints.deploy(name, "m:1", replicas=1, autoscaling=settings, project=project)


def test_the_canary_of_an_autoscaled_variant_autoscales_too(admin: Client, project: str) -> None:
    name = uniq("canary-auto")
    settings = {"min_replicas": 0, "max_replicas": 2}
    admin.endpoints.deploy(name, "m:1", autoscaling=settings, project=project)
    canary = admin.endpoints.canary(name, "m:1", 20, project=project).spec.variants[-1]
    assert canary.name == "canary" and canary.autoscaling == ep.Autoscaling(**settings)
    fixed = admin.endpoints.canary(name, "m:1", 20, replicas=1, project=project)
    assert (fixed.spec.variants[-1].autoscaling, fixed.spec.variants[-1].replicas) == (None, 1)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--replicas", "3", "--max-replicas", "4"], ["--replicas", "--max-replicas"]),
        (
            ["--replicas", "1", "--min-replicas", "0", "--target-concurrency", "2"],
            ["--replicas", "--min-replicas", "--target-concurrency"],
        ),
        (["--min-replicas", "0"], ["--max-replicas"]),
        (["--min-replicas", "5", "--max-replicas", "4"], ["min_replicas (5)", "max_replicas (4)"]),
        (["--max-replicas", "4", "--target-concurrency", "0"], ["--target-concurrency"]),
    ],
)
def test_cli_refuses_autoscaling_flags_that_do_not_go_together(
    cli: Any, admin: Client, project: str, args: list[str], words: list[str]
) -> None:
    name = uniq("refused")
    result = cli("deploy", name, "--model", "m:1", *args, "--no-wait", "-p", project)
    assert result.code == 2, (result.stdout, result.stderr)
    message = " ".join(result.stderr.replace("│", " ").split())  # unwrapped from its box
    for word in words:
        assert word in message, message
    with pytest.raises(NotFound):
        admin.endpoints.get(name, project)  # nothing was deployed


def test_cli_autoscaling_flags_need_the_model(cli: Any, project: str) -> None:
    result = cli("deploy", EVENTS, "--canary", "m:1", "--max-replicas", "4", "-p", project)
    assert result.code == 2, (result.stdout, result.stderr)
    assert "--model" in " ".join(result.stderr.replace("│", " ").split())
