"""Starting, stopping and restarting a control plane, as an operator does with `stratus up`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from stratus.migrations.runner import head_revision
from stratus.testing import LocalPlatform, free_port

HEAD = head_revision() or ""  # the newest migration this version of Stratus knows


def stratus(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the `stratus` command in a subprocess, with no STRATUS_* settings inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    return subprocess.run(
        [sys.executable, "-m", "stratus", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_first_start_prints_the_key_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    p = LocalPlatform(home)
    try:
        p.start()
        creds_path = home / "credentials"
        assert stat.S_IMODE(creds_path.stat().st_mode) == 0o600
        creds = json.loads(creds_path.read_text())
        key = creds["api_key"]
        assert key.startswith("stk_")
        assert creds["url"] == p.url and creds["user"] == "admin"
        assert creds["project"] == "default"
        log = p.log_path.read_text()
        assert log.count("First start") == 1
        assert log.count(key) == 1
        assert "admin password:" in log
        with p.client() as c:
            assert c.whoami().subject == "user:admin"
            assert len(c.keys.list(all=True)) == 1
        p.stop()

        p.start()
        log = p.log_path.read_text()
        assert log.count("First start") == 1  # not again
        assert log.count(key) == 1  # the key is never printed again
        assert json.loads(creds_path.read_text())["api_key"] == key
        with p.client() as c:
            keys = c.keys.list(all=True)
            assert len(keys) == 1, keys
            assert [u.metadata.name for u in c.users.list()] == ["admin"]
        p.stop()

        # A start on another port keeps the key and points the credentials at the new address.
        moved = LocalPlatform(home)
        assert moved.port != p.port
        try:
            moved.start()
            creds = json.loads(creds_path.read_text())
            assert creds["api_key"] == key and creds["url"] == moved.url
            assert stat.S_IMODE(creds_path.stat().st_mode) == 0o600
            with moved.client() as c:
                assert c.whoami().subject == "user:admin"
        finally:
            moved.stop()
    finally:
        p.stop()


def test_second_start_on_the_same_home_is_refused(own_platform: LocalPlatform) -> None:
    before = (own_platform.home / "credentials").read_text()
    result = stratus("up", "--home", str(own_platform.home), "--port", str(free_port()), timeout=60)
    assert result.returncode == 1, result.stderr
    assert "already running" in result.stderr
    assert str(own_platform.pid) in result.stderr  # names the holder
    assert "Traceback" not in result.stderr
    # The running platform is untouched.
    assert (own_platform.home / "credentials").read_text() == before
    with own_platform.client() as c:
        assert c.health()["status"] == "ok"


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = stratus("up", "--home", str(home), "--port", str(port))
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr
    # The home lock was released: the same home starts on a free port.
    with LocalPlatform(home) as p, p.client() as c:
        assert c.health()["status"] == "ok"


def test_sigterm_stops_promptly_and_releases_the_lock(tmp_path: Path) -> None:
    home = tmp_path / "home"
    p = LocalPlatform(home)
    try:
        p.start()
        with p.client() as c:
            c.buckets.create("b", project="default")
            c.buckets.upload("b", "k", b"kept", project="default")
            # An idle keep-alive connection must not hold the shutdown up.
            assert c.health()["status"] == "ok"
            started = time.monotonic()
            code = p.stop()
            elapsed = time.monotonic() - started
        assert code == 0, p.log_tail()
        assert elapsed < 8, f"SIGTERM took {elapsed:.1f}s"
        assert "Stratus stopped." in p.log_tail()
        assert (home / "stratus.lock").read_text() == ""  # no holder recorded any more

        p.start()
        with p.client() as c:
            assert c.buckets.read("b", "k", project="default") == b"kept"
        # Ctrl-C (SIGINT) stops it cleanly too: a clean stop is a success, exit 0.
        assert p.process is not None
        process = p.process
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0, p.log_tail()
        p.process = None
        assert "Traceback" not in p.log_path.read_text()
        assert (home / "stratus.lock").read_text() == ""  # the clean-up ran
        assert p.log_tail().count("Stratus stopped.") == 2
        p.start()
        with p.client() as c:
            assert c.health()["status"] == "ok"
    finally:
        p.stop()


def test_data_survives_a_restart(own_platform: LocalPlatform) -> None:
    data = os.urandom(1024 * 1024 + 7)
    with own_platform.client() as c:
        c.projects.create("keep", labels={"team": "ml"})
        c.buckets.create("raw", project="keep", labels={"tier": "raw"})
        v1 = c.buckets.upload("raw", "a/data.bin", data, project="keep")
        c.buckets.upload("raw", "a/data.bin", b"second", project="keep")
        c.buckets.upload("raw", "gone", b"x", project="keep")
        c.buckets.delete_object("raw", "gone", project="keep")
        user = c.users.create("alice", "a-long-password-1")
        events_before = len(c.audit.list(limit=1000))
    assert own_platform.stop() == 0
    own_platform.start()
    with own_platform.client() as c:
        assert c.projects.get("keep").metadata.labels == {"team": "ml"}
        assert c.buckets.get("raw", project="keep").metadata.labels == {"tier": "raw"}
        assert c.buckets.read("raw", "a/data.bin", project="keep") == b"second"
        old = c.buckets.read("raw", "a/data.bin", version_id=v1.version_id, project="keep")
        assert old == data
        assert [o.key for o in c.buckets.list_objects("raw", project="keep").objects] == [
            "a/data.bin"
        ]
        assert c.users.get("alice").metadata.uid == user.metadata.uid
        assert len(c.audit.list(limit=1000)) >= events_before
        assert c.audit.verify().ok


def test_health_endpoints_need_no_credential(own_platform: LocalPlatform) -> None:
    with httpx.Client(base_url=own_platform.url, timeout=10) as http:
        alive = http.get("/healthz")
        assert alive.status_code == 200 and alive.json()["status"] == "ok"
        ready = http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok", "checks": {"database": "ok", "store": "ok"}}
        denied = http.get("/api/v1/projects")
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"] == "Bearer"
        wrong = http.get("/readyz", headers={"authorization": "Bearer stk_nope_nope"})
        assert wrong.status_code == 200


def test_readyz_reports_a_missing_store(own_platform: LocalPlatform) -> None:
    store = own_platform.home / "store"
    shutil.rmtree(store)
    with httpx.Client(base_url=own_platform.url, timeout=10) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["database"] == "ok"
        assert "store" in body["checks"]
        assert str(store) in body["checks"]["store"]
        assert "does not exist" in body["checks"]["store"]
        assert http.get("/healthz").status_code == 200  # alive, just not ready
        # The store comes back: ready again.
        store.mkdir()
        assert http.get("/readyz").status_code == 200


def test_db_upgrade_and_current_on_a_fresh_home(tmp_path: Path) -> None:
    home = tmp_path / "fresh" / "home"
    current = stratus("db", "current", "--home", str(home))
    assert current.returncode == 0, current.stderr
    assert "current: none" in current.stdout and f"head: {HEAD}" in current.stdout

    upgraded = stratus("db", "upgrade", "--home", str(home))
    assert upgraded.returncode == 0, upgraded.stderr
    assert HEAD in upgraded.stdout and "empty" in upgraded.stdout
    assert (home / "stratus.db").is_file()

    again = stratus("db", "upgrade", "--home", str(home))
    assert again.returncode == 0, again.stderr
    assert f"up to date ({HEAD})" in again.stdout

    current = stratus("db", "current", "--home", str(home))
    assert current.returncode == 0, current.stderr
    assert f"current: {HEAD}" in current.stdout and f"head: {HEAD}" in current.stdout

    # A platform starts on the migrated database and seeds it.
    with LocalPlatform(home) as p, p.client() as c:
        assert c.whoami().is_admin
