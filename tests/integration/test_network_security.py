"""Secure on a network: rate limits (per key, per caller in a project, per endpoint, failed
logins), endpoint network rules on the source address, the metrics-reader role, and the
security headers, against a real control plane through the SDK, the CLI and plain HTTP.

Requests "from" other machines come from other loopback addresses (127.0.0.2, 127.0.0.3):
Linux lets a client bind any 127/8 source address and reach the server on 127.0.0.1.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.client import Client
from stratus.errors import PermissionDenied, RateLimited
from stratus.testing import LocalPlatform

ROW = {"instances": [[0.0, 1.0]]}


def _from(address: str, platform: LocalPlatform, **kwargs: Any) -> httpx.Client:
    """An HTTP client whose requests leave from `address` (a loopback address)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=platform.url, transport=transport, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def world(platform: LocalPlatform, tiny_model: Path) -> Iterator[dict[str, Any]]:
    project = f"netsec-{uuid.uuid4().hex[:6]}"
    with platform.client() as admin:
        admin.projects.create(project)
        admin.models.push(tiny_model, "tiny", project=project)
        admin.endpoints.deploy("scorer", "tiny", project=project, wait=True, timeout=120)
        yield {"project": project, "admin": admin}
        admin.endpoints.delete("scorer", project)
        admin.models.delete("tiny", project, force=True)
        admin.projects.delete(project)


