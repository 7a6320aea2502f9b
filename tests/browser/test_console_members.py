"""Members and keys in the browser: an owner adds a member with a role from the form, and
creates an API key that is shown once."""

from __future__ import annotations

import uuid

import pytest
from browsing import Console, Screenshot
from playwright.sync_api import Page, expect

from stratus.client import Client

pytestmark = pytest.mark.browser


def test_an_owner_adds_a_member_and_makes_a_key_shown_once(
    page: Page, console_platform: Console, admin: Client, screenshot: Screenshot
) -> None:
    project = f"team-{uuid.uuid4().hex[:6]}"
    admin.projects.create(project)
    page.goto("/login")
    page.get_by_label("API key").fill(console_platform.api_key)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"/projects/{project}")
    page.get_by_role("link", name="Members and keys").click()
    expect(page.get_by_role("heading", level=1, name="Members")).to_be_visible()

    page.get_by_label("User", exact=True).fill(console_platform.username)
    page.get_by_label("Role").select_option("editor")
    page.get_by_role("button", name="Save member").click()
    row = page.get_by_role("row", name=f"user:{console_platform.username}")
    expect(row).to_contain_text("editor")

    page.get_by_label("Key name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("heading", name="Your new API key")).to_be_visible()
    secret = page.get_by_label("Key laptop").input_value()
    assert secret.startswith("stk_")
    screenshot(page, "members")
    page.goto(f"/projects/{project}/members")  # shown once: gone from the page
    expect(page.get_by_role("heading", name="Your new API key")).to_have_count(0)
