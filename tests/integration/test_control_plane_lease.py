"""One control plane per database: a second `stratus up` on the same database refuses to
start while the first holds the lease, takes over once a killed one's lease expires, and no
control plane starts with a master key the data was not written with."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest

from stratus.testing import LocalPlatform

TTL = {"STRATUS_SERVER_LEASE_TTL_SECONDS": "2"}


def master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def platform(tmp_path: Path, name: str, db: str, key: str) -> LocalPlatform:
    return LocalPlatform(tmp_path / name, db=db, env={**TTL, "STRATUS_MASTER_KEY": key})


def test_a_second_control_plane_on_one_database_refuses_to_start(tmp_path: Path) -> None:
    db, key = f"sqlite:///{tmp_path / 'shared.db'}", master_key()
    first, second = platform(tmp_path, "a", db, key), platform(tmp_path, "b", db, key)
    try:
        first.start()
        with pytest.raises(RuntimeError, match="exited with 1") as refused:
            second.start(timeout=60)
        message = str(refused.value)
        assert "another Stratus control plane is running on this database" in message
        assert f"pid {first.pid}" in message and first.url in message
        assert "Traceback" not in message
        with first.client() as c:  # the first one is untouched
            assert c.health()["status"] == "ok"

        first.kill()  # kill -9: its lease is left to expire
        deadline = time.monotonic() + 30
        while True:
            try:
                second.start(timeout=60)
                break
            except RuntimeError as exc:
                assert "another Stratus control plane" in str(exc), str(exc)
                assert time.monotonic() < deadline, "the expired lease was never taken over"
                time.sleep(0.2)
        with second.client(api_key=first.api_key) as c:
            assert c.health()["status"] == "ok"
    finally:
        first.stop()
        second.stop()


def test_a_control_plane_restarted_on_its_home_takes_its_lease_back_at_once(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    p = LocalPlatform(tmp_path / "home", db=db, env={"STRATUS_SERVER_LEASE_TTL_SECONDS": "3600"})
    try:
        p.start()
        p.kill()
        p.start()  # its home lock proves the old process is gone: no wait for the lease
        p.stop()
        p.start()  # a clean stop released it
    finally:
        p.stop()


def test_a_master_key_the_data_was_not_written_with_is_refused(tmp_path: Path) -> None:
    db, key = f"sqlite:///{tmp_path / 'shared.db'}", master_key()
    first = platform(tmp_path, "a", db, key)
    other = platform(tmp_path, "b", db, master_key())
    try:
        with first, first.client() as c:
            c.buckets.create("b", project="default")
            c.buckets.upload("b", "k", b"written under the first key", project="default")
        with pytest.raises(RuntimeError, match="exited with 1") as refused:
            other.start(timeout=60)
        assert "the master key does not match" in str(refused.value)
        assert "Traceback" not in str(refused.value)
        with first, first.client() as c:  # the right key starts, and reads
            assert c.buckets.read("b", "k", project="default") == b"written under the first key"
    finally:
        first.stop()
        other.stop()
