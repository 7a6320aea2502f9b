"""The Ray backend's kit: replicas and jobs as actors on the session's Ray cluster
(`ray_cluster.py`), each test in a Ray namespace of its own with its nodes' files under its state
folder, and a control plane in a subprocess (a Ray driver of its own), killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import ray

from ray_cluster import RayCluster
from stratus.compute.backend import ComputeBackend, JobLaunch
from stratus.compute.ray_backend import RayBackend, RayBackendConfig
from stratus.serving.replica import ReplicaSpec
from stratus.testing import wait_for

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
        asked = self.state_dir / "control-plane.json"
        asked.write_text(
            json.dumps(
                {
                    "config": self.config.model_dump(mode="json"),
                    "replicas": {i: s.model_dump(mode="json") for i, s in replicas.items()},
                    "jobs": [{**asdict(j), "cwd": str(j.cwd)} for j in jobs],
                }
            )
        )
        out = self.state_dir / "control-plane.out"
        with open(out, "wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-c", CONTROL_PLANE, str(asked)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.cluster.env},
                start_new_session=True,
            )
        try:

            def reported() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"the control plane exited:\n{out.read_text()}")
                return any(line.startswith('{"ready"') for line in out.read_text().splitlines())

            wait_for("the control plane to start everything", reported, 180, interval=0.1)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

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
