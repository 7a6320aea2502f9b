"""The compute contract, jobs: every backend has room for jobs, runs one with its log readable
at any offset and its exit code kept, refuses a bad launch, and stops a job by asking first,
then by force once the grace period is over."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from contract_kit import Kit, job_launch, wait_job, wait_job_log

from stratus.compute.backend import JobState


def test_a_backend_has_room_for_jobs(backend_under_test: Kit) -> None:
    capacity = backend_under_test.backend().capacity()
    assert capacity.vcpus > 0 and capacity.memory_bytes > 0 and capacity.gpus >= 0


def test_a_job_runs_writes_its_log_and_exits_with_its_code(
    backend_under_test: Kit, tmp_path: Path
) -> None:
    kit = backend_under_test
    backend = kit.backend()
    handle = backend.start_job(job_launch("c-exits", "exits", tmp_path))
    assert handle.job_id == "c-exits" and handle.node and handle.enforcement

    status = wait_job(kit, backend, handle)
    assert status.exit_code == 3 or not kit.exit_codes
    assert not status.oom_killed
    assert "step 2" in status.detail  # the last lines of its log
    log = backend.read_job_log(handle)
    assert log == b"step 1\nstep 2\n"
    assert backend.read_job_log(handle, offset=5) == log[5:]
    assert backend.read_job_log(handle, offset=2, limit=3) == log[2:5]
    assert backend.read_job_log(handle, offset=len(log)) == b""
    with pytest.raises(ValueError):
        backend.read_job_log(handle, offset=-1)

    # what the job's database row keeps finds the job again
    again = backend.job_from_record(json.loads(json.dumps(backend.job_record(handle))))
    assert again == handle and backend.job_status(again).state is JobState.exited
    assert backend.running_jobs() == []
    backend.release_job(again)
    assert backend.read_job_log(handle) == b""


def test_a_bad_launch_is_refused(backend_under_test: Kit, tmp_path: Path) -> None:
    kit = backend_under_test
    backend = kit.backend()
    with pytest.raises(ValueError):
        backend.start_job(job_launch("../escape", "runs", tmp_path))
    with pytest.raises(ValueError):
        backend.start_job(job_launch("c-nowhere", "runs", tmp_path / "missing"))
    handle = backend.start_job(job_launch("c-twice", "runs", tmp_path))
    with pytest.raises(ValueError):
        backend.start_job(job_launch("c-twice", "runs", tmp_path))
    with pytest.raises(ValueError):
        backend.release_job(handle)  # still running
    backend.stop_job(handle, grace_seconds=10.0)
    backend.release_job(handle)


def test_stopping_a_job_asks_first_then_forces(backend_under_test: Kit, tmp_path: Path) -> None:
    kit = backend_under_test
    backend = kit.backend()
    polite = backend.start_job(job_launch("c-polite", "runs", tmp_path))
    stubborn = backend.start_job(job_launch("c-stubborn", "stubborn", tmp_path))
    for handle in (polite, stubborn):  # the stubborn one ignores SIGTERM from then on
        wait_job_log(kit, backend, handle, b"started\n")
        assert backend.job_status(handle).state is JobState.running
    assert {h.job_id for h in backend.running_jobs()} == {"c-polite", "c-stubborn"}

    asked = backend.stop_job(polite, grace_seconds=10.0)
    assert asked == -signal.SIGTERM or not kit.exit_codes
    forced = backend.stop_job(stubborn, grace_seconds=0.5)
    assert forced == -signal.SIGKILL or not kit.exit_codes
    assert backend.running_jobs() == []
    for handle, code in ((polite, asked), (stubborn, forced)):
        assert backend.job_status(handle).state is JobState.exited
        assert backend.stop_job(handle, grace_seconds=1.0) == code  # idempotent
        backend.release_job(handle)
