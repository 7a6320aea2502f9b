"""Live pages: an endpoint's page shows its replicas go from starting to ready as the server
pushes each change (Server-Sent Events), with no reload, and a second replica appears when it
is scaled, within a second or so of the controller's change."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from browsing import Console, Screenshot
from playwright.sync_api import Page, expect

from stratus.client import Client

pytestmark = pytest.mark.browser


def test_an_endpoint_page_shows_its_replicas_go_ready_live(
    page: Page,
    console_platform: Console,
    admin: Client,
    tiny_model: Path,
    screenshot: Screenshot,
) -> None:
    project = f"live-{uuid.uuid4().hex[:6]}"
    admin.projects.create(project)
    admin.models.push(tiny_model, "m", project=project, sample=[[0.0, 1.0], [1.0, 0.0]])
    admin.endpoints.deploy("api", "m:1", replicas=1, project=project, wait=True)

    page.goto("/login")
    page.get_by_label("API key").fill(console_platform.api_key)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"/projects/{project}")
    page.get_by_role("link", name="api", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="api")).to_be_visible()
    replicas = page.locator("#replicas tbody tr")
    expect(replicas).to_have_count(1)
    expect(replicas.first).to_contain_text("ready")
    wanted = page.locator("#variants tbody tr td:last-child")
    expect(wanted).to_have_text("1")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    admin.endpoints.update(
        "api", project=project, variants=[{"name": "main", "model": "m:1", "replicas": 2}]
    )
    expect(replicas).to_have_count(2, timeout=20_000)  # pushed: the page is not reloaded
    expect(page.locator("#replicas tbody tr", has_text="ready")).to_have_count(2, timeout=20_000)
    expect(wanted).to_have_text("2")  # the spec's change too
    assert navigations == []
    screenshot(page, "endpoint")
    admin.endpoints.delete("api", project=project)
