"""Identity and access end to end: projects, users, logins, keys, service accounts, roles.

Everything goes through the real control plane (the shared `platform`), by the SDK, raw HTTP
and the CLI, as a user would.
"""

from __future__ import annotations

import json
import re
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.client import Client
from stratus.core.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    StaleResource,
    Unauthenticated,
)
from stratus.core.resources import encode_token
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


@dataclass
class Person:
    name: str
    key: str
    key_id: str


def make_user(
    admin: Client,
    project: str | None = None,
    role: str | None = None,
    *,
    password: str | None = PASSWORD,
    prefix: str = "u",
) -> Person:
    """A new user (with an unrestricted API key), optionally with a role in a project."""
    name = uniq(prefix)
    admin.users.create(name, password)
    if project is not None:
        admin.projects.set_member(project, role or "viewer", user=name)
    key = admin.keys.create(user=name)
    return Person(name, key.secret, key.key_id)


@pytest.fixture
def project(admin: Client) -> str:
    name = uniq("p")
    admin.projects.create(name, "a project for one test")
    return name


# --- projects --------------------------------------------------------------------------------


def test_project_create_get_update_delete(admin: Client) -> None:
    name = uniq("p")
    created = admin.projects.create(name, "fraud models", {"team": "risk"})
    assert created.kind == "Project"
    assert created.metadata.name == name
    assert created.metadata.project == name
    assert created.metadata.labels == {"team": "risk"}
    assert created.metadata.resource_version == 1
    assert created.spec.description == "fraud models"
    assert created.status.your_role == "owner"

    got = admin.projects.get(name)
    assert got.metadata.uid == created.metadata.uid
    assert name in {p.metadata.name for p in admin.projects.list()}

    updated = admin.projects.update(
        name, description="new words", labels={"team": "ml"}, resource_version=1
    )
    assert updated.spec.description == "new words"
    assert updated.metadata.labels == {"team": "ml"}
    assert updated.metadata.resource_version == 2
    assert updated.metadata.updated_at >= created.metadata.updated_at
    assert admin.projects.get(name).spec.description == "new words"

    admin.projects.delete(name)
    with pytest.raises(NotFound, match=f"project '{name}' not found"):
        admin.projects.get(name)
    with pytest.raises(NotFound):
        admin.projects.delete(name)


def test_duplicate_project_is_already_exists(admin: Client, project: str) -> None:
    with pytest.raises(AlreadyExists, match="already exists"):
        admin.projects.create(project)


def test_creator_becomes_owner(admin: Client) -> None:
    alice = make_user(admin)
    name = uniq("p")
    with Client(url=admin.url, api_key=alice.key) as c:
        created = c.projects.create(name)
        assert created.status.your_role == "owner"
        members = {m.subject: m.role for m in c.projects.members(name)}
        assert members == {f"user:{alice.name}": "owner"}
        assert c.whoami().roles == {name: "owner"}
        assert [p.metadata.name for p in c.projects.list()] == [name]


def test_label_selector_on_list(admin: Client) -> None:
    run = uuid.uuid4().hex[:10]
    names = {}
    for tier in ("prod", "dev", "staging"):
        names[tier] = uniq(f"sel-{tier}")
        admin.projects.create(names[tier], labels={"run": run, "tier": tier})
    gpu = uniq("sel-gpu")
    admin.projects.create(gpu, labels={"run": run, "gpu": "yes"})

    def listed(selector: str) -> set[str]:
        return {p.metadata.name for p in admin.projects.list(f"run={run},{selector}")}

    assert listed("tier=prod") == {names["prod"]}
    assert listed("tier==dev") == {names["dev"]}
    assert listed("tier!=prod") == {names["dev"], names["staging"], gpu}
    assert listed("tier in (prod,dev)") == {names["prod"], names["dev"]}
    assert listed("tier notin (prod,dev)") == {names["staging"], gpu}
    assert listed("gpu") == {gpu}
    assert listed("!gpu") == set(names.values())
    assert listed("tier=nothing") == set()


