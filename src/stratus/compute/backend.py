"""The compute seam: start, watch, stop and re-adopt model replicas.

A backend runs `stratus.serving.replica` processes somewhere; the controller only sees
`ReplicaHandle`s and `ReplicaStatus`es, so a typed fake can stand in for it in unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol


class LaunchSpec(Protocol):
    """What a backend needs of a replica's spec: where the replica will listen, and the spec
    itself, to hand over. `stratus.serving.replica.ReplicaSpec` is one; compute stays below
    serving and never imports it."""

    @property
    def socket(self) -> Path: ...

    def model_dump_json(self, *, indent: int | None = None) -> str: ...


class ReplicaState(StrEnum):
    """What a backend observes of a replica."""

    starting = "starting"
    ready = "ready"
    exited = "exited"


@dataclass(frozen=True)
class ReplicaHandle:
    """One replica a backend started (or re-adopted); all the backend needs to find it again."""

    replica_id: str
    pid: int
    socket: Path
    log_path: Path
    started_at: float
    process_start_ticks: int | None


@dataclass(frozen=True)
class ReplicaStatus:
    """An observation of a replica; `detail` holds the last log lines once it has exited."""

    state: ReplicaState
    exit_code: int | None = None
    detail: str = ""


class ComputeBackend(Protocol):
    """Runs model replicas. Every call from the control plane goes through one instance."""

    name: str

    @property
    def supports_adoption(self) -> bool:
        """Whether replicas outlive the control plane and `running()` can find them again."""
        ...

    def start_replica(self, replica_id: str, spec: LaunchSpec) -> ReplicaHandle:
        """Start a replica and return at once; it loads its model in the background.

        Args:
            replica_id: a unique, file-name-safe id chosen by the controller.
            spec: what to serve and where to listen.

        Returns:
            The handle to pass to `status` and `stop_replica`.
        """
        ...

    def status(self, handle: ReplicaHandle) -> ReplicaStatus:
        """Observe a replica without changing it.

        Args:
            handle: a handle from `start_replica` or `running`.

        Returns:
            `ready` when its socket accepts and a HELLO frame arrives within a short timeout;
            `exited` when the process is gone (with its exit code when this backend can know
            it, and the tail of its log); otherwise `starting`.
        """
        ...

    def stop_replica(self, handle: ReplicaHandle, grace_seconds: float = 10.0) -> int | None:
        """Stop a replica: SIGTERM, wait up to `grace_seconds`, then SIGKILL. Idempotent.

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
        """The replicas this backend's state records whose process is still the same and alive.

        Used to re-adopt replicas after a control-plane restart; records of dead replicas
        are dropped.
        """
        ...

    def close(self) -> None:
        """Release the backend's own resources. Replicas keep running."""
        ...
