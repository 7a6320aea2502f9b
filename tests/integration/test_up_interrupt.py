"""Ctrl-C on `stratus up`: the control plane stops what it started, its worker processes print
no traceback, and no replica socket is left behind.

A terminal's Ctrl-C sends SIGINT to the whole foreground process group, so the test starts
`stratus up --demo` in a process group of its own and signals the group: the control plane,
the replicas' fork server and the capture encoder all get it, as they would at a terminal.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from stratus.client import Client
from stratus.client.credentials import read_credentials
from stratus.testing import free_port

T = TypeVar("T")


def _wait_for(condition: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def _sockets(*folders: Path) -> list[Path]:
    found = []
    for folder in folders:
        for path in folder.rglob("*") if folder.exists() else []:
            try:
                if stat.S_ISSOCK(path.lstat().st_mode):
                    found.append(path)
            except FileNotFoundError:
                pass
    return found


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """A short folder for the replica sockets (unix socket paths are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="stratus-sigint-") as folder:
        yield Path(folder)


def _ready(client: Client) -> bool:
    try:
        return client.endpoints.get("demo", "default").status.phase == "ready"
    except Exception:
        return False


def _predicted_and_captured(client: Client) -> bool:
    client.endpoints.predict("demo", [[0.1] * 30], project="default")
    try:
        return bool(client.monitors.captures("demo", project="default").records)
    except Exception:
        return False


def test_ctrl_c_stops_stratus_up_quietly_and_leaves_no_sockets(
    tmp_path: Path, runtime_dir: Path
) -> None:
    home = tmp_path / "home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    env.update(
        STRATUS_HOME=str(home),
        STRATUS_SERVING_RUNTIME_DIR=str(runtime_dir),
        STRATUS_MONITORING_CAPTURE_FLUSH_SECONDS="0.5",
    )
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "stratus", "up", "--port", str(port), "--demo"],
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,  # a process group of its own, as a terminal's job is
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _readyz(url), 120, f"stratus up to answer /readyz\n{_text(err_path)}")
        creds = read_credentials(home)
        assert creds is not None and creds.api_key
        with Client(url=url, api_key=creds.api_key, home=home) as client:
            _wait_for(lambda: _ready(client), 120, "the demo endpoint to be ready")
            client.endpoints.update("demo", project="default", capture={"sample": 1.0})
            _wait_for(lambda: _ready(client), 120, "the demo endpoint to be ready again")
            _wait_for(
                lambda: _predicted_and_captured(client),
                60,
                "a captured request (written by the capture encoder process)",
            )
        assert _sockets(runtime_dir), "a serving replica listens on a socket in the runtime dir"

        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        assert process.wait(60) == 0
        # the group's other processes (fork server, encoder) exit as their parent goes; what
        # they print comes before they are gone
        _wait_for(lambda: not _group_members(process.pid), 30, "the worker processes to exit")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    printed = _text(out_path) + _text(err_path)
    assert "Traceback" not in printed, printed
    assert "KeyboardInterrupt" not in printed, printed
    assert "Stratus stopped." in printed
    assert _sockets(runtime_dir, home) == []


def _readyz(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _text(path: Path) -> str:
    return path.read_text(errors="replace")
