"""The local backend's kit: real replica processes forked from this test process's fork server
(the stubborn model blocks SIGTERM as it loads, which holds only in a fork-server child: it is
the only thread then, and every later thread inherits the mask; a spawned interpreter already
runs other threads by then), and a control plane in a subprocess, killed with SIGKILL.

While a kit has killed a control plane, this process is a child subreaper, so what that control
plane left (its fork server, resource tracker, replicas' log writers and jobs) is reparented
here and reaped at `close`, by process id and process group.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from contract_kit import kill_a_control_plane

from stratus.compute.backend import ComputeBackend, JobLaunch
from stratus.compute.local import LocalBackend, LocalBackendConfig
from stratus.serving.replica import ReplicaSpec

PR_SET_CHILD_SUBREAPER = 36
PRELOAD = ["numpy", "sklearn", "skops.io"]  # what the models of the suite load

# The killed control plane: start what it is asked to, print what it leaves behind once the
# replicas are ready, then wait to be killed.
CONTROL_PLANE = textwrap.dedent(
    """
    import json, sys, time
    import multiprocessing.forkserver as fs, multiprocessing.resource_tracker as rt
    from pathlib import Path
    from stratus.compute.backend import JobLaunch, ReplicaState
    from stratus.compute.limits import Resources
    from stratus.compute.local import LocalBackend, LocalBackendConfig
    from stratus.serving.replica import ReplicaSpec

    asked = json.loads(Path(sys.argv[1]).read_text())
    backend = LocalBackend(LocalBackendConfig.model_validate(asked["config"]))
    handles = [backend.start_replica(replica_id, ReplicaSpec.model_validate(spec))
               for replica_id, spec in asked["replicas"].items()]
    jobs = [backend.start_job(JobLaunch(**{**job, "cwd": Path(job["cwd"]),
                                           "resources": Resources(**job["resources"])}))
            for job in asked["jobs"]]
    deadline = time.monotonic() + 120
    while not all(backend.status(h).state is ReplicaState.ready for h in handles):
        for h in handles:
            status = backend.status(h)
            if status.state is ReplicaState.exited:
                sys.exit(f"replica {h.replica_id} exited: {status.detail}")
        if time.monotonic() > deadline:
            sys.exit("the replicas were not ready in time")
        time.sleep(0.05)
    left = {"forkserver": fs._forkserver._forkserver_pid, "tracker": rt._resource_tracker._pid,
            "groups": [h.details()["pid"] for h in [*handles, *jobs]]}
    print(json.dumps(left), flush=True)
    time.sleep(600)
    """
)


class LocalKit:
    name = "local"
    exit_codes = True

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.config = LocalBackendConfig(
            state_dir=state_dir, socket_dir=state_dir / "run", preload=PRELOAD, fork_server=True
        )
        self._backends: list[LocalBackend] = []
        self._orphans: list[int] = []  # what a killed control plane left: pids...
        self._groups: list[int] = []  # ...and process groups (a replica's log writer, a job)
        self._subreaper = False

    def backend(self) -> ComputeBackend:
        backend = LocalBackend(self.config)
        self._backends.append(backend)
        return backend

    def settle(self) -> None:
        pass  # real processes act by themselves

    def start_and_kill_control_plane(
        self, replicas: Mapping[str, ReplicaSpec], jobs: Sequence[JobLaunch]
    ) -> None:
        def started(lines: list[str]) -> dict[str, list[int] | int] | None:
            reports = [line for line in lines if line.startswith("{")]
            return json.loads(reports[-1]) if reports else None

        _subreaper(True)
        self._subreaper = True
        left = kill_a_control_plane(
            self.state_dir, CONTROL_PLANE, self.config, replicas, jobs, started
        )
        forkserver, tracker, groups = left["forkserver"], left["tracker"], left["groups"]
        assert isinstance(groups, list)
        self._orphans += [pid for pid in (forkserver, tracker) if isinstance(pid, int)]
        self._groups += groups

    def close(self) -> None:
        backend = self.backend()
        for handle in backend.running():
            backend.stop_replica(handle, 2.0)
        for job in backend.running_jobs():
            backend.stop_job(job, 2.0)
            backend.release_job(job)
        for each in self._backends:
            each.close()
        if self._subreaper:
            for pid in self._orphans:
                _reap(pid)
            for group in self._groups:
                _reap(-group)
            _subreaper(False)


def _subreaper(on: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def _reap(pid: int, timeout: float = 10.0) -> None:
    """Reap our child `pid` (negative: every child of that process group) once it exits; kill
    it if it has not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # not (or no longer) a child of ours
        if waited == 0 and time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                if pid < 0:
                    os.killpg(-pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        elif waited == 0:
            time.sleep(0.02)