@pytest.mark.parametrize("selector", ["bad key=x", "a=b,,c=d", "tier in ()", "!"])
def test_bad_selector_is_a_400(http: httpx.Client, platform: LocalPlatform, selector: str) -> None:
    response = http.get(
        "/api/v1/projects", params={"selector": selector}, headers=bearer(platform.api_key)
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid-input"
    assert "selector" in body["detail"]


def test_pagination_follows_next_page_token(
    http: httpx.Client, admin: Client, platform: LocalPlatform
) -> None:
    run = uuid.uuid4().hex[:10]
    made = sorted(uniq("page") for _ in range(5))
    for name in made:
        admin.projects.create(name, labels={"run": run})
    seen: list[str] = []
    pages = 0
    params: dict[str, Any] = {"limit": 2, "selector": f"run={run}"}
    while True:
        response = http.get("/api/v1/projects", params=params, headers=bearer(platform.api_key))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        seen += [p["metadata"]["name"] for p in page["items"]]
        pages += 1
        if not page["next_page_token"]:
            break
        params["page_token"] = page["next_page_token"]
    assert seen == made
    assert pages == 3


def test_pagination_over_everything_is_sorted_and_complete(
    http: httpx.Client, admin: Client, platform: LocalPlatform
) -> None:
    admin.projects.create(uniq("page"))
    everything = [p.metadata.name for p in admin.projects.list()]
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = http.get("/api/v1/projects", params=params, headers=bearer(platform.api_key)).json()
        seen += [p["metadata"]["name"] for p in page["items"]]
        if not page["next_page_token"]:
            break
        params["page_token"] = page["next_page_token"]
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen))
    assert set(everything) <= set(seen)


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"page_token": "!!!"}, 400),
        ({"page_token": encode_token({"a": 1})}, 400),
        ({"page_token": encode_token(True)}, 400),
        ({"page_token": encode_token([1, 2])}, 400),
        ({"limit": 0}, 422),
        ({"limit": 1001}, 422),
        ({"limit": "ten"}, 422),
    ],
)
def test_bad_paging_parameters(
    http: httpx.Client, platform: LocalPlatform, params: dict[str, Any], status: int
) -> None:
    response = http.get("/api/v1/projects", params=params, headers=bearer(platform.api_key))
    assert response.status_code == status, response.text
    assert response.json()["code"] == "invalid-input"


def test_stale_update_is_a_409_naming_the_current_version(
    http: httpx.Client, admin: Client, platform: LocalPlatform, project: str
) -> None:
    admin.projects.update(project, description="first", resource_version=1)
    admin.projects.update(project, description="second")  # no version: last write wins
    with pytest.raises(StaleResource) as info:
        admin.projects.update(project, description="lost", resource_version=1)
    assert info.value.extra["current_resource_version"] == 3
    assert "resource_version 3, not 1" in info.value.detail

    response = http.patch(
        f"/api/v1/projects/{project}",
        json={"description": "lost", "resource_version": 2},
        headers=bearer(platform.api_key),
    )
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "stale-resource"
    assert body["current_resource_version"] == 3
    assert "3" in body["detail"]
    assert admin.projects.get(project).spec.description == "second"
    ok = admin.projects.update(project, description="fresh", resource_version=3)
    assert ok.metadata.resource_version == 4


@pytest.mark.parametrize(
    "name",
    ["Fraud", "fraud_models", "-fraud", "fraud-", "fraud models", "a" * 64, "", "fraud\n", "é"],
)
def test_invalid_project_names_are_refused_with_a_message(
    http: httpx.Client, platform: LocalPlatform, name: str
) -> None:
    response = http.post("/api/v1/projects", json={"name": name}, headers=bearer(platform.api_key))
    assert 400 <= response.status_code < 500
    body = response.json()
    assert body["code"] == "invalid-input"
    assert "name" in body["detail"]
    if name and len(name) <= 63:
        assert "lower-case letters, digits and '-'" in body["detail"]
    listed = http.get("/api/v1/projects", headers=bearer(platform.api_key)).json()
    assert name not in {p["metadata"]["name"] for p in listed["items"]}


def test_invalid_name_through_the_sdk_is_invalid_input(admin: Client) -> None:
    with pytest.raises(InvalidInput, match="lower-case letters"):
        admin.projects.create("Not_Valid")
    with pytest.raises(InvalidInput, match="label"):
        admin.projects.create(uniq("p"), labels={"bad key": "x"})


def test_unknown_fields_are_refused(http: httpx.Client, platform: LocalPlatform) -> None:
    response = http.post(
        "/api/v1/projects",
        json={"name": uniq("p"), "owner": "mallory"},
        headers=bearer(platform.api_key),
    )
    assert response.status_code == 422
    assert "owner" in response.json()["detail"]


# --- users and logins ------------------------------------------------------------------------


