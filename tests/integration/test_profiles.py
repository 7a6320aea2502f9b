"""`stratus login` and its profiles, driven through the CLI as a user would: a key restricted
to a project logs in to that project, a second identity goes into a profile of its own (or
says whose login it replaced), and the environment still wins over the profile."""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stratus.client import Client
from stratus.testing import LocalPlatform

PASSWORD = "correct-horse-battery"
Invoke = Callable[..., Any]  # invoke(*args, **env) -> CliResult (code, stdout, stderr)


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "user-home"


@pytest.fixture
def invoke(platform: LocalPlatform, run_cli: Callable[..., Any], home: Path) -> Invoke:
    """`stratus ARGS` with only STRATUS_HOME and STRATUS_URL set (and `env` on top): the
    identity comes from the credentials file, as after a real login."""

    def run(*args: str, **env: str) -> Any:
        return run_cli(*args, env={"STRATUS_HOME": str(home), "STRATUS_URL": platform.url, **env})

    return run


def member(admin: Client, project: str, role: str = "editor") -> str:
    name = uniq("pf")
    admin.users.create(name, PASSWORD)
    admin.projects.set_member(project, role, user=name)
    return name


def test_a_restricted_key_logs_in_to_its_project(admin: Client, invoke: Invoke, home: Path) -> None:
    project = uniq("fraud")
    admin.projects.create(project)
    alice = member(admin, project)
    admin.buckets.create("raw-data", project=project)
    key = admin.keys.create(user=alice, project=project).secret

    result = invoke("login", "--api-key", key)
    assert result.code == 0, result.stderr
    assert f"default project {project}" in result.stdout
    saved = json.loads((home / "credentials").read_text())
    assert saved["project"] == project and saved["user"] == alice
    assert stat.S_IMODE((home / "credentials").stat().st_mode) == 0o600

    listed = invoke("buckets", "list", "-o", "json")
    assert listed.code == 0, listed.stderr
    assert [b["metadata"]["name"] for b in json.loads(listed.stdout)] == ["raw-data"]
    assert invoke("endpoints", "list").code == 0

    # STRATUS_PROJECT still wins over the profile's project (and this key sees no other)
    other = invoke("buckets", "list", STRATUS_PROJECT="default")
    assert other.code == 1
    assert "project 'default' not found" in other.stderr

    # --project names the default explicitly; a user in one project only gets that one
    bob = member(admin, project, role="viewer")
    result = invoke("login", "-u", bob, "--password", PASSWORD, "--profile", "bob")
    assert result.code == 0, result.stderr
    assert json.loads((home / "credentials").read_text())["profiles"]["bob"]["project"] == project


def test_a_second_login_goes_into_its_own_profile(
    admin: Client, platform: LocalPlatform, invoke: Invoke, home: Path
) -> None:
    project = uniq("team")
    admin.projects.create(project)
    alice = member(admin, project)

    assert invoke("login", "--api-key", platform.api_key).code == 0
    result = invoke("login", "-u", alice, "--password", PASSWORD, "--profile", "alice")
    assert result.code == 0, result.stderr
    assert "replaced" not in result.stderr
    assert "now using profile 'alice'" in result.stderr

    saved = json.loads((home / "credentials").read_text())
    assert saved["user"] == "admin" and saved["api_key"] == platform.api_key  # the default one
    assert saved["current"] == "alice"
    assert saved["profiles"]["alice"]["user"] == alice and "api_key" not in saved["profiles"]
    assert stat.S_IMODE((home / "credentials").stat().st_mode) == 0o600

    def who(*args: str, **env: str) -> str:
        result = invoke(*args, "status", "-o", "json", **env)
        assert result.code == 0, result.stderr
        return str(json.loads(result.stdout)["you"])

    assert who() == f"user:{alice}"
    assert who("--profile", "default") == "user:admin"
    assert who(STRATUS_PROFILE="default") == "user:admin"
    assert who("--profile", "alice", STRATUS_PROFILE="default") == f"user:{alice}"
    # STRATUS_API_KEY wins over the profile's credential
    assert who(STRATUS_API_KEY=platform.api_key) == "user:admin"

    listed = invoke("profiles", "list", "-o", "json")
    assert listed.code == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {"default", "alice"}
    assert rows["alice"]["active"] and not rows["default"]["active"]
    assert rows["alice"]["auth"] == "token" and rows["default"]["auth"] == "api key"
    table = invoke("profiles", "list")
    assert any(line.split()[:2] == ["*", "alice"] for line in table.stdout.splitlines())

    assert invoke("profiles", "use", "default").code == 0
    assert who() == "user:admin"
    assert invoke("profiles", "remove", "alice").code == 0
    assert "profiles" not in json.loads((home / "credentials").read_text())


def test_logging_in_again_to_a_profile_says_whose_login_it_replaced(
    admin: Client, platform: LocalPlatform, invoke: Invoke, home: Path
) -> None:
    project = uniq("team")
    admin.projects.create(project)
    alice = member(admin, project)
    assert invoke("login", "--api-key", platform.api_key).code == 0

    again = invoke("login", "--api-key", platform.api_key)
    assert again.code == 0 and "replaced" not in again.stderr  # the same identity

    result = invoke("login", "-u", alice, "--password", PASSWORD)
    assert result.code == 0, result.stderr
    assert "replaced the login of profile 'default'" in result.stderr
    assert f"it was admin at {platform.url}" in result.stderr
    assert "--profile" in result.stderr
    assert json.loads((home / "credentials").read_text())["user"] == alice


def test_a_profile_that_does_not_exist_is_a_clear_error(
    invoke: Invoke, platform: LocalPlatform
) -> None:
    assert invoke("login", "--api-key", platform.api_key).code == 0
    result = invoke("--profile", "nope", "status")
    assert result.code == 1
    assert "no profile 'nope'" in result.stderr and "stratus login --profile nope" in result.stderr
    result = invoke("status", STRATUS_PROFILE="nope")
    assert result.code == 1 and "no profile 'nope'" in result.stderr
    result = invoke("profiles", "use", "nope")
    assert result.code == 1 and "no profile 'nope'" in result.stderr
    result = invoke("login", "--api-key", platform.api_key, "--profile", "a b")
    assert result.code == 1 and "profile name 'a b' is not valid" in result.stderr
