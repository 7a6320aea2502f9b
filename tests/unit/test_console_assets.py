"""The console's vendored libraries are what `make console-assets` made from the lockfile.

A vendored file edited by hand, or a pin or lockfile bumped without re-running the target,
fails here; no npm or network is needed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "console-assets"
VENDOR = ROOT / "src" / "stratus" / "console" / "static" / "vendor"
PACKAGES = {"htmx.org", "htmx-ext-sse", "uplot"}


def load(path: Path) -> Any:
    return json.loads(path.read_text())


MANIFEST: dict[str, dict[str, str]] = load(VENDOR / "manifest.json")["files"]


def locked_version(package: str) -> str:
    version: str = load(ASSETS / "package-lock.json")["packages"][f"node_modules/{package}"][
        "version"
    ]
    return version


def test_manifest_covers_the_folder() -> None:
    on_disk = {p.name for p in VENDOR.iterdir() if p.is_file()}
    assert on_disk == set(MANIFEST) | {"manifest.json", "README.md"}
    assert {entry["package"] for entry in MANIFEST.values()} == PACKAGES


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_file_matches_its_sha256(name: str) -> None:
    data = (VENDOR / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == MANIFEST[name]["sha256"]


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_version_is_the_locked_one(name: str) -> None:
    entry = MANIFEST[name]
    assert entry["version"] == locked_version(entry["package"])


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_lockfile_matches_the_pins(package: str) -> None:
    pins = load(ASSETS / "package.json")["dependencies"]
    assert pins[package] == locked_version(package)
    assert load(ASSETS / "package-lock.json")["packages"][""]["dependencies"] == pins


def test_readme_names_the_versions() -> None:
    readme = (VENDOR / "README.md").read_text()
    for package in PACKAGES:
        assert f"{package}) **{locked_version(package)}**" in readme
