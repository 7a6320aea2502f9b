"""The compute seam: start, watch, stop and re-adopt model replicas and training jobs.

A backend runs `stratus.serving.replica` processes and job processes (with enforced resource
limits) somewhere; the controllers only see handles and statuses, so a typed fake can stand in
for it in unit tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, Self

from stratus.compute.limits import Resources

# What replica and job ids look like: safe as file names.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class LaunchSpec(Protocol):
    """What a backend needs of a replica's spec: the address it will listen on (empty until the
    backend chooses one, which it sets with `model_copy`), and the spec itself, to hand over.
    `stratus.serving.replica.ReplicaSpec` is one; compute stays below serving and never
    imports it."""

    @property
    def address(self) -> str: ...

    @property
    def cache_dir(self) -> Path | None:
        """Where the replica keeps the artifacts it fetches on its node (the backend sets it)."""
        ...

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> Self: ...

    def model_dump_json(self, *, indent: int | None = None) -> str: ...


class ReplicaState(StrEnum):
    """What a backend observes of a replica."""

    starting = "starting"
    ready = "ready"
    exited = "exited"


@dataclass(frozen=True)
class ReplicaHandle:
    """One replica a backend started (or re-adopted).

    Backends subclass it with what they need to find the replica again (a local process's pid
    and start ticks, a Ray actor's name); code above `compute` reads only these fields and
    `details()`.
    """

    replica_id: str
    address: str  # where it listens (`addresses.py`); empty until the backend knows
    node: str  # where it runs: a host name, a Ray node's address
    started_at: float

    def details(self) -> dict[str, str | int]:
        """What this backend can show of the replica besides the common fields (the local
        backend's pid)."""
        return {}


@dataclass(frozen=True)
class ReplicaStatus:
    """An observation of a replica; `detail` holds the last log lines once it has exited, and
    `address` where to dial it once it is ready."""

    state: ReplicaState
    exit_code: int | None = None
    detail: str = ""
    address: str = ""


@dataclass(frozen=True)
class JobLaunch:
    """What to run as a job, and with what limits."""

    job_id: str  # file-name-safe (`SAFE_ID`), unique among the backend's jobs
    argv: list[str]
    env: dict[str, str]  # added to the control plane's environment minus its STRATUS_* variables
    cwd: Path
    resources: Resources


@dataclass(frozen=True)
class JobHandle:
    """One job a backend started (or re-adopted). Backends subclass it with what they need to
    find the job again; `ComputeBackend.job_record` and `job_from_record` turn it into JSON for
    the database and back."""

    job_id: str
    node: str
    started_at: float
    enforcement: str  # how its limits are enforced: "cgroup-v2", "rlimit+affinity", "ray", ...

    def details(self) -> dict[str, str | int]:
        return {}


class JobState(StrEnum):
    """What a backend observes of a job."""

    running = "running"
    exited = "exited"


@dataclass(frozen=True)
class JobStatus:
    """An observation of a job; `detail` holds the last log lines once it has exited."""

    state: JobState
    exit_code: int | None = None  # negative: killed by that signal
    oom_killed: bool = False
    detail: str = ""
    # it did not end by itself: the machine it ran on was lost (queued again, like a preemption)
    node_lost: bool = False


class ComputeBackend(Protocol):
    """Runs model replicas and training jobs. Every call from the control plane goes through
    one instance."""

    name: str

    @property
    def supports_adoption(self) -> bool:
        """Whether replicas outlive the control plane and `running()` can find them again."""
        ...

    @property
    def replicas_on_network(self) -> bool:
        """Whether replicas listen on TCP (other machines reach them over a network) rather
        than on unix sockets of this machine: the controller then gives each one, in its
        spec, a certificate to serve mutual TLS with."""
        ...

    def start_replica(self, replica_id: str, spec: LaunchSpec) -> ReplicaHandle:
        """Start a replica and return at once; it loads its model in the background.

        Args:
            replica_id: a unique, file-name-safe id chosen by the controller.
            spec: what to serve; the backend sets where it listens.

        Returns:
            The handle to pass to `status` and `stop_replica`.
        """
        ...

    def status(self, handle: ReplicaHandle) -> ReplicaStatus:
        """Observe a replica without changing it.

        Args:
            handle: a handle from `start_replica` or `running`.

        Returns:
            `ready`, with the address to dial, once the replica has loaded its model and
            listens (the gateway then connects with the replica's secret, which proves it);
            `exited` when it is gone (with its exit code when this backend can know it, and
            the tail of its log); otherwise `starting`.
        """
        ...

    def stop_replica(self, handle: ReplicaHandle, grace_seconds: float = 10.0) -> int | None:
        """Stop a replica: ask it to stop (it answers what it holds), wait up to
        `grace_seconds`, then kill it. Idempotent.

        Args:
            handle: the replica to stop.
            grace_seconds: how long in-flight requests get to finish.

        Returns:
            The exit code when known (negative: killed by that signal), else None.
        """
        ...

    def prepare(self) -> None:
        """Get ready to start replicas fast (a local backend warms its fork server). Optional
        work done once, in the background, when the control plane starts."""
        ...

    def logs(self, handle: ReplicaHandle, lines: int = 100) -> list[str]:
        """The last `lines` lines a replica wrote (stdout and stderr).

        Args:
            handle: the replica.
            lines: how many lines at most.

        Returns:
            The lines, oldest first; empty when the replica left no log.
        """
        ...

    def running(self) -> list[ReplicaHandle]:
        """The replicas this backend runs for this control plane that are still alive.

        Used to re-adopt replicas after a control-plane restart; records of dead replicas
        are dropped.
        """
        ...

    # --- jobs

    def capacity(self) -> Resources:
        """What all the jobs on this backend may use together.

        Returns:
            The vCPUs, memory and GPUs jobs may take in all; a scheduler keeps the sum of the
            running jobs' resources within it.
        """
        ...

    def start_job(self, launch: JobLaunch) -> JobHandle:
        """Start a job process under its resource limits and return at once.

        The job runs in its own process group with stdin from /dev/null; its stdout and stderr
        go to one log. It gets the control plane's environment without the STRATUS_* variables,
        plus `launch.env`.

        Args:
            launch: what to run, where, and with what resources.

        Returns:
            The handle to pass to the other job methods; `enforcement` says how the limits are
            enforced.

        Raises:
            ValueError: a bad job id, an empty argv or a missing `cwd`, or a job of this id
                still running.
            OSError: the process could not be started.
        """
        ...

    def job_status(self, handle: JobHandle) -> JobStatus:
        """Observe a job without changing it (beyond reaping it when it has exited).

        Args:
            handle: a handle from `start_job` or `running_jobs`.

        Returns:
            `running` while its process is alive; else `exited`, with the exit code when this
            backend can know it (not for a job re-adopted after a restart), whether it died of
            its memory limit, and the tail of its log.
        """
        ...

    def stop_job(self, handle: JobHandle, grace_seconds: float) -> int | None:
        """Stop a job: SIGTERM to its process group, wait up to `grace_seconds` for the group to
        exit, then SIGKILL the group. Idempotent; signals nothing once the job is gone.

        Args:
            handle: the job to stop.
            grace_seconds: how long the job gets to save a checkpoint and exit.

        Returns:
            The exit code when known (negative: killed by that signal), else None.
        """
        ...

    def read_job_log(self, handle: JobHandle, offset: int = 0, limit: int = 1 << 20) -> bytes:
        """Read a job's log (stdout and stderr together), running or exited.

        Args:
            handle: the job.
            offset: the byte to start at.
            limit: how many bytes at most.

        Returns:
            Up to `limit` bytes from `offset`; empty at the end of the log, or when there is none.
        """
        ...

    def job_record(self, handle: JobHandle) -> dict[str, Any]:
        """The handle as JSON-able data, for the job's row in the database."""
        ...

    def job_from_record(self, record: Mapping[str, Any]) -> JobHandle:
        """A handle from `job_record`'s data (also from what older versions recorded).

        Raises:
            ValueError: the record is not one of this backend's.
        """
        ...

    def running_jobs(self) -> list[JobHandle]:
        """The jobs this backend runs for this control plane that are still alive.

        Used to re-adopt jobs after a control-plane restart; records of dead jobs are dropped
        (their logs stay until `release_job`).
        """
        ...

    def release_job(self, handle: JobHandle) -> None:
        """Forget a job that has exited: remove its record, its log and its cgroup.

        Args:
            handle: the job, once `job_status` reports it exited.

        Raises:
            ValueError: the job is still running.
        """
        ...

    def close(self) -> None:
        """Release the backend's own resources. Replicas and jobs keep running."""
        ...
