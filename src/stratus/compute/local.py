"""Run replicas as local processes, forked from a pre-warmed fork server or spawned fresh;
and training jobs as local processes under resource limits (`local_jobs.py`).

State lives in `state_dir/replicas/`: `<id>.spec.json`, an atomically written `<id>.json`
record (pid, socket, log, start ticks) and `<id>.log`, so a restarted control plane can re-adopt
replicas; the recorded /proc start ticks guard against a reused pid. The log is capped in size
and rotated (`rotating_logs.py`); the spec, the log and its backups go with their replica.
Jobs keep theirs in `state_dir/jobs/` the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.process
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from stratus.compute.addresses import parse_address, unix_address
from stratus.compute.backend import (
    SAFE_ID,
    JobHandle,
    JobLaunch,
    JobStatus,
    LaunchSpec,
    ReplicaHandle,
    ReplicaState,
    ReplicaStatus,
)
from stratus.compute.limits import Resources
from stratus.compute.local_jobs import LocalJobHandle, LocalJobs, machine_memory_bytes
from stratus.compute.processes import (
    exit_after,
    group_members,
    proc_stat,
    process_start_ticks,
    tail,
    tail_lines,
    write_atomic,
)
from stratus.compute.rotating_logs import (
    LOG_BACKUPS,
    LOG_MAX_BYTES,
    redirect_output,
    remove_logs,
)
from stratus.core.interrupts import children_ignore_ctrl_c, take_ctrl_c_again

log = logging.getLogger("stratus.compute.local")

REPLICA_ID = SAFE_ID
# The replica program, named (not imported): compute sits below serving in the layers.
REPLICA_MODULE = "stratus.serving.replica"
ALWAYS_PRELOAD = [REPLICA_MODULE]
ROTATING_LOGS = "stratus.compute.rotating_logs"
LOG_WRITER_GRACE = 5.0  # seconds a gone replica's log writer gets to finish


class LocalBackendConfig(BaseModel):
    """Settings of the local compute backend."""

    state_dir: Path
    # where replica sockets live; None: a short folder in the temp dir, named by `state_dir`
    # (unix socket paths are limited to about 100 bytes, so not under a deep home)
    socket_dir: Path | None = None
    # this machine's cache of the artifacts replicas fetch; None: `state_dir/artifacts`
    cache_dir: Path | None = None
    preload: list[str] = Field(default=["numpy", "sklearn", "skops.io", "onnxruntime"])
    fork_server: bool = True
    # what jobs may use in all; None: this machine's (the CPUs this process may run on, MemTotal)
    capacity_vcpus: float | None = Field(default=None, gt=0)
    capacity_memory_gib: float | None = Field(default=None, gt=0)
    # limit jobs with cgroup v2 where usable; False: always rlimits and CPU affinity
    prefer_cgroup: bool = True
    # a replica's log: rotated past this size, keeping this many older files
    log_max_bytes: int = Field(default=LOG_MAX_BYTES, ge=1024)
    log_backups: int = Field(default=LOG_BACKUPS, ge=0, le=20)


@dataclass(frozen=True)
class LocalReplicaHandle(ReplicaHandle):
    """A replica process on this machine: its pid, and the /proc start ticks that tell it from a
    later process given the same pid."""

    pid: int
    log_path: Path
    process_start_ticks: int | None

    @property
    def socket(self) -> Path:
        path = parse_address(self.address).path
        assert path is not None
        return path

    def details(self) -> dict[str, str | int]:
        return {"pid": self.pid}


def _local(handle: ReplicaHandle) -> LocalReplicaHandle:
    if not isinstance(handle, LocalReplicaHandle):
        raise ValueError(f"replica {handle.replica_id} is not one of the local backend's")
    return handle


def _run_replica(spec_path: str, log_path: str, max_bytes: int, backups: int) -> None:
    """The body of a fork-server child: leave the session, log to the rotating file, serve,
    exit."""

    def body() -> int:
        os.setsid()  # signals to the control plane's process group do not reach the replica
        take_ctrl_c_again()  # blocked in the fork server (core/interrupts.py), not here
        redirect_output(Path(log_path), max_bytes, backups)
        code: int = importlib.import_module(REPLICA_MODULE).main(["--spec", spec_path])
        return code

    exit_after(body)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class LocalBackend:
    """Replicas as processes on this machine; they outlive the control plane."""

    name = "local"

    def __init__(self, config: LocalBackendConfig) -> None:
        self.config = config
        self.dir = config.state_dir / "replicas"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._processes: dict[int, Any] = {}  # pid -> multiprocessing Process we started
        self._exit_codes: dict[int, int] = {}  # pid -> exit code of a reaped replica
        self._context: Any = None
        self._jobs = LocalJobs(config.state_dir, self._capacity(), config.prefer_cgroup)
        self.socket_dir = config.socket_dir or Path(tempfile.gettempdir()) / (
            "stratus-" + hashlib.sha256(str(config.state_dir.resolve()).encode()).hexdigest()[:12]
        )
        self.node = socket.gethostname()

    def _capacity(self) -> Resources:
        vcpus = self.config.capacity_vcpus or float(len(os.sched_getaffinity(0)))
        gib = self.config.capacity_memory_gib
        memory = int(gib * 2**30) if gib is not None else machine_memory_bytes()
        return Resources(vcpus=vcpus, memory_bytes=memory)

    @property
    def supports_adoption(self) -> bool:
        return True

    @property
    def replicas_on_network(self) -> bool:
        return False  # unix sockets in a folder of this user's only

    # -- starting

    def prepare(self) -> None:
        if self.config.fork_server:
            self._fork_context()  # starts the fork server, which imports the preload

    def process_context(self) -> Any:
        """The `multiprocessing` context for short-lived helper processes (the registry's load
        checks): the warm fork server when replicas use it, else a fresh spawn."""
        if self.config.fork_server:
            return self._fork_context()
        return multiprocessing.get_context("spawn")

    def _fork_context(self) -> Any:
        if self._context is None:
            context = multiprocessing.get_context("forkserver")
            modules = [m for m in [*ALWAYS_PRELOAD, *self.config.preload] if _importable(m)]
            context.set_forkserver_preload(modules)
            self._context = context
        # Started here rather than by the first Process.start(), with Ctrl-C blocked: the fork
        # server and every process it forks stay deaf to a Ctrl-C meant for `stratus up`.
        with children_ignore_ctrl_c():
            multiprocessing.forkserver.ensure_running()
        return self._context

    def start_replica(self, replica_id: str, spec: LaunchSpec) -> ReplicaHandle:
        if not REPLICA_ID.fullmatch(replica_id):
            raise ValueError(f"a replica id must be a file-name-safe name, not {replica_id!r}")
        spec_path = self.dir / f"{replica_id}.spec.json"
        log_path = self.dir / f"{replica_id}.log"
        self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        socket_path = self.socket_dir / (
            hashlib.sha256(replica_id.encode()).hexdigest()[:16] + ".sock"
        )
        address = unix_address(socket_path)
        cache = self.config.cache_dir or self.config.state_dir / "artifacts"
        spec = spec.model_copy(update={"address": address, "cache_dir": cache})
        write_atomic(spec_path, spec.model_dump_json(indent=2).encode())
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()  # a stale socket would look like a ready replica
        started_at = time.time()
        if self.config.fork_server:
            process = self._fork_context().Process(
                target=_run_replica,
                args=(
                    str(spec_path),
                    str(log_path),
                    self.config.log_max_bytes,
                    self.config.log_backups,
                ),
                name=f"stratus-replica-{replica_id}",
            )
            process.start()
            # multiprocessing joins its children at interpreter exit; replicas must outlive us
            multiprocessing.process._children.discard(process)  # type: ignore[attr-defined]
            pid = int(process.pid)
            self._processes[pid] = process
        else:
            replica = [sys.executable, "-m", REPLICA_MODULE, "--spec", str(spec_path)]
            limits = [str(self.config.log_max_bytes), str(self.config.log_backups)]
            pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-m", ROTATING_LOGS, str(log_path), *limits, *replica],
                dict(os.environ),
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (
                        os.POSIX_SPAWN_OPEN,
                        1,
                        str(log_path),
                        os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                        0o600,
                    ),  # fmt: skip
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                ],
                setsid=True,
            )
        handle = LocalReplicaHandle(
            replica_id=replica_id,
            address=address,
            node=self.node,
            started_at=started_at,
            pid=pid,
            log_path=log_path,
            process_start_ticks=process_start_ticks(pid),
        )
        self._write_record(handle)
        log.info("started replica %s as pid %d", replica_id, pid)
        return handle

    # -- records

    def _record_path(self, replica_id: str) -> Path:
        return self.dir / f"{replica_id}.json"

    def _write_record(self, handle: LocalReplicaHandle) -> None:
        record = {
            "replica_id": handle.replica_id,
            "address": handle.address,
            "node": handle.node,
            "pid": handle.pid,
            "log_path": str(handle.log_path),
            "started_at": handle.started_at,
            "process_start_ticks": handle.process_start_ticks,
        }
        write_atomic(self._record_path(handle.replica_id), json.dumps(record).encode())

    def _read_record(self, path: Path) -> LocalReplicaHandle | None:
        try:
            record: Mapping[str, Any] = json.loads(path.read_bytes())
            # records of older versions hold the socket's path instead of an address
            address = record.get("address") or unix_address(Path(record["socket"]))
            parse_address(address)
            return LocalReplicaHandle(
                replica_id=str(record["replica_id"]),
                address=str(address),
                node=str(record.get("node") or self.node),
                started_at=float(record["started_at"]),
                pid=int(record["pid"]),
                log_path=Path(record["log_path"]),
                process_start_ticks=record.get("process_start_ticks"),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring an unreadable replica record %s: %s", path, exc)
            return None

    def _remove_record(self, handle: LocalReplicaHandle) -> None:
        path = self._record_path(handle.replica_id)
        current = self._read_record(path) if path.exists() else None
        if current is not None and current.pid == handle.pid:
            path.unlink(missing_ok=True)

    # -- observing

    def _reap(self, pid: int, wait: float = 0.0) -> int | None:
        """The exit code of `pid` when this process can learn it (its starter or its parent)."""
        if pid in self._exit_codes:
            return self._exit_codes[pid]
        process = self._processes.get(pid)
        if process is not None:
            process.join(timeout=wait)
            code = process.exitcode
            if code is None:
                return None
            process.close()
            del self._processes[pid]
        else:
            try:
                waited, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child (a fork-server child, or adopted)
                return None
            if waited == 0:
                return None
            code = os.waitstatus_to_exitcode(status)
        self._exit_codes[pid] = int(code)
        return int(code)

    def _alive(self, handle: LocalReplicaHandle) -> bool:
        self._reap(handle.pid)
        stat = proc_stat(handle.pid)
        if stat is None or stat[0] in ("Z", "X"):
            return False
        return handle.process_start_ticks is None or stat[3] == handle.process_start_ticks

    def _exit_code_after_death(self, handle: LocalReplicaHandle) -> int | None:
        """The exit code of a replica seen dead, waiting a moment when it is our child.

        A multithreaded process shows as a zombie ("Z") while its other threads still exit,
        before waitpid can reap it; a fork-server child's exit code arrives through the fork
        server a moment after the process is gone.
        """
        pid = handle.pid
        if pid in self._processes:
            return self._reap(pid, wait=2.0)
        deadline = time.monotonic() + 2.0
        while (code := self._reap(pid)) is None and time.monotonic() < deadline:
            stat = proc_stat(pid)
            if stat is None or stat[1] != os.getpid():
                break  # gone, or somebody else's child: we cannot learn its exit code
            time.sleep(0.01)
        return code

    def status(self, handle: ReplicaHandle) -> ReplicaStatus:
        local = _local(handle)
        if not self._alive(local):
            code = self._exit_code_after_death(local)
            self._wait_log_writer(local)
            self._remove_socket(local)  # a replica killed with SIGKILL leaves its socket
            return ReplicaStatus(ReplicaState.exited, code, tail(local.log_path))
        # the replica renames its socket into place once it listens with its model loaded
        if local.socket.exists():
            return ReplicaStatus(ReplicaState.ready, address=local.address)
        return ReplicaStatus(ReplicaState.starting)

    @staticmethod
    def _remove_socket(handle: LocalReplicaHandle) -> None:
        with contextlib.suppress(FileNotFoundError):
            handle.socket.unlink()

    def logs(self, handle: ReplicaHandle, lines: int = 100) -> list[str]:
        return tail_lines(_local(handle).log_path, lines)

    def running(self) -> list[ReplicaHandle]:
        alive: list[ReplicaHandle] = []
        for path in sorted(self.dir.glob("*.json")):
            if path.name.endswith(".spec.json"):
                continue
            handle = self._read_record(path)
            if handle is None:
                continue
            if self._alive(handle):
                alive.append(handle)
            else:
                log.info("dropping the record of replica %s (pid %d is gone)",
                         handle.replica_id, handle.pid)  # fmt: skip
                path.unlink(missing_ok=True)
                self._remove_socket(handle)
                self._remove_files(handle)
        return alive

    # -- stopping

    def _wait_gone(self, handle: LocalReplicaHandle, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self._alive(handle):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def stop_replica(self, handle: ReplicaHandle, grace_seconds: float = 10.0) -> int | None:
        handle = _local(handle)
        if self._alive(handle):
            with contextlib.suppress(ProcessLookupError):
                os.kill(handle.pid, signal.SIGTERM)
            if not self._wait_gone(handle, grace_seconds):
                log.warning("replica %s ignored SIGTERM for %.1f s; killing it",
                            handle.replica_id, grace_seconds)  # fmt: skip
                if self._alive(handle):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(handle.pid, signal.SIGKILL)
                self._wait_gone(handle, 10.0)
        code = self._exit_code_after_death(handle)
        self._remove_record(handle)
        self._remove_socket(handle)  # left behind when the replica was killed
        self._remove_files(handle)
        return code

    @staticmethod
    def _wait_log_writer(handle: LocalReplicaHandle) -> None:
        """Until the log writer of a replica that is gone (in its process group) has written
        the last of its output, for a few seconds at most."""
        deadline = time.monotonic() + LOG_WRITER_GRACE
        while group_members(handle.pid) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _remove_files(self, handle: LocalReplicaHandle) -> None:
        """The spec, the log and its backups of a replica that is gone, once its log writer
        (in the replica's process group) has drained what it printed last."""
        self._wait_log_writer(handle)
        path = self._record_path(handle.replica_id)
        current = self._read_record(path) if path.exists() else None
        if current is not None and current.pid != handle.pid:
            return  # the id was started again meanwhile: its files are the new replica's
        with contextlib.suppress(FileNotFoundError):
            (self.dir / f"{handle.replica_id}.spec.json").unlink()
        remove_logs(handle.log_path)

    # -- jobs (see local_jobs.py)

    def capacity(self) -> Resources:
        return self._jobs.capacity()

    def start_job(self, launch: JobLaunch) -> JobHandle:
        return self._jobs.start_job(launch)

    def job_status(self, handle: JobHandle) -> JobStatus:
        return self._jobs.job_status(handle)

    def stop_job(self, handle: JobHandle, grace_seconds: float) -> int | None:
        return self._jobs.stop_job(handle, grace_seconds)

    def read_job_log(self, handle: JobHandle, offset: int = 0, limit: int = 1 << 20) -> bytes:
        return self._jobs.read_job_log(handle, offset, limit)

    def job_record(self, handle: JobHandle) -> dict[str, Any]:
        return self._jobs.record_of(handle)

    def job_from_record(self, record: Mapping[str, Any]) -> LocalJobHandle:
        return self._jobs.handle_from(record)

    def running_jobs(self) -> list[JobHandle]:
        return list(self._jobs.running_jobs())

    def release_job(self, handle: JobHandle) -> None:
        self._jobs.release_job(handle)

    def close(self) -> None:
        # replicas and jobs keep running; forget our process objects without waiting for them
        self._processes.clear()
