"""The Ray backend's kit: replicas and jobs as actors on the session's Ray cluster
(`ray_cluster.py`), each test in a Ray namespace of its own with its nodes' files under its state
folder, and a control plane in a subprocess (a Ray driver of its own), killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import ray
from contract_kit import kill_a_control_plane

from ray_cluster import RayCluster
from stratus.compute.backend import ComputeBackend, JobLaunch
from stratus.compute.ray_backend import RayBackend, RayBackendConfig
from stratus.serving.replica import ReplicaSpec

# The killed control plane: start what it is asked to, say so once the replicas are ready, then
# wait to be killed.
CONTROL_PLANE = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from stratus.compute.backend import JobLaunch, ReplicaState
    from stratus.compute.limits import Resources
    from stratus.compute.ray_backend import RayBackend, RayBackendConfig
    from stratus.serving.replica import ReplicaSpec

    asked = json.loads(Path(sys.argv[1]).read_text())
    backend = RayBackend(RayBackendConfig.model_validate(asked["config"]))
    handles = [backend.start_replica(replica_id, ReplicaSpec.model_validate(spec))
               for replica_id, spec in asked["replicas"].items()]
    for job in asked["jobs"]:
        backend.start_job(JobLaunch(**{**job, "cwd": Path(job["cwd"]),
                                       "resources": Resources(**job["resources"])}))
    deadline = time.monotonic() + 120
    while not all(backend.status(h).state is ReplicaState.ready for h in handles):
        for h in handles:
            status = backend.status(h)
            if status.state is ReplicaState.exited:
                sys.exit(f"replica {h.replica_id} exited: {status.detail}")
        if time.monotonic() > deadline:
            sys.exit("the replicas were not ready in time")
        time.sleep(0.05)
    print(json.dumps({"ready": [h.replica_id for h in handles]}), flush=True)
    time.sleep(600)
    """
)


class RayKit:
    name = "ray"
    exit_codes = True  # the actor is the parent of its process, even after a restart

    def __init__(self, cluster: RayCluster, state_dir: Path) -> None:
        self.cluster = cluster
        self.state_dir = state_dir
        self.config = RayBackendConfig(
            address=cluster.address,
            namespace=f"contract-{state_dir.name}",
            state_dir=state_dir,
            node_dir=state_dir / "nodes",  # every node is on this machine
        )
        self._backends: list[RayBackend] = []

    def backend(self) -> ComputeBackend:
        backend = RayBackend(self.config)
        self._backends.append(backend)
        return backend

    def settle(self) -> None:
        pass  # real actors act by themselves

    def start_and_kill_control_plane(
        self, replicas: Mapping[str, ReplicaSpec], jobs: Sequence[JobLaunch]
    ) -> None:
        def started(lines: list[str]) -> bool | None:
            return any(line.startswith('{"ready"') for line in lines) or None

        kill_a_control_plane(
            self.state_dir, CONTROL_PLANE, self.config, replicas, jobs, started, self.cluster.env
        )

    def close(self) -> None:
        backend = self.backend()
        for handle in backend.running():
            backend.stop_replica(handle, 2.0)
        for job in backend.running_jobs():
            backend.stop_job(job, 2.0)
            backend.release_job(job)
        # what a failed test left (jobs exited but not released, actors still starting)
        for entry in ray.util.list_named_actors(all_namespaces=True):
            if entry["namespace"] == self.config.namespace:
                with contextlib.suppress(ValueError):
                    ray.kill(ray.get_actor(entry["name"], namespace=entry["namespace"]))
        for each in self._backends:
            each.close()
