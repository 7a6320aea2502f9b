"""Fixtures for the web console's end-to-end tests: Debian's Chromium driven by Playwright.

One browser per test session (per xdist worker), a fresh context per test, and the session's
platform (`platform`, tests/conftest.py) as the console under test. Screenshots go to
artifacts/console/ at the repository root, the folder CI keeps; a failed test leaves one too.
Chromium comes from `make system-deps` (never `playwright install`); without it the tests fail,
unless STRATUS_BROWSER_OPTIONAL=1 lets them be skipped on a machine that cannot have it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from browsing import Console, Screenshot
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from stratus.testing import LocalPlatform

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests may run as root, in a container
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000  # any one action, navigation or expectation
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"

expect.set_options(timeout=TIMEOUT_MS)


# Per module, not per session: Playwright's sync API keeps an event loop running in this
# thread while it is open, which would break every later test file of the same worker that
# runs asyncio itself (xdist puts a whole file on one worker, then the next).
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is not installed (make system-deps installs Debian's chromium)"
        if os.environ.get("STRATUS_BROWSER_OPTIONAL") == "1":
            pytest.skip(reason)
        pytest.fail(f"{reason}; set STRATUS_BROWSER_OPTIONAL=1 to skip the browser tests")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def console_platform(platform: LocalPlatform) -> Console:
    username, password = f"console-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    with platform.client() as admin:
        admin.users.create(username, password)
        admin.projects.set_member("default", "viewer", user=username)
    return Console(platform.url, platform.api_key, username, password)


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Note whether the test itself failed, for `page` to keep a screenshot of it."""
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


@pytest.fixture
def page(
    request: pytest.FixtureRequest, browser: Browser, console_platform: Console
) -> Iterator[Page]:
    """A page in a context of its own (no cookies), at 1280x800, relative URLs on the console."""
    context = browser.new_context(
        base_url=console_platform.url, viewport={"width": 1280, "height": 800}
    )
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.set_default_navigation_timeout(TIMEOUT_MS)
    try:
        yield page
        failed = ARTIFACTS / f"failed-{request.node.name}.png"
        if request.node.stash.get(_FAILED, False):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(PlaywrightError):  # the failure is what to report
                page.screenshot(path=failed, full_page=True)
        else:  # not an earlier run's
            failed.unlink(missing_ok=True)
    finally:
        context.close()


@pytest.fixture
def screenshot() -> Screenshot:
    """`screenshot(page, "projects")` writes artifacts/console/projects.png (the whole page),
    with every password field and shown-once secret (`[data-secret]`) masked: the folder is
    kept by CI, and secrets never go there."""

    def take(page: Page, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        secrets = page.locator("input[type=password], [data-secret]")
        page.screenshot(path=path, full_page=True, mask=[secrets])
        return path

    return take
