"""The compute contract, re-adoption: replicas and jobs outlive a control plane killed with
SIGKILL; a restarted one finds them with `running()` and `running_jobs()`, reaches them (a
replica still greets with its secret, a job's log still grows) and stops them."""

from __future__ import annotations

from pathlib import Path

from contract_kit import SECRET, Kit, Models, greet, job_launch, wait_job_log, wait_replica

from stratus.compute.backend import JobState, ReplicaState


def test_a_restarted_control_plane_finds_what_runs_and_stops_it(
    backend_under_test: Kit, models: Models, tmp_path: Path
) -> None:
    kit = backend_under_test
    replicas = {"c-adopt-1": models.spec("serves"), "c-adopt-2": models.spec("serves")}
    kit.start_and_kill_control_plane(replicas, [job_launch("c-adopt-job", "runs", tmp_path)])

    backend = kit.backend()  # the restarted control plane's
    adopted = backend.running()
    assert sorted(h.replica_id for h in adopted) == sorted(replicas)
    for handle in adopted:
        status = wait_replica(kit, backend, handle, ReplicaState.ready)
        assert greet(status.address, SECRET)["model"] == "serves"
    (job,) = backend.running_jobs()
    assert job.job_id == "c-adopt-job"
    assert backend.job_status(job).state is JobState.running
    wait_job_log(kit, backend, job, b"started\n")

    for handle in adopted:
        backend.stop_replica(handle, grace_seconds=10.0)
        assert backend.status(handle).state is ReplicaState.exited
    backend.stop_job(job, grace_seconds=10.0)
    assert backend.job_status(job).state is JobState.exited
    backend.release_job(job)
    assert backend.running() == [] and backend.running_jobs() == []
    assert kit.backend().running() == []  # nothing left for the next restart either