def _predict(http: httpx.Client, project: str, key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return http.post(f"/inference/{project}/scorer/predict", json=ROW, headers=headers)


# --- endpoints: the owner's rate limit and network rules ---------------------------------------


def test_an_endpoint_over_its_rate_limit_answers_429_with_retry_after(
    platform: LocalPlatform, world: dict[str, Any], cli: Any
) -> None:
    project, admin = world["project"], world["admin"]
    done = cli(
        "endpoints", "access", "scorer", "-p", project, "--rate-limit", "0.2", "--burst", "2"
    )
    assert done.code == 0, done.stderr
    assert "at most 0.2 requests/s (burst 2)" in done.stdout
    try:
        with _from("127.0.0.1", platform) as http:
            answers = [_predict(http, project, platform.api_key) for _ in range(4)]
        assert [a.status_code for a in answers[:2]] == [200, 200]
        refused = answers[2]
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["code"] == "rate-limited"
        assert "endpoint 'scorer' is over its limit" in refused.json()["detail"]
        metrics = httpx.get(
            f"{platform.url}/metrics", headers={"authorization": f"Bearer {platform.api_key}"}
        ).text
        counted = [
            line
            for line in metrics.splitlines()
            if line.startswith("stratus_rate_limited_total{")
            and f'project="{project}"' in line
            and 'scope="endpoint"' in line
        ]
        assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 2
        with pytest.raises(RateLimited) as info:
            admin.endpoints.predict("scorer", [[0.0, 1.0]], project=project)
        assert info.value.retry_after >= 1
    finally:
        done = cli("endpoints", "access", "scorer", "-p", project, "--no-rate-limit")
        assert done.code == 0, done.stderr
    admin.endpoints.predict("scorer", [[0.0, 1.0]], project=project)


def test_an_endpoint_restricted_to_a_network_refuses_other_sources(
    platform: LocalPlatform, world: dict[str, Any], cli: Any
) -> None:
    project, admin = world["project"], world["admin"]
    done = cli("endpoints", "access", "scorer", "-p", project, "--allow-cidr", "127.0.0.2/32")
    assert done.code == 0, done.stderr
    assert "callable from 127.0.0.2/32" in done.stdout
    try:
        with _from("127.0.0.1", platform) as http:
            refused = _predict(http, project, platform.api_key)
        assert refused.status_code == 403, refused.text
        assert "does not accept requests from 127.0.0.1" in refused.json()["detail"]
        with _from("127.0.0.2", platform) as http:
            assert _predict(http, project, platform.api_key).status_code == 200
            assert _predict(http, project).status_code == 401  # private: a key still needed
        # public and restricted: no key, but only from the allowed network
        admin.endpoints.update("scorer", project=project, public=True)
        with _from("127.0.0.2", platform) as http:
            assert _predict(http, project).status_code == 200
        with _from("127.0.0.3", platform) as http:
            assert _predict(http, project).status_code == 403
        shown = cli("endpoints", "show", "scorer", "-p", project)
        assert "127.0.0.2/32" in shown.stdout
    finally:
        admin.endpoints.update(
            "scorer", project=project, public=False, access={"allowed_cidrs": []}
        )
    with _from("127.0.0.3", platform) as http:
        assert _predict(http, project, platform.api_key).status_code == 200


def test_network_rules_refuse_what_is_not_a_network(world: dict[str, Any], cli: Any) -> None:
    done = cli("endpoints", "access", "scorer", "-p", world["project"], "--allow-cidr", "10.0.0/33")
    assert done.code != 0
    assert "'10.0.0/33' is not an IP network" in done.stderr


# --- keys and projects: the admin's limits ----------------------------------------------------


def test_a_key_is_throttled_at_its_limit(
    platform: LocalPlatform, world: dict[str, Any], cli: Any
) -> None:
    project, admin = world["project"], world["admin"]
    key = admin.keys.create(f"limited-{uuid.uuid4().hex[:4]}")
    done = cli("keys", "limit", key.key_id, "--rps", "0.2", "--burst", "2")
    assert done.code == 0, done.stderr
    assert "0.2/s, burst 2" in done.stdout
    with Client(platform.url, key.secret) as limited:
        limited.projects.get(project)
        limited.endpoints.predict("scorer", [[0.0, 1.0]], project=project)  # the gateway counts
        with pytest.raises(RateLimited, match=f"API key {key.key_id} is over its limit"):
            limited.projects.get(project)
        admin.projects.get(project)  # another key is not held back
        assert cli("keys", "limit", key.key_id, "--off").code == 0
        for _ in range(5):
            limited.projects.get(project)


def test_a_project_limit_gives_each_caller_its_own_bucket(
    platform: LocalPlatform, world: dict[str, Any]
) -> None:
    project, admin = world["project"], world["admin"]
    first = admin.keys.create(f"p1-{uuid.uuid4().hex[:4]}")
    second = admin.keys.create(f"p2-{uuid.uuid4().hex[:4]}")
    read = admin.projects.set_rate_limit(project, 0.2, burst=1)
    assert read.spec.rate_limit is not None and read.spec.rate_limit.burst == 1
    try:
        with Client(platform.url, first.secret) as one, Client(platform.url, second.secret) as two:
            one.endpoints.get("scorer", project)
            two.endpoints.get("scorer", project)
            with pytest.raises(RateLimited, match=f"project '{project}' allows each caller"):
                one.endpoints.get("scorer", project)
            one.projects.list()  # outside the project: not counted
    finally:
        admin.projects.set_rate_limit(project, None)
    with Client(platform.url, first.secret) as one:
        one.endpoints.get("scorer", project)


def test_only_an_admin_sets_limits(platform: LocalPlatform, world: dict[str, Any]) -> None:
    project, admin = world["project"], world["admin"]
    name = f"owner-{uuid.uuid4().hex[:4]}"
    admin.users.create(name)
    admin.projects.set_member(project, "owner", user=name)
    key = admin.keys.create("k", user=name)
    with Client(platform.url, key.secret) as owner:
        with pytest.raises(PermissionDenied):
            owner.projects.set_rate_limit(project, 100)
        with pytest.raises(PermissionDenied):
            owner.keys.set_rate_limit(key.key_id, 100)


# --- logins ------------------------------------------------------------------------------------


def test_repeated_failed_logins_are_refused_then_audited(
    platform: LocalPlatform, world: dict[str, Any]
) -> None:
    admin = world["admin"]
    name = f"victim-{uuid.uuid4().hex[:4]}"
    admin.users.create(name, "the-right-password")
    with _from("127.0.0.3", platform) as http:
        statuses = [
            http.post(
                "/api/v1/auth/login", json={"username": name, "password": f"guess-{i}"}
            ).status_code
            for i in range(5)
        ]
        assert statuses == [401] * 5
        locked = http.post(
            "/api/v1/auth/login", json={"username": name, "password": "the-right-password"}
        )
        assert locked.status_code == 429, locked.text
        assert int(locked.headers["retry-after"]) >= 1
        assert "too many failed logins" in locked.json()["detail"]
    entries = admin.audit.list(action="auth.lockout")
    mine = [e for e in entries if e.actor == f"user:{name}"]
    assert mine and mine[0].source == "127.0.0.3" and mine[0].details["failures"] == 5
    assert "the-right-password" not in str(entries) and "guess-" not in str(entries)


# --- the metrics-reader role -------------------------------------------------------------------


def test_a_project_metrics_reader_scrapes_its_project_and_nothing_else(
    platform: LocalPlatform, world: dict[str, Any]
) -> None:
    project, admin = world["project"], world["admin"]
    admin.endpoints.predict("scorer", [[0.0, 1.0]], project=project)
    admin.service_accounts.create("prometheus", project=project, role="metrics-reader")
    key = admin.service_accounts.create_key("prometheus", project=project)
    headers = {"authorization": f"Bearer {key.secret}"}
    scraped = httpx.get(f"{platform.url}/metrics", headers=headers)
    assert scraped.status_code == 200, scraped.text
    series = [line for line in scraped.text.splitlines() if line and not line.startswith("#")]
    assert any(f'project="{project}"' in line for line in series)
    assert all(f'project="{project}"' in line for line in series)  # no other project's
    for path in (f"/api/v1/projects/{project}", f"/api/v1/projects/{project}/endpoints"):
        assert httpx.get(f"{platform.url}{path}", headers=headers).status_code == 403
    with _from("127.0.0.1", platform) as http:
        assert _predict(http, project, key.secret).status_code == 403


def test_a_platform_metrics_reader_scrapes_everything_and_a_viewer_nothing(
    platform: LocalPlatform, world: dict[str, Any], cli: Any
) -> None:
    project, admin = world["project"], world["admin"]
    name = f"prom-{uuid.uuid4().hex[:4]}"
    done = cli("users", "create", name, "--platform-role", "metrics-reader")
    assert done.code == 0, done.stderr
    key = admin.keys.create("scrape", user=name)
    scraped = httpx.get(
        f"{platform.url}/metrics", headers={"authorization": f"Bearer {key.secret}"}
    )
    assert scraped.status_code == 200
    assert "stratus_inference_requests_total" in scraped.text
    assert 'project="default"' in scraped.text or f'project="{project}"' in scraped.text
    with Client(platform.url, key.secret) as reader:
        with pytest.raises(PermissionDenied):
            reader.projects.create(f"nope-{uuid.uuid4().hex[:4]}")
        assert reader.projects.list() == []
    viewer = f"viewer-{uuid.uuid4().hex[:4]}"
    admin.users.create(viewer)
    admin.projects.set_member(project, "viewer", user=viewer)
    viewer_key = admin.keys.create("v", user=viewer)
    refused = httpx.get(
        f"{platform.url}/metrics", headers={"authorization": f"Bearer {viewer_key.secret}"}
    )
    assert refused.status_code == 403
    assert "metrics-reader" in refused.json()["detail"]


# --- security headers --------------------------------------------------------------------------


def test_answers_carry_the_security_headers(platform: LocalPlatform, world: dict[str, Any]) -> None:
    headers = {"authorization": f"Bearer {platform.api_key}"}
    with httpx.Client(base_url=platform.url, headers=headers) as http:
        api = http.get("/api/v1/projects")
        assert api.headers["x-content-type-options"] == "nosniff"
        assert api.headers["x-frame-options"] == "DENY"
        assert api.headers["content-security-policy"].startswith("default-src 'none'")
        assert api.headers["cache-control"] == "no-store"
        assert api.headers["referrer-policy"] == "no-referrer"
        assert "strict-transport-security" not in api.headers  # plain HTTP: no HSTS
        refused = http.get("/api/v1/projects", headers={"authorization": "Bearer nope"})
        assert refused.status_code == 401
        assert refused.headers["x-content-type-options"] == "nosniff"
        page = http.get("/api/v1/docs")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        answer = _predict(http, world["project"], platform.api_key)
        assert answer.status_code == 200
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