def test_admin_creates_users(admin: Client) -> None:
    name = uniq("u")
    user = admin.users.create(name, PASSWORD, email=f"{name}@example.com", labels={"team": "x"})
    assert user.kind == "User"
    assert user.metadata.name == name
    assert user.spec.email == f"{name}@example.com"
    assert not user.spec.is_admin and not user.spec.disabled
    assert user.status.has_password
    assert admin.users.get(name).metadata.uid == user.metadata.uid
    assert name in {u.metadata.name for u in admin.users.list()}
    keyless = admin.users.create(uniq("u"))
    assert not keyless.status.has_password
    with pytest.raises(AlreadyExists):
        admin.users.create(name, PASSWORD)


def test_only_admins_create_users(admin: Client, platform: LocalPlatform) -> None:
    alice = make_user(admin)
    with platform.client(alice.key) as c:
        with pytest.raises(PermissionDenied, match="only platform admins"):
            c.users.create(uniq("u"), PASSWORD)
        with pytest.raises(PermissionDenied):
            c.users.list()
        with pytest.raises(PermissionDenied):
            c.users.get("admin")
        assert c.users.get(alice.name).metadata.name == alice.name  # their own entry
        with pytest.raises(PermissionDenied):
            c.users.update(alice.name, is_admin=True)


def test_admin_key_restricted_to_a_project_is_not_admin(admin: Client, project: str) -> None:
    restricted = admin.keys.create(uniq("k"), project=project)
    with Client(url=admin.url, api_key=restricted.secret) as c:
        with pytest.raises(PermissionDenied):
            c.users.create(uniq("u"), PASSWORD)
        assert [p.metadata.name for p in c.projects.list()] == [project]
        with pytest.raises(NotFound):
            c.projects.get("default")
        with pytest.raises(PermissionDenied):
            c.projects.create(uniq("p"))


def test_weak_password_is_refused(admin: Client) -> None:
    with pytest.raises(InvalidInput, match="password"):
        admin.users.create(uniq("u"), "short")


