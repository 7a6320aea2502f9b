"""API key rotation end to end, on the shared platform: the new key is like the old one (owner,
name, project, lifetime), the old key works through the overlap and is refused after it, and
only who may revoke a key may rotate it. By the SDK, raw HTTP and the CLI."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from stratus.client import Client
from stratus.core.clock import utcnow
from stratus.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from stratus.testing import LocalPlatform, wait_for


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def http(platform: LocalPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.url, timeout=30) as client:
        yield client


def works(http: httpx.Client, key: str) -> bool:
    response = http.get("/api/v1/auth/whoami", headers={"Authorization": f"Bearer {key}"})
    return response.status_code == 200


def refused_as_expired(http: httpx.Client, key: str) -> bool:
    response = http.get("/api/v1/auth/whoami", headers={"Authorization": f"Bearer {key}"})
    return response.status_code == 401 and "expired" in response.json()["detail"]


@pytest.fixture
def alice(admin: Client) -> Iterator[Client]:
    """A user of her own, with a key."""
    name = uniq("alice")
    admin.users.create(name, "correct-horse-battery")
    key = admin.keys.create(user=name)
    with Client(url=admin.url, api_key=key.secret) as client:
        yield client


def test_the_old_key_works_through_the_overlap_and_is_refused_after_it(
    http: httpx.Client, alice: Client
) -> None:
    old = alice.keys.create("deploy")
    rotated = alice.keys.rotate(old.key_id, overlap_seconds=2)
    assert rotated.key_id != old.key_id and rotated.secret != old.secret
    assert rotated.replaced.key_id == old.key_id and rotated.replaced.state == "active"
    assert rotated.replaced.expires_at is not None
    assert rotated.replaced.expires_at <= utcnow() + timedelta(seconds=3)
    assert works(http, old.secret) and works(http, rotated.secret)
    wait_for("the old key to expire", lambda: refused_as_expired(http, old.secret), timeout=30)
    assert works(http, rotated.secret)
    states = {k.key_id: k.state for k in alice.keys.list()}
    assert states[old.key_id] == "expired" and states[rotated.key_id] == "active"


def test_no_overlap_ends_the_old_key_at_once(http: httpx.Client, alice: Client) -> None:
    old = alice.keys.create("ci")
    assert works(http, old.secret)  # (now in the credential cache)
    rotated = alice.keys.rotate(old.key_id, overlap_seconds=0)
    assert rotated.replaced.state == "expired"
    assert refused_as_expired(http, old.secret)
    assert works(http, rotated.secret)


def test_the_new_key_is_like_the_old_one(admin: Client, alice: Client) -> None:
    project = uniq("p")
    admin.projects.create(project)
    me = alice.whoami().name
    admin.projects.set_member(project, "viewer", user=me)
    old = alice.keys.create("nightly", project=project, expires_in_days=10)
    rotated = alice.keys.rotate(old.key_id)  # a day of overlap by default
    assert (rotated.name, rotated.owner, rotated.project) == ("nightly", f"user:{me}", project)
    assert rotated.expires_at is not None and old.expires_at is not None
    lifetime = rotated.expires_at - rotated.created_at
    assert abs(lifetime - timedelta(days=10)) < timedelta(seconds=5)
    assert rotated.replaced.expires_at is not None
    overlap = rotated.replaced.expires_at - rotated.created_at
    assert abs(overlap - timedelta(days=1)) < timedelta(seconds=5)
    forever = alice.keys.rotate(alice.keys.create("forever").key_id, overlap_seconds=60)
    assert forever.expires_at is None and forever.project is None


def test_only_who_may_revoke_a_key_may_rotate_it(admin: Client, alice: Client) -> None:
    mine = alice.keys.create("mine")
    bob_name = uniq("bob")
    admin.users.create(bob_name, "correct-horse-battery")
    with Client(url=admin.url, api_key=admin.keys.create(user=bob_name).secret) as bob:
        with pytest.raises(NotFound):
            bob.keys.rotate(mine.key_id)
    by_admin = admin.keys.rotate(mine.key_id, overlap_seconds=60)  # admins may
    assert by_admin.owner == mine.owner
    gone = alice.keys.create("gone")
    alice.keys.rotate(gone.key_id, overlap_seconds=0)
    with pytest.raises(Conflict, match="expired"):  # a rotated key is not rotated twice
        alice.keys.rotate(gone.key_id)
    with pytest.raises(InvalidInput):
        alice.keys.rotate(mine.key_id, overlap_seconds=-1)


def test_a_project_restricted_key_cannot_rotate_an_unrestricted_one(
    admin: Client, alice: Client
) -> None:
    project = uniq("p")
    admin.projects.create(project)
    admin.projects.set_member(project, "editor", user=alice.whoami().name)
    restricted = alice.keys.create("scoped", project=project)
    free = alice.keys.create("free")
    with Client(url=admin.url, api_key=restricted.secret) as scoped:
        with pytest.raises(PermissionDenied, match="restricted"):
            scoped.keys.rotate(free.key_id)
        assert scoped.keys.rotate(restricted.key_id, overlap_seconds=60).project == project


def test_service_account_keys_rotate(admin: Client, http: httpx.Client) -> None:
    project = uniq("p")
    admin.projects.create(project)
    admin.service_accounts.create("ci", project=project, role="viewer")
    old = admin.service_accounts.create_key("ci", project=project, key_name="runner")
    rotated = admin.service_accounts.rotate_key("ci", old.key_id, project, overlap_seconds=0)
    assert rotated.owner == f"serviceaccount:{project}/ci" and rotated.name == "runner"
    assert refused_as_expired(http, old.secret) and works(http, rotated.secret)
    with pytest.raises(NotFound):
        admin.service_accounts.rotate_key("ci", "0000000000000000", project)


def _json(result: Any) -> Any:
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def test_cli_keys_rotate(cli: Any, admin: Client, http: httpx.Client) -> None:
    created = _json(cli("keys", "create", "--name", "cli", "-o", "json"))
    shown = cli("keys", "rotate", created["key_id"], "--overlap", "1h")
    assert shown.code == 0, shown.stderr
    secret = re.search(r"stk_[0-9a-f]{16}_\S+", shown.stdout)
    assert secret is not None and "shown once" in shown.stderr
    assert f"key {created['key_id']} stops working at" in shown.stderr
    assert works(http, secret.group(0)) and works(http, created["secret"])

    project = uniq("p")
    admin.projects.create(project)
    admin.service_accounts.create("ci", project=project, role="viewer")
    sa_key = _json(cli("keys", "create", "-a", "ci", "-p", project, "-o", "json"))
    rotated = _json(
        cli(
            "keys",
            "rotate",
            sa_key["key_id"],
            "-a",
            "ci",
            "-p",
            project,
            "--overlap",
            "0",
            "-o",
            "json",
        )
    )
    assert rotated["replaced"]["state"] == "expired" and rotated["secret"].startswith("stk_")
    assert refused_as_expired(http, sa_key["secret"])
    bad = cli("keys", "rotate", created["key_id"], "--overlap", "soon")
    assert bad.code == 2 and "--overlap" in bad.stderr


def test_a_rotation_is_audited(admin: Client, alice: Client) -> None:
    key = alice.keys.create("audited")
    alice.keys.rotate(key.key_id, overlap_seconds=60)
    events = admin.audit.list(action="keys.rotate", actor=f"user:{alice.whoami().name}")
    assert [e.resource for e in events] == [f"/api/v1/keys/{key.key_id}/rotate"]
    assert events[0].outcome == "success"
