"""What the compute contract suite needs of a backend, besides the `ComputeBackend` Protocol:
a `Kit` per backend (`conftest.py` lists them), the model folders and job programs the tests
start, and waiting helpers that only use the Protocol and the wire client.

A kit says how to make a control plane's backend (again, after a restart), how to kill a control
plane with SIGKILL once it has started things, and lets a fake play the replicas and jobs that
real backends run by themselves.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from stratus.compute.backend import (
    ComputeBackend,
    JobHandle,
    JobLaunch,
    JobState,
    JobStatus,
    ReplicaHandle,
    ReplicaState,
    ReplicaStatus,
)
from stratus.compute.limits import Resources
from stratus.serving.connections import ReplicaConnection
from stratus.serving.replica import ReplicaSpec
from stratus.testing import wait_for

T = TypeVar("T")

SECRET = "contract-secret-" + "s" * 16
TIMEOUT = 120.0  # seconds a replica may take to load, on a busy machine

# The replica behaviours the suite needs, each a model folder (built in conftest.py):
# (flavor, trusted) by folder name.
BEHAVIOURS = {
    "serves": ("sklearn", False),  # a tiny LogisticRegression
    "broken": ("sklearn", False),  # an untrusted pickle: the replica exits 3, saying why
    "stubborn": ("python", True),  # blocks SIGTERM as it loads: only a forced stop ends it
}

# The job programs the suite needs, by name: each prints, then exits or waits to be stopped.
PROGRAMS = {
    "exits": "print('step 1'); print('step 2', flush=True); raise SystemExit(3)",
    "runs": "import time; print('started', flush=True); time.sleep(600)",
    "stubborn": (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('started', flush=True); time.sleep(600)"
    ),
}


class Kit(Protocol):
    """How the contract suite drives one backend."""

    name: str
    exit_codes: bool  # whether it reports the exit codes of what it started itself

    def backend(self) -> ComputeBackend:
        """A control plane's backend: a new one at each call, over the same state (what a
        restarted control plane makes)."""
        ...

    def settle(self) -> None:
        """Let replicas and jobs act by themselves: a fake plays them by what they were
        started with; real ones need nothing."""
        ...

    def start_and_kill_control_plane(
        self, replicas: Mapping[str, ReplicaSpec], jobs: Sequence[JobLaunch]
    ) -> None:
        """Start these from a control plane of their own, wait until the replicas are ready,
        then kill that control plane with SIGKILL (nothing of it gets to clean up)."""
        ...

    def close(self) -> None:
        """Stop whatever the test left running, and what the kit itself started."""
        ...


@dataclass(frozen=True)
class Models:
    """A folder holding one model folder per behaviour of `BEHAVIOURS`."""

    folder: Path

    def spec(self, behaviour: str, secret: str = SECRET) -> ReplicaSpec:
        flavor, trusted = BEHAVIOURS[behaviour]
        return ReplicaSpec(
            model_dir=self.folder / behaviour,
            flavor=flavor,
            trusted=trusted,
            model_name=behaviour,
            model_version=1,
            secret=secret,
        )


def behaviour_of(spec: ReplicaSpec) -> str:
    assert spec.model_dir is not None
    return spec.model_dir.name


def job_launch(job_id: str, program: str, cwd: Path) -> JobLaunch:
    return JobLaunch(
        job_id=job_id,
        argv=[sys.executable, "-c", PROGRAMS[program]],
        env={},
        cwd=cwd,
        resources=Resources(vcpus=0.5, memory_bytes=512 << 20),
    )


def program_of(launch: JobLaunch) -> str:
    return next(name for name, code in PROGRAMS.items() if launch.argv[-1] == code)


# --- waiting, through the Protocol only


def wait_replica(
    kit: Kit, backend: ComputeBackend, handle: ReplicaHandle, state: ReplicaState
) -> ReplicaStatus:
    """Until the replica is in `state`; fails at once if it exits on the way to another."""

    def reached() -> ReplicaStatus | None:
        kit.settle()
        status = backend.status(handle)
        if status.state is not state and status.state is ReplicaState.exited:
            raise AssertionError(f"replica {handle.replica_id} exited: {status.detail}")
        return status if status.state is state else None

    found: ReplicaStatus = wait_for(
        f"replica {handle.replica_id} to be {state}", reached, TIMEOUT, interval=0.05
    )
    return found


def wait_job(kit: Kit, backend: ComputeBackend, handle: JobHandle) -> JobStatus:
    """Until the job has exited."""

    def exited() -> JobStatus | None:
        kit.settle()
        status = backend.job_status(handle)
        return status if status.state is JobState.exited else None

    found: JobStatus = wait_for(f"job {handle.job_id} to exit", exited, TIMEOUT, interval=0.05)
    return found


def wait_job_log(kit: Kit, backend: ComputeBackend, handle: JobHandle, text: bytes) -> None:
    def written() -> bool:
        kit.settle()
        return text in backend.read_job_log(handle)

    wait_for(f"job {handle.job_id} to write {text!r}", written, TIMEOUT, interval=0.05)


def greet(address: str, secret: str) -> dict[str, Any]:
    """Open a gateway connection as the endpoint controller does; the replica's HELLO."""

    async def hello() -> dict[str, Any]:
        connection = await ReplicaConnection.open(address, secret)
        await connection.close()
        return connection.hello

    return asyncio.run(hello())


def kill_a_control_plane(
    state_dir: Path,
    program: str,
    config: BaseModel,
    replicas: Mapping[str, ReplicaSpec],
    jobs: Sequence[JobLaunch],
    started: Callable[[list[str]], T | None],
    env: Mapping[str, str] | None = None,
) -> T:
    """Run `program` (`python -c`) as a control plane that starts `replicas` and `jobs` with
    a backend of `config`, and SIGKILL it once `started(its output lines)` says it has started
    them all; returns what `started` said."""
    asked = state_dir / "control-plane.json"
    asked.write_text(
        json.dumps(
            {
                "config": config.model_dump(mode="json"),
                "replicas": {i: s.model_dump(mode="json") for i, s in replicas.items()},
                "jobs": [{**asdict(j), "cwd": str(j.cwd)} for j in jobs],
            }
        )
    )
    out = state_dir / "control-plane.out"
    # what it leaves running may hold its stdout (a fork server): a file, never a pipe
    with open(out, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", program, str(asked)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:

        def reported() -> T | None:
            if process.poll() is not None:
                raise AssertionError(f"the control plane exited:\n{out.read_text()}")
            return started(out.read_text().splitlines())

        return wait_for("the control plane to start everything", reported, 180, interval=0.1)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
