"""The first thing a user does: the platform is up, and the CLI can reach it."""

from __future__ import annotations

from stratus.client import Client
from stratus.testing import LocalPlatform


def test_ready_and_whoami(platform: LocalPlatform, admin: Client) -> None:
    assert admin.health()["status"] == "ok"
    me = admin.whoami()
    assert me.subject == "user:admin" and me.is_admin


def test_cli_status(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("status", "-o", "json")
    assert result.code == 0, result.stderr
    assert '"status": "ok"' in result.stdout
