"""Signing in to the web console and out again, in Chromium: the redirect to /login, an API key
or a user name and password (by mouse and by keyboard alone), the session cookie's flags, the
Projects page and a project's overview (both kept as screenshots), a wrong password."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from browsing import Console, Screenshot
from playwright.sync_api import Locator, Page, expect

pytestmark = pytest.mark.browser

SESSION_COOKIE = "stratus_session"


def on(path: str) -> re.Pattern[str]:
    """The page's URL has exactly the path `path` on the console (whatever its query, such as
    /login's `next`)."""
    return re.compile(rf"^https?://[^/?#]+{re.escape(path)}([?#].*)?$")


def sign_in_with_key(page: Page, api_key: str) -> None:
    page.goto("/login")
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(on("/"))
    expect(page.get_by_role("heading", level=1, name="Projects")).to_be_visible()


def tab_to(page: Page, field: Locator, presses: int = 12) -> None:
    """Press Tab until `field` has the focus, as someone without a mouse would."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if field.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"{presses} presses of Tab never reached {field}")


def test_without_a_session_the_console_sends_you_to_sign_in(page: Page) -> None:
    answer = page.request.get("/", max_redirects=0)
    assert answer.status == 303
    assert urlsplit(answer.headers["location"]).path == "/login"

    page.goto("/")
    expect(page).to_have_url(on("/login"))
    expect(page.get_by_label("User name")).to_have_attribute("name", "username")
    expect(page.get_by_label("Password")).to_have_attribute("name", "password")
    expect(page.get_by_label("API key")).to_have_attribute("name", "api_key")
    expect(page.get_by_role("button", name="Sign in")).to_be_enabled()


def test_an_api_key_signs_in_to_the_projects_page(
    page: Page, console_platform: Console, screenshot: Screenshot
) -> None:
    sign_in_with_key(page, console_platform.api_key)

    projects = page.get_by_role("table")
    expect(projects).to_be_visible()
    default = projects.get_by_role("link", name="default", exact=True)
    expect(default).to_have_attribute("href", re.compile(r"(^|/)projects/default$"))
    screenshot(page, "projects")


def test_a_project_page_shows_its_overview(
    page: Page, console_platform: Console, screenshot: Screenshot
) -> None:
    sign_in_with_key(page, console_platform.api_key)
    page.get_by_role("table").get_by_role("link", name="default", exact=True).click()

    expect(page).to_have_url(on("/projects/default"))
    expect(page.get_by_role("heading", level=1)).to_have_text("default")
    for section in ("Endpoints", "Firing alerts", "Running jobs", "Recent activity"):
        expect(page.get_by_role("heading", level=2, name=section)).to_be_visible()
    screenshot(page, "project-overview")


def test_the_session_cookie_is_httponly_and_strictly_same_site(
    page: Page, console_platform: Console
) -> None:
    sign_in_with_key(page, console_platform.api_key)

    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    assert SESSION_COOKIE in cookies, f"no {SESSION_COOKIE} cookie among {sorted(cookies)}"
    session = cookies[SESSION_COOKIE]
    assert session.get("httpOnly") is True
    assert session.get("sameSite") == "Strict"
    # never readable by the page's scripts
    assert SESSION_COOKIE not in page.evaluate("document.cookie")


def test_sign_out_ends_the_session(page: Page, console_platform: Console) -> None:
    sign_in_with_key(page, console_platform.api_key)

    page.locator("header").get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(on("/login"))
    answer = page.request.get("/", max_redirects=0)
    assert answer.status == 303
    page.goto("/")
    expect(page).to_have_url(on("/login"))


def test_a_wrong_password_is_refused_on_the_sign_in_page(
    page: Page, console_platform: Console
) -> None:
    page.goto("/login")
    page.get_by_label("User name").fill(console_platform.username)
    page.get_by_label("Password").fill(console_platform.password + "-wrong")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_text(re.compile("could not sign in", re.IGNORECASE))).to_be_visible()
    expect(page).to_have_url(on("/login"))
    assert SESSION_COOKIE not in {cookie["name"] for cookie in page.context.cookies()}


def test_signing_in_by_keyboard_alone(page: Page, console_platform: Console) -> None:
    page.goto("/login")

    tab_to(page, page.get_by_label("User name"))
    page.keyboard.type(console_platform.username)
    tab_to(page, page.get_by_label("Password"))
    page.keyboard.type(console_platform.password)
    page.keyboard.press("Enter")

    expect(page).to_have_url(on("/"))
    expect(page.get_by_role("heading", level=1, name="Projects")).to_be_visible()
    expect(
        page.get_by_role("table").get_by_role("link", name="default", exact=True)
    ).to_be_visible()