def test_login_with_password_through_the_sdk(
    admin: Client, platform: LocalPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRATUS_API_KEY", raising=False)
    alice = make_user(admin)
    with Client(url=platform.url, home=tmp_path) as c:
        assert c.api_key is None
        with pytest.raises(Unauthenticated):
            c.whoami()
        token = c.login(alice.name, PASSWORD)
        assert token.user == alice.name
        assert token.token_type == "bearer"
        assert token.token.count(".") == 2
        me = c.whoami()
        assert me.subject == f"user:{alice.name}"
        assert me.key_id is None
    with Client(url=platform.url, api_key=token.token) as again:
        assert again.whoami().name == alice.name


def test_wrong_password_and_unknown_user_say_the_same(http: httpx.Client, admin: Client) -> None:
    alice = make_user(admin)
    answers = []
    for username, password in [
        (alice.name, "wrong-password"),
        (uniq("nobody"), "wrong-password"),
        (alice.name, PASSWORD.upper()),
    ]:
        response = http.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        answers.append((response.json()["detail"], response.json()["code"]))
    assert (
        answers[0]
        == answers[1]
        == answers[2]
        == (
            "invalid username or password",
            "unauthenticated",
        )
    )


def test_user_without_password_cannot_log_in(http: httpx.Client, admin: Client) -> None:
    name = uniq("u")
    admin.users.create(name)
    response = http.post("/api/v1/auth/login", json={"username": name, "password": "anything1"})
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid username or password"


def test_disabled_user_cannot_log_in_or_use_keys(
    http: httpx.Client, admin: Client, platform: LocalPlatform
) -> None:
    alice = make_user(admin)
    token = http.post(
        "/api/v1/auth/login", json={"username": alice.name, "password": PASSWORD}
    ).json()["token"]
    assert http.get("/api/v1/auth/whoami", headers=bearer(alice.key)).status_code == 200
    assert http.get("/api/v1/auth/whoami", headers=bearer(token)).status_code == 200

    admin.users.update(alice.name, disabled=True)
    login = http.post("/api/v1/auth/login", json={"username": alice.name, "password": PASSWORD})
    assert login.status_code == 401
    assert login.json()["detail"] == "invalid username or password"
    by_key = http.get("/api/v1/auth/whoami", headers=bearer(alice.key))
    assert by_key.status_code == 401
    assert "disabled" in by_key.json()["detail"]
    assert http.get("/api/v1/auth/whoami", headers=bearer(token)).status_code == 401

    admin.users.update(alice.name, disabled=False)
    assert http.get("/api/v1/auth/whoami", headers=bearer(alice.key)).status_code == 200


def test_deleted_user_keys_stop_working(http: httpx.Client, admin: Client) -> None:
    alice = make_user(admin)
    assert http.get("/api/v1/auth/whoami", headers=bearer(alice.key)).status_code == 200
    admin.users.delete(alice.name)
    assert http.get("/api/v1/auth/whoami", headers=bearer(alice.key)).status_code == 401
    with pytest.raises(NotFound):
        admin.users.get(alice.name)


# --- keys ------------------------------------------------------------------------------------


def test_key_secret_is_shown_once(http: httpx.Client, admin: Client) -> None:
    alice = make_user(admin)
    with Client(url=admin.url, api_key=alice.key) as c:
        created = c.keys.create("laptop")
        assert created.secret.startswith(f"stk_{created.key_id}_")
        assert created.owner == f"user:{alice.name}"
        assert created.state == "active"
        assert created.created_by == f"user:{alice.name}"
        listed = {k.key_id: k for k in c.keys.list()}
        assert set(listed) == {alice.key_id, created.key_id}
        assert not hasattr(listed[created.key_id], "secret")
    raw = http.get("/api/v1/keys", headers=bearer(alice.key))
    assert raw.status_code == 200
    secret_part = created.secret.split("_", 2)[2]
    assert secret_part not in raw.text
    assert "secret" not in raw.text
    every = http.get("/api/v1/keys", params={"all": "true"}, headers=bearer(admin.api_key or ""))
    assert secret_part not in every.text and "secret" not in every.text
    assert created.key_id in every.text


def test_revoked_key_is_refused_at_once(http: httpx.Client, admin: Client) -> None:
    alice = make_user(admin)
    with Client(url=admin.url, api_key=alice.key) as c:
        spare = c.keys.create("spare")
        assert http.get("/api/v1/auth/whoami", headers=bearer(spare.secret)).status_code == 200
        revoked = c.keys.revoke(spare.key_id)
        assert revoked.state == "revoked" and revoked.revoked_at is not None
        response = http.get("/api/v1/auth/whoami", headers=bearer(spare.secret))
        assert response.status_code == 401
        assert "revoked" in response.json()["detail"]
        states = {k.key_id: k.state for k in c.keys.list()}
        assert states[spare.key_id] == "revoked"
        assert c.whoami().name == alice.name  # the other key still works


def test_users_cannot_revoke_each_others_keys(admin: Client) -> None:
    alice, bob = make_user(admin), make_user(admin)
    with Client(url=admin.url, api_key=alice.key) as c:
        with pytest.raises(NotFound):
            c.keys.revoke(bob.key_id)
        with pytest.raises(PermissionDenied):
            c.keys.create(user=bob.name)
        with pytest.raises(PermissionDenied):
            c.keys.list(all=True)
    with Client(url=admin.url, api_key=bob.key) as c:
        assert c.whoami().name == bob.name


def test_expired_key_is_refused(http: httpx.Client, admin: Client) -> None:
    alice = make_user(admin)
    key = admin.keys.create("brief", user=alice.name, expires_in_days=0.00001)  # ~0.9 s
    assert key.expires_at is not None
    time.sleep(1.2)
    response = http.get("/api/v1/auth/whoami", headers=bearer(key.secret))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    with Client(url=admin.url, api_key=alice.key) as c:
        assert {k.key_id: k.state for k in c.keys.list()}[key.key_id] == "expired"


def test_a_key_used_just_before_it_expires_is_refused_after(
    http: httpx.Client, admin: Client
) -> None:
    """The credential cache must not keep an expired key alive."""
    alice = make_user(admin)
    key = admin.keys.create("brief", user=alice.name, expires_in_days=3 / 86400)  # 3 s
    assert http.get("/api/v1/auth/whoami", headers=bearer(key.secret)).status_code == 200
    time.sleep(3.2)
    response = http.get("/api/v1/auth/whoami", headers=bearer(key.secret))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_bad_expiry_is_refused(admin: Client, days: float) -> None:
    with pytest.raises(InvalidInput):
        admin.keys.create(uniq("k"), expires_in_days=days)


def test_last_used_at_is_set_after_use(http: httpx.Client, admin: Client) -> None:
    alice = make_user(admin)
    with Client(url=admin.url, api_key=alice.key) as c:
        fresh = c.keys.create("unused")
        before = {k.key_id: k for k in c.keys.list()}[fresh.key_id]
        assert before.last_used_at is None
        assert http.get("/api/v1/auth/whoami", headers=bearer(fresh.secret)).status_code == 200
        after = {k.key_id: k for k in c.keys.list()}[fresh.key_id]
        assert after.last_used_at is not None
        assert after.last_used_at >= fresh.created_at


def test_bad_credentials_are_401(http: httpx.Client, platform: LocalPlatform) -> None:
    good = platform.api_key
    key_id = good.split("_")[1]
    for header in [
        f"Bearer stk_{key_id}_wrong-secret",
        "Bearer stk_0000000000000000_secret",
        "Bearer not-a-key",
        "Bearer a.b.c",
        f"Basic {good}",
        "Bearer",
        good,
    ]:
        response = http.get("/api/v1/auth/whoami", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.json()["code"] == "unauthenticated"
    ok = http.get("/api/v1/auth/whoami", headers={"X-Api-Key": good})
    assert ok.status_code == 200


# --- service accounts ------------------------------------------------------------------------


def test_service_account_with_role_and_keys(
    http: httpx.Client, admin: Client, project: str
) -> None:
    sa = admin.service_accounts.create("ci", project=project, role="editor", description="CI")
    assert sa.kind == "ServiceAccount"
    assert sa.status.role == "editor"
    assert sa.metadata.project == project
    listed = admin.service_accounts.list(project)
    assert [(a.metadata.name, a.status.role) for a in listed] == [("ci", "editor")]
    members = {m.subject: m.role for m in admin.projects.members(project)}
    assert members["serviceaccount:ci"] == "editor"

    key = admin.service_accounts.create_key("ci", project=project, key_name="deploy")
    assert key.owner == f"serviceaccount:{project}/ci"
    assert key.project == project
    assert key.secret.startswith("stk_")
    assert [k.key_id for k in admin.service_accounts.list_keys("ci", project)] == [key.key_id]

    with Client(url=admin.url, api_key=key.secret) as c:
        me = c.whoami()
        assert me.subject == f"serviceaccount:{project}/ci"
        assert me.key_project == project
        assert me.roles == {project: "editor"}
        bucket = c.buckets.create(uniq("b"), project=project)
        assert bucket.metadata.project == project
        with pytest.raises(PermissionDenied):
            c.projects.set_member(project, "owner", service_account="ci")
        with pytest.raises(PermissionDenied, match="service accounts cannot create keys"):
            c.keys.create()
        with pytest.raises(PermissionDenied):
            c.projects.create(uniq("p"))
        with pytest.raises(NotFound):
            c.projects.get("default")
        assert [p.metadata.name for p in c.projects.list()] == [project]
    admin.buckets.delete(bucket.metadata.name, project=project)

    admin.service_accounts.revoke_key("ci", key.key_id, project=project)
    response = http.get("/api/v1/auth/whoami", headers=bearer(key.secret))
    assert response.status_code == 401


def test_service_account_without_role_sees_nothing(admin: Client, project: str) -> None:
    admin.service_accounts.create("idle", project=project)
    key = admin.service_accounts.create_key("idle", project=project)
    with Client(url=admin.url, api_key=key.secret) as c:
        assert c.whoami().roles == {}
        with pytest.raises(NotFound):
            c.projects.get(project)
        with pytest.raises(NotFound):
            c.buckets.list(project=project)


def test_deleting_a_service_account_kills_its_keys(
    http: httpx.Client, admin: Client, project: str
) -> None:
    admin.service_accounts.create("temp", project=project, role="viewer")
    key = admin.service_accounts.create_key("temp", project=project)
    assert http.get("/api/v1/auth/whoami", headers=bearer(key.secret)).status_code == 200
    admin.service_accounts.delete("temp", project=project)
    assert http.get("/api/v1/auth/whoami", headers=bearer(key.secret)).status_code == 401


def test_service_account_role_can_be_changed(admin: Client, project: str) -> None:
    admin.service_accounts.create("bot", project=project, role="viewer")
    key = admin.service_accounts.create_key("bot", project=project)
    with Client(url=admin.url, api_key=key.secret) as c:
        with pytest.raises(PermissionDenied):
            c.buckets.create(uniq("b"), project=project)
        admin.projects.set_member(project, "editor", service_account="bot")
        name = uniq("b")
        c.buckets.create(name, project=project)
        admin.projects.remove_member(project, "serviceaccount:bot")
        with pytest.raises(NotFound):
            c.buckets.list(project=project)
    admin.buckets.delete(name, project=project)


# --- roles, end to end -----------------------------------------------------------------------


def test_roles_matrix_end_to_end(admin: Client, project: str) -> None:
    people = {role: make_user(admin, project, role) for role in ("invoker", "viewer", "editor")}
    owner = make_user(admin, project, "owner")
    outsider = make_user(admin)

    with Client(url=admin.url, api_key=people["invoker"].key) as c:
        with pytest.raises(PermissionDenied, match="invoker"):
            c.buckets.list(project=project)
        with pytest.raises(PermissionDenied):
            c.projects.get(project)
        with pytest.raises(PermissionDenied):
            c.buckets.create(uniq("b"), project=project)

    with Client(url=admin.url, api_key=people["viewer"].key) as c:
        assert c.buckets.list(project=project) == []
        assert c.projects.get(project).status.your_role == "viewer"
        assert {m.subject for m in c.projects.members(project)} >= {f"user:{people['viewer'].name}"}
        with pytest.raises(PermissionDenied, match="viewer"):
            c.buckets.create(uniq("b"), project=project)
        with pytest.raises(PermissionDenied):
            c.projects.update(project, description="nope")

    bucket = uniq("b")
    with Client(url=admin.url, api_key=people["editor"].key) as c:
        c.buckets.create(bucket, project=project)
        assert [b.metadata.name for b in c.buckets.list(project=project)] == [bucket]
        with pytest.raises(PermissionDenied, match="editor"):
            c.projects.set_member(project, "viewer", user=outsider.name)
        with pytest.raises(PermissionDenied):
            c.projects.delete(project)
        with pytest.raises(PermissionDenied):
            c.service_accounts.create("nope", project=project)

    with Client(url=admin.url, api_key=owner.key) as c:
        member = c.projects.set_member(project, "viewer", user=outsider.name)
        assert member.subject == f"user:{outsider.name}" and member.role == "viewer"
        c.projects.update(project, description="owned")
        c.service_accounts.create("owned", project=project)
    with Client(url=admin.url, api_key=outsider.key) as c:
        assert c.projects.get(project).status.your_role == "viewer"
    admin.buckets.delete(bucket, project=project)


def test_no_role_in_a_project_is_404_not_403(http: httpx.Client, admin: Client) -> None:
    alice = make_user(admin)
    hidden = uniq("p")
    admin.projects.create(hidden)
    admin.buckets.create("data", project=hidden)
    missing = uniq("p")  # no such project at all
    for name in (hidden, missing):
        for method, path in [
            ("GET", f"/api/v1/projects/{name}"),
            ("PATCH", f"/api/v1/projects/{name}"),
            ("DELETE", f"/api/v1/projects/{name}"),
            ("GET", f"/api/v1/projects/{name}/members"),
            ("GET", f"/api/v1/projects/{name}/buckets"),
            ("GET", f"/api/v1/projects/{name}/buckets/data"),
            ("GET", f"/api/v1/audit?project={name}"),
        ]:
            kwargs: dict[str, Any] = {"json": {}} if method == "PATCH" else {}
            response = http.request(method, path, headers=bearer(alice.key), **kwargs)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["detail"] == f"project '{name}' not found"
    admin.buckets.delete("data", project=hidden)


def test_no_credential_is_401_on_every_non_health_route(http: httpx.Client) -> None:
    spec = http.get("/api/v1/openapi.json").json()
    checked = 0
    public = {"/healthz", "/readyz", "/api/v1/auth/login"}
    for path, operations in spec["paths"].items():
        if path in public:
            continue
        url = re.sub(r"\{(\w+)\}", lambda m: "default" if m.group(1) == "project" else "x", path)
        for method, operation in operations.items():
            kwargs: dict[str, Any] = {}
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                kwargs["json"] = {}
            elif content:
                kwargs["content"] = b"x"
            for headers in ({}, {"Authorization": "Bearer stk_0123456789abcdef_nope"}):
                response = http.request(method.upper(), url, headers=headers, **kwargs)
                assert response.status_code == 401, (method, url, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked >= 30
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200


# --- guard rails -----------------------------------------------------------------------------


def test_last_owner_cannot_be_removed_or_demoted(admin: Client) -> None:
    alice, bob = make_user(admin), make_user(admin)
    name = uniq("p")
    with Client(url=admin.url, api_key=alice.key) as c:
        c.projects.create(name)
        with pytest.raises(Conflict, match="at least one owner"):
            c.projects.remove_member(name, f"user:{alice.name}")
        with pytest.raises(Conflict, match="at least one owner"):
            c.projects.set_member(name, "editor", user=alice.name)
        c.projects.set_member(name, "owner", user=bob.name)
        c.projects.set_member(name, "editor", user=alice.name)  # bob still owns it
    with Client(url=admin.url, api_key=bob.key) as c:
        with pytest.raises(Conflict):
            c.projects.remove_member(name, f"user:{bob.name}")
        c.projects.remove_member(name, f"user:{alice.name}")
        assert {m.subject: m.role for m in c.projects.members(name)} == {
            f"user:{bob.name}": "owner"
        }


def test_an_owner_service_account_does_not_count_as_the_last_owner(
    admin: Client, project: str
) -> None:
    alice = make_user(admin, project, "owner")
    admin.service_accounts.create("robot", project=project, role="owner")
    admin.projects.remove_member(project, "user:admin")
    with Client(url=admin.url, api_key=alice.key) as c:
        with pytest.raises(Conflict):
            c.projects.remove_member(project, f"user:{alice.name}")


@pytest.mark.parametrize(
    "subject", ["alice", "group:x", "user:", "user:Bad_Name", "serviceaccount:"]
)
def test_bad_member_subjects_are_refused(admin: Client, project: str, subject: str) -> None:
    with pytest.raises((InvalidInput, NotFound)):
        admin.projects.remove_member(project, subject)


def test_member_must_name_exactly_one_principal(admin: Client, project: str) -> None:
    alice = make_user(admin)
    with pytest.raises(InvalidInput, match="exactly one"):
        admin.projects.set_member(project, "viewer")
    admin.service_accounts.create("svc", project=project)
    with pytest.raises(InvalidInput, match="exactly one"):
        admin.projects.set_member(project, "viewer", user=alice.name, service_account="svc")
    with pytest.raises(NotFound):
        admin.projects.set_member(project, "viewer", user=uniq("ghost"))
    with pytest.raises(InvalidInput):
        admin.projects.set_member(project, "superuser", user=alice.name)


def test_last_admin_cannot_be_deleted_or_demoted(tmp_path: Path) -> None:
    with LocalPlatform(tmp_path / "home") as p, p.client() as c:
        with pytest.raises(Conflict, match="last admin"):
            c.users.delete("admin")
        with pytest.raises(Conflict, match="last admin"):
            c.users.update("admin", is_admin=False)
        with pytest.raises(Conflict, match="last admin"):
            c.users.update("admin", disabled=True)
        assert c.users.get("admin").spec.is_admin

        c.users.create("second", PASSWORD, is_admin=True)
        second_key = c.keys.create(user="second").secret
        c.users.update("admin", is_admin=False)  # there is another admin now
        assert not c.users.get("admin").spec.is_admin
        with pytest.raises(PermissionDenied):
            c.users.list()  # the bootstrap key is an ordinary user's now

        with p.client(second_key) as s:
            with pytest.raises(Conflict, match="last admin"):
                s.users.delete("second")
            with pytest.raises(Conflict, match="last admin"):
                s.users.update("second", is_admin=False)
            s.users.update("admin", is_admin=True)
            s.users.delete("second")
        assert c.users.get("admin").spec.is_admin


# --- the CLI ---------------------------------------------------------------------------------

CliRun = Callable[..., Any]


def _json(result: Any) -> Any:
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def test_cli_projects_users_members_and_keys(cli: CliRun, admin: Client) -> None:
    name, user = uniq("p"), uniq("u")
    created = _json(
        cli("projects", "create", name, "-d", "from the CLI", "-l", "team=cli", "-o", "json")
    )
    assert created["metadata"]["name"] == name
    assert created["metadata"]["labels"] == {"team": "cli"}
    assert created["status"]["your_role"] == "owner"
    listed = _json(cli("projects", "list", "-s", "team=cli", "-o", "json"))
    assert name in {p["metadata"]["name"] for p in listed}
    shown = _json(cli("projects", "show", name, "-o", "json"))
    assert shown["spec"]["description"] == "from the CLI"

    made = _json(cli("users", "create", user, "--password", PASSWORD, "-o", "json"))
    assert made["metadata"]["name"] == user and made["status"]["has_password"]

    member = _json(
        cli("projects", "add-member", name, "--user", user, "--role", "editor", "-o", "json")
    )
    assert member == {
        "kind": "RoleBinding",
        "subject": f"user:{user}",
        "role": "editor",
        "created_at": member["created_at"],
    }
    members = _json(cli("projects", "members", name, "-o", "json"))
    assert {m["subject"]: m["role"] for m in members}[f"user:{user}"] == "editor"

    key = _json(cli("keys", "create", "--user", user, "--name", "cli", "-o", "json"))
    assert key["secret"].startswith(f"stk_{key['key_id']}_")
    assert key["owner"] == f"user:{user}"
    mine = _json(cli("keys", "list", "-o", "json", api_key=key["secret"]))
    assert [k["key_id"] for k in mine] == [key["key_id"]]
    assert "secret" not in mine[0]
    everyone = _json(cli("keys", "list", "--all", "-o", "json"))
    assert key["key_id"] in {k["key_id"] for k in everyone}

    me = _json(cli("status", "-o", "json", api_key=key["secret"]))
    assert me["you"] == f"user:{user}"
    assert me["roles"] == {name: "editor"}

    revoked = cli("keys", "revoke", key["key_id"])
    assert revoked.code == 0, revoked.stderr
    assert key["key_id"] in revoked.stdout
    after = cli("keys", "list", "-o", "json", api_key=key["secret"])
    assert after.code == 1
    assert "revoked" in after.stderr


def test_cli_table_output(cli: CliRun) -> None:
    name = uniq("p")
    result = cli("projects", "create", name)
    assert result.code == 0, result.stderr
    assert "NAME" in result.stdout and name in result.stdout and "owner" in result.stdout
    key = cli("keys", "create", "--name", "tbl")
    assert key.code == 0
    assert re.search(r"stk_[0-9a-f]{16}_\S+", key.stdout)
    assert "shown once" in key.stderr


def test_cli_service_account_keys(cli: CliRun, project: str) -> None:
    sa = _json(
        cli("serviceaccounts", "create", "ci", "-p", project, "--role", "viewer", "-o", "json")
    )
    assert sa["status"]["role"] == "viewer"
    key = _json(cli("keys", "create", "-a", "ci", "-p", project, "-o", "json"))
    assert key["owner"] == f"serviceaccount:{project}/ci"
    listed = _json(cli("keys", "list", "-a", "ci", "-p", project, "-o", "json"))
    assert [k["key_id"] for k in listed] == [key["key_id"]]
    assert cli("keys", "revoke", key["key_id"], "-a", "ci", "-p", project).code == 0
    listed = _json(cli("keys", "list", "-a", "ci", "-p", project, "-o", "json"))
    assert listed[0]["state"] == "revoked"


@pytest.mark.parametrize(
    "args",
    [
        ("projects", "show", "no-such-project-at-all-in-this-platform-whatsoever"),
        ("projects", "create", "Bad_Name"),
        ("projects", "create", "default"),
        ("users", "create", "x" * 70, "--password", PASSWORD),
        ("projects", "add-member", "default", "--user", "nobody-here-0000", "--role", "viewer"),
        ("projects", "add-member", "default", "--user", "admin", "--role", "superuser"),
        ("keys", "revoke", "0000000000000000"),
        ("projects", "list", "-s", "bad key=a very long selector value that goes on and on"),
    ],
)
def test_cli_failure_is_one_line_on_stderr(cli: CliRun, args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_cli_unauthenticated_is_one_line(cli: CliRun) -> None:
    result = cli("projects", "list", api_key="stk_0123456789abcdef_wrong")
    assert result.code == 1
    assert result.stderr.strip() == "error: the credential is not valid"


@pytest.mark.parametrize(
    "args",
    [
        ("projects", "create"),
        ("projects", "list", "-o", "xml"),
        ("projects", "frobnicate"),
        ("keys", "create", "--expires-in-days", "soon"),
        ("projects", "add-member", "default", "--user", "admin"),
        ("--no-such-flag",),
    ],
)
def test_cli_bad_usage_exits_2(cli: CliRun, args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()


def test_cli_login_with_password_writes_private_credentials(
    admin: Client, platform: LocalPlatform, tmp_path: Path, run_cli: Callable[..., Any]
) -> None:
    alice = make_user(admin)
    home = tmp_path / "alice-home"
    env = {"STRATUS_HOME": str(home), "STRATUS_URL": platform.url}

    def invoke(*args: str) -> tuple[int, str, str]:
        result = run_cli(*args, env=env)
        return result.code, result.stdout, result.stderr

    code, out, err = invoke("login", "-u", alice.name, "--password", "not-her-password")
    assert code == 1
    assert err.strip() == "error: invalid username or password"
    assert not (home / "credentials").exists()

    code, out, err = invoke("login", "-u", alice.name, "--password", PASSWORD, "-p", "default")
    assert code == 0, err
    assert alice.name in out
    creds_file = home / "credentials"
    assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
    saved = json.loads(creds_file.read_text())
    assert saved["user"] == alice.name
    assert saved["url"] == platform.url
    assert saved["token"].count(".") == 2
    assert saved["project"] == "default"
    assert "api_key" not in saved
    assert PASSWORD not in creds_file.read_text()

    code, out, err = invoke("status", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["you"] == f"user:{alice.name}"

    code, out, err = invoke("login", "--api-key", alice.key)
    assert code == 0, err
    saved = json.loads(creds_file.read_text())
    assert saved["api_key"] == alice.key and "token" not in saved
    assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
    # the shared platform's own credentials were not touched
    assert platform.api_key.startswith("stk_")
