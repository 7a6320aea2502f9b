"""The compute contract, replicas: every backend starts a replica that loads in the background,
reports it ready with an address the gateway dials with the replica's secret, shows its log,
reports a crash with its exit code and last log lines, and stops it (gracefully, or by force
once the grace period is over)."""

from __future__ import annotations

import signal

import pytest
from contract_kit import SECRET, Kit, Models, greet, wait_replica

from stratus.compute.backend import ReplicaState
from stratus.serving.connections import ReplicaGone
from stratus.testing import wait_for


def test_a_replica_starts_serves_with_its_secret_and_stops(
    backend_under_test: Kit, models: Models
) -> None:
    kit = backend_under_test
    backend = kit.backend()
    handle = backend.start_replica("c-serves", models.spec("serves"))
    assert handle.replica_id == "c-serves" and handle.node and handle.started_at > 0
    # it returns at once: the model loads in the background
    assert backend.status(handle).state in (ReplicaState.starting, ReplicaState.ready)

    ready = wait_replica(kit, backend, handle, ReplicaState.ready)
    assert ready.address
    assert greet(ready.address, SECRET)["model"] == "serves"
    with pytest.raises(ReplicaGone):
        greet(ready.address, "not-" + SECRET)
    assert [h.replica_id for h in backend.running()] == ["c-serves"]

    code = backend.stop_replica(handle, grace_seconds=10.0)
    assert code == 0 or not kit.exit_codes  # it finished what it held and exited
    assert backend.status(handle).state is ReplicaState.exited
    assert backend.stop_replica(handle, grace_seconds=10.0) == code  # idempotent
    assert backend.running() == []
    with pytest.raises(OSError):  # nothing listens there any more
        greet(ready.address, SECRET)


def test_a_replica_shows_its_log(backend_under_test: Kit, models: Models) -> None:
    kit = backend_under_test
    backend = kit.backend()
    handle = backend.start_replica("c-logs", models.spec("serves"))
    ready = wait_replica(kit, backend, handle, ReplicaState.ready)

    def says_ready() -> bool:
        return any(f"ready on {ready.address}" in line for line in backend.logs(handle))

    wait_for("the replica's log to say where it listens", says_ready, 60, interval=0.05)
    assert len(backend.logs(handle, lines=1)) == 1
    backend.stop_replica(handle, grace_seconds=10.0)


def test_a_replica_that_crashes_is_seen_exited_with_why(
    backend_under_test: Kit, models: Models
) -> None:
    kit = backend_under_test
    backend = kit.backend()
    handle = backend.start_replica("c-broken", models.spec("broken"))
    status = wait_replica(kit, backend, handle, ReplicaState.exited)
    assert status.exit_code == 3 or not kit.exit_codes
    assert "cannot start" in status.detail  # the last lines of its log
    assert any("cannot start" in line for line in backend.logs(handle))
    assert backend.running() == []  # the record of a dead replica is dropped
    assert backend.stop_replica(handle, grace_seconds=1.0) == status.exit_code


def test_a_replica_that_ignores_the_graceful_stop_is_killed_after_the_grace(
    backend_under_test: Kit, models: Models
) -> None:
    kit = backend_under_test
    backend = kit.backend()
    handle = backend.start_replica("c-stubborn", models.spec("stubborn"))
    wait_replica(kit, backend, handle, ReplicaState.ready)
    code = backend.stop_replica(handle, grace_seconds=0.5)
    assert code == -signal.SIGKILL or not kit.exit_codes
    assert backend.status(handle).state is ReplicaState.exited
    assert backend.running() == []
