"""Unit checks of the local backend's bookkeeping: records, /proc parsing, ids, the Protocol."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from stratus.compute.backend import ComputeBackend, ReplicaState
from stratus.compute.local import LocalBackend, LocalBackendConfig, LocalReplicaHandle
from stratus.compute.processes import process_start_ticks, tail
from stratus.serving.replica import ReplicaSpec


def test_local_backend_satisfies_the_protocol(tmp_path: Path) -> None:
    backend: ComputeBackend = LocalBackend(LocalBackendConfig(state_dir=tmp_path))
    assert backend.name == "local" and backend.supports_adoption
    assert LocalBackendConfig(state_dir=tmp_path).fork_server is True
    backend.close()


def test_start_ticks_of_this_process() -> None:
    ticks = process_start_ticks(os.getpid())
    assert isinstance(ticks, int) and ticks > 0
    assert process_start_ticks(2**22 + 12345) is None  # over pid_max: never a process


def test_record_round_trip_and_stale_records(tmp_path: Path) -> None:
    backend = LocalBackend(LocalBackendConfig(state_dir=tmp_path, fork_server=False))
    me = LocalReplicaHandle("me", f"unix://{tmp_path}/s.sock", "here", time.time(), os.getpid(),
                            tmp_path / "me.log", process_start_ticks(os.getpid()))  # fmt: skip
    backend._write_record(me)
    assert backend.running() == [me]  # the same live process: adopted
    assert backend.status(me).state == ReplicaState.starting  # alive, but no socket
    (tmp_path / "replicas" / "junk.json").write_text("{not json")
    (tmp_path / "replicas" / "x.spec.json").write_text("{}")
    assert backend.running() == [me]  # unreadable records and specs are skipped
    backend._remove_record(me)
    assert backend.running() == []
    backend.close()


def test_dead_process_reads_exited_with_log_tail(tmp_path: Path) -> None:
    backend = LocalBackend(LocalBackendConfig(state_dir=tmp_path, fork_server=False))
    log = tmp_path / "dead.log"
    log.write_text("".join(f"line {i}\n" for i in range(50)) + "replica: cannot start: no\n")
    dead = LocalReplicaHandle("dead", f"unix://{tmp_path}/s.sock", "here", time.time(),
                              2**22 + 12345, log, 5)  # fmt: skip
    status = backend.status(dead)
    assert status.state == ReplicaState.exited and status.exit_code is None
    assert status.detail.endswith("cannot start: no") and "line 10\n" not in status.detail
    assert backend.stop_replica(dead) is None  # nothing to stop, nothing known
    assert tail(tmp_path / "missing.log") == ""
    backend.close()


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x" * 200])
def test_replica_ids_must_be_file_name_safe(tmp_path: Path, bad: str) -> None:
    backend = LocalBackend(LocalBackendConfig(state_dir=tmp_path, fork_server=False))
    spec = ReplicaSpec(model_dir=tmp_path, flavor="sklearn", model_name="m", model_version=1,
                       secret="s" * 32)  # fmt: skip
    with pytest.raises(ValueError):
        backend.start_replica(bad, spec)
    backend.close()


def test_records_of_older_versions_are_read(tmp_path: Path) -> None:
    """A record written before addresses (a `socket` path, no node) is re-adopted as is."""
    backend = LocalBackend(LocalBackendConfig(state_dir=tmp_path, fork_server=False))
    old = {
        "replica_id": "old",
        "pid": os.getpid(),
        "socket": f"{tmp_path}/old.sock",
        "log_path": str(tmp_path / "old.log"),
        "started_at": time.time(),
        "process_start_ticks": process_start_ticks(os.getpid()),
    }
    (tmp_path / "replicas" / "old.json").write_text(json.dumps(old))
    [handle] = backend.running()
    assert isinstance(handle, LocalReplicaHandle)
    assert handle.address == f"unix://{tmp_path}/old.sock" and handle.node == backend.node
    assert handle.details() == {"pid": os.getpid()}
    backend.close()


def test_a_handle_of_another_backend_is_refused(tmp_path: Path) -> None:
    from stratus.compute.backend import ReplicaHandle

    backend = LocalBackend(LocalBackendConfig(state_dir=tmp_path, fork_server=False))
    with pytest.raises(ValueError, match="not one of the local backend's"):
        backend.status(ReplicaHandle("r", "tcp://127.0.0.3:1", "elsewhere", time.time()))
    backend.close()
