"""The fake backend's kit: a `FakeCluster` whose ready replicas really serve in this process
(the replica server with a constant model), and which plays each replica and job by what it
was started with, as a real one would behave."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from contract_kit import behaviour_of, program_of

from stratus.compute.backend import ComputeBackend, JobLaunch, JobState, LaunchSpec, ReplicaState
from stratus.compute.fake import FakeBackend, FakeCluster
from stratus.registry.batches import Batch
from stratus.serving.replica import ReplicaSpec, serve


class ConstantModel:
    """Predicts 0 for every row."""

    @property
    def supports_batching(self) -> bool:
        return False

    def predict(self, batch: Batch) -> np.ndarray:
        return np.zeros(batch.n_rows)


def serve_constant(
    spec: LaunchSpec, stop: asyncio.Event, listening: Callable[[str], None]
) -> Coroutine[Any, Any, None]:
    replica = cast(ReplicaSpec, spec)
    return serve(replica, ConstantModel(), stop, on_listening=listening, handle_signals=False)


class FakeKit:
    name = "fake"
    exit_codes = True

    def __init__(self, state_dir: Path) -> None:
        self.cluster = FakeCluster(
            socket_dir=state_dir / "run",
            serve=serve_constant,
            sleep=lambda seconds: None,  # a stop's grace period passes at once
        )
        self._played: set[int] = set()

    def backend(self) -> ComputeBackend:
        return FakeBackend(self.cluster)

    def settle(self) -> None:
        cluster = self.cluster
        for replica_id, replica in list(cluster.replicas.items()):
            if replica.handle.serial in self._played or replica.state is not ReplicaState.starting:
                continue
            self._played.add(replica.handle.serial)
            behaviour = behaviour_of(cast(ReplicaSpec, replica.spec))
            if behaviour == "broken":
                cluster.crash(replica_id, 3, "replica: cannot start: it is not trusted")
                continue
            replica.ignores_stop = behaviour == "stubborn"
            cluster.mark_ready(replica_id)
        for job_id, job in list(cluster.jobs.items()):
            if job.handle.serial in self._played or job.state is not JobState.running:
                continue
            self._played.add(job.handle.serial)
            program = program_of(job.launch)
            if program == "exits":
                cluster.write_job_log(job_id, b"step 1\nstep 2\n")
                cluster.exit_job(job_id, 3)
            else:
                cluster.write_job_log(job_id, b"started\n")
                job.ignores_stop = program == "stubborn"

    def start_and_kill_control_plane(
        self, replicas: Mapping[str, ReplicaSpec], jobs: Sequence[JobLaunch]
    ) -> None:
        backend = self.backend()
        for replica_id, spec in replicas.items():
            backend.start_replica(replica_id, spec)
        for launch in jobs:
            backend.start_job(launch)
        self.settle()
        # killed: the backend is dropped without `close`; the cluster runs on

    def close(self) -> None:
        backend = self.backend()
        for handle in backend.running():
            backend.stop_replica(handle, 0.0)
        for job in backend.running_jobs():
            backend.stop_job(job, 0.0)
