"""Every list is paginated (limit, page_token): walking the pages yields each item once, in
order, including the lists added after the first ones (members, keys, versions, aliases)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.client import Client
from stratus.testing import LocalPlatform


@pytest.fixture
def http(platform: LocalPlatform) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {platform.api_key}"}
    with httpx.Client(base_url=platform.url, headers=headers, timeout=30) as client:
        yield client


def walk(http: httpx.Client, path: str, **params: Any) -> list[list[Any]]:
    pages: list[list[Any]] = []
    query: dict[str, Any] = {"limit": 2, **params}
    while True:
        response = http.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        if not body["next_page_token"]:
            return pages
        query["page_token"] = body["next_page_token"]


def test_registry_lists_page(admin: Client, http: httpx.Client, tiny_model: Path) -> None:
    project = f"pages-{uuid.uuid4().hex[:8]}"
    admin.projects.create(project)
    for _ in range(5):
        admin.models.push(tiny_model, "m", project=project, flavor="sklearn")
    for alias in ("a1", "a2", "a3"):
        admin.models.set_alias("m", alias, 1, project=project, reason=alias)
    base = f"/api/v1/projects/{project}/models/m"
    pages = walk(http, f"{base}/versions")
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [v["version"] for p in pages for v in p] == [5, 4, 3, 2, 1]  # newest first
    aliases = [a["alias"] for p in walk(http, f"{base}/aliases") for a in p]
    assert aliases == ["a1", "a2", "a3"]
    reasons = [e["reason"] for p in walk(http, f"{base}/alias-history") for e in p]
    assert reasons == ["a3", "a2", "a1"]  # newest first
    assert len(admin.models.versions("m", project=project)) == 5  # the SDK walks every page


def test_iam_lists_page(admin: Client, http: httpx.Client) -> None:
    project = f"pages-{uuid.uuid4().hex[:8]}"
    admin.projects.create(project)
    for i in range(3):
        user = f"pg-{uuid.uuid4().hex[:6]}-{i}"
        admin.users.create(user, "password123")
        admin.projects.set_member(project, "viewer", user=user)
    members = [m["subject"] for p in walk(http, f"/api/v1/projects/{project}/members") for m in p]
    assert len(members) == 4 and members == sorted(members)  # the admin owner and 3 viewers
    admin.service_accounts.create("bot", project=project)
    made = {admin.service_accounts.create_key("bot", project=project).key_id for _ in range(3)}
    sa_path = f"/api/v1/projects/{project}/serviceaccounts/bot/keys"
    listed = [k["key_id"] for p in walk(http, sa_path) for k in p]
    assert sorted(listed) == sorted(made) and listed == sorted(listed)
    mine = [k["key_id"] for p in walk(http, "/api/v1/keys") for k in p]
    assert len(mine) == len(set(mine)) and mine == sorted(mine)
    assert {k.key_id for k in admin.keys.list()} == set(mine)


def test_a_foreign_page_token_is_a_400(http: httpx.Client) -> None:
    response = http.get("/api/v1/keys", params={"page_token": "MTI"})  # the number 12
    assert response.status_code == 400
