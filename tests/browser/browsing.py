"""What the browser tests share besides fixtures: the console under test and the screenshot
helper's type (tests/browser/conftest.py makes both)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Page

# `screenshot(page, "projects")` writes artifacts/console/projects.png and returns its path
Screenshot = Callable[[Page, str], Path]


@dataclass(frozen=True)
class Console:
    """The console under test: where it is, the admin's API key, and a user with a password
    (a viewer of the `default` project) for the sign-in forms."""

    url: str
    api_key: str
    username: str
    password: str
