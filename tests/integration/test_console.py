"""The console's sessions over HTTP, as a browser sends them: nothing without a session, a
sign-in with an API key or a password sets an HttpOnly, SameSite=Strict cookie, a change
needs the session's CSRF token and comes from the console's own pages, signing out ends the
session for good, and a project the viewer may not see answers 404 as the API does."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest

from stratus.client import Client
from stratus.testing import LocalPlatform


def browser(platform: LocalPlatform) -> httpx.Client:
    return httpx.Client(base_url=platform.url, follow_redirects=False, timeout=30)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found, page
    return found.group(1)


def test_nothing_is_shown_without_a_session(platform: LocalPlatform) -> None:
    with browser(platform) as web:
        for path in ("/", "/projects/default"):
            answer = web.get(path)
            assert answer.status_code == 303
            assert answer.headers["location"] == f"/login?next={path}"
        form = web.get("/login")
        assert form.status_code == 200 and "no-store" in form.headers["cache-control"]
        policy = form.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "unsafe-inline" not in policy
        assert form.headers["x-frame-options"] == "DENY"
        assert web.get("/console/static/console.css").status_code == 200
        for label in (
            'for="username">User name',
            'for="password">Password',
            'for="api_key">API key',
        ):
            assert label in form.text
        web.cookies.set("stratus_session", "forged")
        assert web.get("/").status_code == 303


def test_a_key_signs_in_with_a_strict_http_only_cookie_and_signing_out_ends_it(
    platform: LocalPlatform, admin: Client
) -> None:
    with browser(platform) as web:
        signed = web.post("/login", data={"api_key": platform.api_key, "next": "/projects/default"})
        assert signed.status_code == 303 and signed.headers["location"] == "/projects/default"
        cookie = signed.headers["set-cookie"]
        assert cookie.startswith("stratus_session=")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain http here; under TLS it is Secure
        session = signed.cookies["stratus_session"]
        assert platform.api_key not in cookie  # the cookie holds a random id, not the key

        home = web.get("/")
        assert home.status_code == 200
        assert "<h1>Projects</h1>" in home.text and 'href="/projects/default"' in home.text
        overview = web.get("/projects/default")
        for heading in ("Endpoints", "Firing alerts", "Running jobs", "Recent activity"):
            assert f">{heading}</h2>" in overview.text
        token = csrf_of(overview.text)

        assert web.post("/logout", data={}).status_code == 403  # no CSRF token
        assert web.post("/logout", data={"csrf": "0" * 64}).status_code == 403
        cross = web.post("/logout", data={"csrf": token}, headers={"sec-fetch-site": "cross-site"})
        assert cross.status_code == 403
        out = web.post("/logout", data={"csrf": token})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        web.cookies.set("stratus_session", session)  # a copied cookie is dead too
        assert web.get("/").status_code == 303
    entries = admin.audit.list(action="console.*", limit=10)
    assert {"console.login", "console.logout"} <= {e.action for e in entries}


def test_a_password_signs_in_and_a_wrong_one_says_so(
    platform: LocalPlatform, admin: Client
) -> None:
    name, password = f"web-{uuid.uuid4().hex[:6]}", "correct horse battery"
    admin.users.create(name, password=password)
    with browser(platform) as web:
        wrong = web.post("/login", data={"username": name, "password": "nope"})
        assert wrong.status_code == 401 and "Could not sign in: " in wrong.text
        failed = admin.audit.list(actor=f"user:{name}", action="console.login", limit=5)
        assert [e.outcome for e in failed] == ["denied"]  # a 401, as the API records it
        assert "stratus_session" not in wrong.headers.get("set-cookie", "")
        right = web.post("/login", data={"username": name, "password": password})
        assert right.status_code == 303 and right.headers["location"] == "/"
        page = web.get("/")
        assert f"user:{name}" in page.text and "default" not in page.text.split("<h1>")[1]
        # a project the user may not see reads as absent, as the API answers it
        assert web.get("/projects/default").status_code == 404
        off_site = web.post(
            "/login",
            data={"username": name, "password": password},
            headers={"origin": "https://evil.example"},
        )
        assert off_site.status_code == 403


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example", "/\\evil"])
def test_sign_in_never_redirects_off_site(platform: LocalPlatform, target: str) -> None:
    with browser(platform) as web:
        signed = web.post("/login", data={"api_key": platform.api_key, "next": target})
        assert signed.status_code == 303 and signed.headers["location"] == "/"


def test_the_live_stream_needs_a_session_and_sends_the_status_at_once(
    platform: LocalPlatform, admin: Client, tiny_model: Path
) -> None:
    project = f"sse-{uuid.uuid4().hex[:6]}"
    admin.projects.create(project)
    admin.models.push(tiny_model, "m", project=project, sample=[[0.0, 1.0], [1.0, 0.0]])
    admin.endpoints.deploy("api", "m:1", replicas=0, project=project, wait=False)
    events = f"/projects/{project}/endpoints/api/events"
    with browser(platform) as web:
        assert web.get(events).status_code == 303  # no session: nothing streams
        web.post("/login", data={"api_key": platform.api_key})
        assert web.get(f"/projects/{project}/endpoints/nope").status_code == 404
        with web.stream("GET", f"/projects/nope-{project}/endpoints/api/events") as refused:
            assert refused.status_code == 404
        with web.stream("GET", events) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            first = ""
            for line in stream.iter_lines():  # the status comes at once, then on changes
                first += line + "\n"
                if line == "" and first.strip():
                    break
        assert first.startswith("event: status\n")
        assert '<table id="variants">' in first and "m:1" in first
    admin.endpoints.delete("api", project=project)


def test_members_and_a_key_shown_once_and_a_viewer_gets_no_buttons_nor_changes(
    platform: LocalPlatform, admin: Client
) -> None:
    project, name = f"team-{uuid.uuid4().hex[:6]}", f"ann-{uuid.uuid4().hex[:6]}"
    admin.projects.create(project)
    admin.users.create(name, password="a long enough password")
    page = f"/projects/{project}/members"
    with browser(platform) as web:
        web.post("/login", data={"api_key": platform.api_key})
        token = csrf_of(web.get(page).text)
        added = web.post(page, data={"csrf": token, "user": name, "role": "viewer"})
        assert added.status_code == 303
        assert {m.subject: m.role for m in admin.projects.members(project)}[f"user:{name}"] == (
            "viewer"
        )
        (entry,) = admin.audit.list(project=project, action="console.members.set", limit=5)
        assert entry.actor == "user:admin" and entry.outcome == "success"
        bad = web.post(page, data={"csrf": token, "user": name, "role": "emperor"})
        assert bad.status_code == 400 and "is not a role" in bad.text
        made = web.post(f"/projects/{project}/keys", data={"csrf": token, "name": "ci"})
        assert made.status_code == 201
        secret = re.search(r'id="new-key" readonly data-secret value="(stk_[^"]+)"', made.text)
        assert secret is not None
        with Client(platform.url, secret.group(1)) as keyed:  # it works, in this project only
            assert [p.metadata.name for p in keyed.projects.list()] == [project]
        assert secret.group(1) not in web.get(page).text  # shown once
    with browser(platform) as web:  # the viewer: no buttons, and the server refuses anyway
        web.post("/login", data={"username": name, "password": "a long enough password"})
        seen = web.get(page)
        assert seen.status_code == 200 and "Save member" not in seen.text
        assert ">Remove</button>" not in seen.text
        refused = web.post(page, data={"csrf": csrf_of(seen.text), "user": name, "role": "owner"})
        assert refused.status_code == 403
        assert {m.subject: m.role for m in admin.projects.members(project)}[f"user:{name}"] == (
            "viewer"
        )
