"""Training jobs as local processes under enforced resource limits (the job half of
`LocalBackend`).

A job is spawned fresh with posix_spawn (thread-safe in the multithreaded control plane) as a
new session, so its pid is its process group; the spawned program is a few lines of Python
that joins the job's cgroup or sets its rlimit and CPU affinity (`compute.limits`), changes to
the job's folder and execs the job's argv: the same process, so its pid and start ticks stay
those recorded. State lives in `state_dir/jobs/`: an atomically written `<id>.json` record and
`<id>.log` (stdout and stderr).

Exit codes are known for jobs this process started (it reaps them); a job re-adopted after a
control-plane restart is not our child, so its exit code is None. When a job's main process
exits, whatever it left running in its process group is killed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratus.compute import limits
from stratus.compute.backend import SAFE_ID, JobHandle, JobLaunch, JobState, JobStatus
from stratus.compute.limits import Resources
from stratus.compute.processes import (
    group_members,
    proc_stat,
    process_start_ticks,
    tail,
    write_atomic,
)

log = logging.getLogger("stratus.compute.local")

POLL_SECONDS = 0.02
KILL_WAIT_SECONDS = 5.0
EXIT_CODE_WAIT_SECONDS = 2.0
_DEFAULT_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)

# Run by `python -I -S -c` as the job's process: apply the limits, then exec the job's argv.
# argv: cgroup.procs path, RLIMIT_DATA bytes, CPUs ("0,2"), cwd, "--", the job's argv
# (an empty string: no such limit). Failing to apply a limit fails the job (exit 127).
_EXEC_UNDER_LIMITS = """\
import os, signal, sys
procs, memory, cpus, cwd = sys.argv[1:5]
argv = sys.argv[6:]
try:
    for name in ("SIGPIPE", "SIGXFSZ"):  # Python ignores them; ignored signals survive exec
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    if procs:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    if memory:
        import resource
        hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
        limit = int(memory) if hard == resource.RLIM_INFINITY else min(int(memory), hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    if cpus:
        os.sched_setaffinity(0, [int(cpu) for cpu in cpus.split(",")])
    os.chdir(cwd)
    os.execvp(argv[0], argv)
except Exception as exc:
    sys.stderr.write(f"stratus: cannot start the job {argv!r}: {exc}\\n")
    sys.stderr.flush()
    os._exit(127)
"""


@dataclass(frozen=True)
class LocalJobHandle(JobHandle):
    """A job process on this machine: its pid (its process group's id too), the /proc start
    ticks that tell it from a later process given the same pid, its log and its cgroup."""

    pid: int
    log_path: Path
    process_start_ticks: int | None
    cgroup: str | None = None

    def details(self) -> dict[str, str | int]:
        return {"pid": self.pid}


def _job(handle: JobHandle) -> LocalJobHandle:
    if not isinstance(handle, LocalJobHandle):
        raise ValueError(f"job {handle.job_id} is not one of the local backend's")
    return handle


def machine_memory_bytes() -> int:
    """MemTotal of /proc/meminfo."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise OSError("no MemTotal in /proc/meminfo")


def job_environment(extra: dict[str, str]) -> dict[str, str]:
    """The control plane's environment without its own STRATUS_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    env.update(extra)
    return env


class LocalJobs:
    """Job processes on this machine; they outlive the control plane.

    Thread-safe: the job controller observes jobs from one thread and stops them from others.
    """

    def __init__(self, state_dir: Path, capacity: Resources, prefer_cgroup: bool = True) -> None:
        self.dir = state_dir / "jobs"
        self._capacity = capacity
        self._prefer_cgroup = prefer_cgroup
        self._cgroup_root: Path | None = None
        self._cgroup_checked = False
        self._children: set[int] = set()  # pids we spawned and have not reaped yet
        self._exit_codes: dict[int, int] = {}  # pid -> exit code of a job we reaped
        self._lock = threading.RLock()
        self.node = socket.gethostname()

    def capacity(self) -> Resources:
        return self._capacity

    # -- starting

    def _cgroup_v2_root(self) -> Path | None:
        if self._prefer_cgroup and not self._cgroup_checked:
            self._cgroup_root = limits.cgroup_v2_root()
            self._cgroup_checked = True
        return self._cgroup_root if self._prefer_cgroup else None

    def _busy_cpus(self) -> Counter[int]:
        """How many of our running jobs are pinned to each CPU (as their records say: a job
        just started may not have applied its affinity yet)."""
        busy: Counter[int] = Counter()
        for handle in self.running_jobs():
            with contextlib.suppress(OSError, ValueError, TypeError):
                record = json.loads(self._record_path(handle.job_id).read_bytes())
                busy.update(int(cpu) for cpu in record.get("cpus") or [])
        return busy

    def start_job(self, launch: JobLaunch) -> LocalJobHandle:
        if not SAFE_ID.fullmatch(launch.job_id):
            raise ValueError(f"a job id must be a file-name-safe name, not {launch.job_id!r}")
        if not launch.argv:
            raise ValueError(f"job {launch.job_id}: nothing to run (an empty argv)")
        if not launch.cwd.is_dir():
            raise ValueError(f"job {launch.job_id}: no folder {launch.cwd} to run in")
        self.dir.mkdir(parents=True, exist_ok=True)
        record = self._record_path(launch.job_id)
        previous = self._read_record(record) if record.exists() else None
        if previous is not None and self._alive(previous):
            raise ValueError(f"job {launch.job_id} is already running as pid {previous.pid}")
        with self._lock:
            plan = limits.plan_limits(
                launch.job_id, launch.resources, self._cgroup_v2_root(), self._busy_cpus()
            )
            log_path = self.dir / f"{launch.job_id}.log"
            args = [
                sys.executable, "-I", "-S", "-c", _EXEC_UNDER_LIMITS,
                str(plan.cgroup / "cgroup.procs") if plan.cgroup else "",
                str(plan.memory_rlimit) if plan.memory_rlimit else "",
                ",".join(map(str, plan.cpus)) if plan.cpus else "",
                str(launch.cwd), "--", *launch.argv,
            ]  # fmt: skip
            started_at = time.time()
            try:
                pid = os.posix_spawn(
                    sys.executable,
                    args,
                    job_environment(launch.env),
                    file_actions=[
                        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                        (
                            os.POSIX_SPAWN_OPEN,
                            1,
                            str(log_path),
                            os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                            0o644,
                        ),
                        (os.POSIX_SPAWN_DUP2, 1, 2),
                    ],
                    setsid=True,  # its own session and process group: pgid == pid
                    setsigmask=(),  # nothing blocked, whatever this thread blocks
                    setsigdef=_DEFAULT_SIGNALS,  # nor ignored (as under nohup)
                )
            except OSError:
                if plan.cgroup is not None:
                    limits.remove_cgroup(plan.cgroup)
                raise
            self._children.add(pid)
            handle = LocalJobHandle(
                job_id=launch.job_id,
                node=self.node,
                pid=pid,
                log_path=log_path,
                started_at=started_at,
                process_start_ticks=process_start_ticks(pid),
                enforcement=plan.enforcement,
                cgroup=str(plan.cgroup) if plan.cgroup else None,
            )
            try:
                write_atomic(record, self._record_bytes(handle, plan.cpus))
            except OSError:
                self.stop_job(handle, 0)
                self.release_job(handle)
                raise
        log.info("started job %s as pid %d (%s)", launch.job_id, pid, plan.enforcement)
        return handle

    # -- records

    def _record_path(self, job_id: str) -> Path:
        return self.dir / f"{job_id}.json"

    def record_of(self, handle: JobHandle) -> dict[str, Any]:
        """A handle as JSON-able data (what the job's database row and its record file hold)."""
        return {**dataclasses.asdict(_job(handle)), "log_path": str(_job(handle).log_path)}

    def handle_from(self, record: Mapping[str, Any]) -> LocalJobHandle:
        """A handle from `record_of`'s data, or from what older versions recorded (no node)."""
        try:
            ticks = record.get("process_start_ticks")
            cgroup = record.get("cgroup")
            return LocalJobHandle(
                job_id=str(record["job_id"]),
                node=str(record.get("node") or self.node),
                started_at=float(record["started_at"]),
                enforcement=str(record["enforcement"]),
                pid=int(record["pid"]),
                log_path=Path(record["log_path"]),
                process_start_ticks=None if ticks is None else int(ticks),
                cgroup=None if cgroup is None else str(cgroup),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a local job's record: {exc}") from None

    def _record_bytes(self, handle: LocalJobHandle, cpus: tuple[int, ...] | None) -> bytes:
        return json.dumps({**self.record_of(handle), "cpus": cpus}).encode()

    def _read_record(self, path: Path) -> LocalJobHandle | None:
        try:
            return self.handle_from(json.loads(path.read_bytes()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring an unreadable job record %s: %s", path, exc)
            return None

    def _remove_record(self, handle: LocalJobHandle) -> None:
        path = self._record_path(handle.job_id)
        current = self._read_record(path) if path.exists() else None
        if current is not None and current.pid == handle.pid:
            path.unlink(missing_ok=True)

    # -- observing

    def _reap(self, pid: int) -> int | None:
        """The exit code of a job we started, once it has exited; None while it runs, or when
        it is not our child. Before reaping, kills what the job left in its process group:
        until the exited leader is reaped its pid, and so the group id, cannot be reused."""
        with self._lock:
            if pid in self._exit_codes:
                return self._exit_codes[pid]
            if pid not in self._children:
                return None
            try:
                exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # reaped elsewhere: its code is lost
                self._children.discard(pid)
                return None
            if exited is None:
                return None
            if pid > 1:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)  # a zombie now: returns at once
            code = os.waitstatus_to_exitcode(status)
            self._children.discard(pid)
            self._exit_codes[pid] = code
            return code

    def _alive(self, handle: LocalJobHandle) -> bool:
        self._reap(handle.pid)
        stat = proc_stat(handle.pid)
        if stat is None or stat[0] in ("Z", "X"):
            return False
        return handle.process_start_ticks is None or stat[3] == handle.process_start_ticks

    def _exit_code(self, handle: LocalJobHandle) -> int | None:
        """The exit code of a job seen dead, waiting a moment for a child of ours: a
        multithreaded process shows as a zombie while its other threads still exit, before
        waitid reports it."""
        deadline = time.monotonic() + EXIT_CODE_WAIT_SECONDS
        while (code := self._reap(handle.pid)) is None and handle.pid in self._children:
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
        return code

    def job_status(self, job: JobHandle) -> JobStatus:
        handle = _job(job)
        if self._alive(handle):
            return JobStatus(JobState.running)
        code = self._exit_code(handle)
        detail = tail(handle.log_path)
        cgroup = Path(handle.cgroup) if handle.cgroup else None
        oom = code != 0 and limits.oom_killed(cgroup, detail)
        return JobStatus(JobState.exited, code, oom, detail)

    def read_job_log(self, job: JobHandle, offset: int = 0, limit: int = 1 << 20) -> bytes:
        handle = _job(job)
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative")
        try:
            with open(handle.log_path, "rb") as f:
                f.seek(offset)
                return f.read(limit)
        except FileNotFoundError:
            return b""

    def running_jobs(self) -> list[LocalJobHandle]:
        if not self.dir.is_dir():
            return []
        alive: list[LocalJobHandle] = []
        for path in sorted(self.dir.glob("*.json")):
            handle = self._read_record(path)
            if handle is None:
                continue
            if self._alive(handle):
                alive.append(handle)
            else:
                log.info("dropping the record of job %s (pid %d is gone)",
                         handle.job_id, handle.pid)  # fmt: skip
                self._exit_code(handle)  # reap it, if it is ours
                path.unlink(missing_ok=True)
        return alive

    # -- stopping

    def _signal_group(self, handle: LocalJobHandle, sig: signal.Signals) -> bool:
        """Signal the job's process group if it is still the job's: while its leader is there
        (alive, or exited but not reaped) with the recorded start ticks, its pid, and so the
        group id, cannot have been reused. False if the job is gone."""
        with self._lock:  # no reaping by another thread between the check and the kill
            stat = proc_stat(handle.pid)
            if stat is None or handle.pid <= 1:
                return False
            if handle.process_start_ticks is not None and stat[3] != handle.process_start_ticks:
                return False
            try:
                os.killpg(handle.pid, sig)
            except (ProcessLookupError, PermissionError):
                return False
            return True

    def _wait_group_gone(self, handle: LocalJobHandle, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while group_members(handle.pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    def stop_job(self, job: JobHandle, grace_seconds: float) -> int | None:
        handle = _job(job)
        if self._signal_group(handle, signal.SIGTERM):
            if not self._wait_group_gone(handle, grace_seconds):
                log.warning("job %s ignored SIGTERM for %.1f s; killing it",
                            handle.job_id, grace_seconds)  # fmt: skip
                # members still there at every poll: the group id was never free to reuse
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if handle.pid > 1:
                        os.killpg(handle.pid, signal.SIGKILL)
                self._wait_group_gone(handle, KILL_WAIT_SECONDS)
        return self._exit_code(handle)

    def release_job(self, job: JobHandle) -> None:
        handle = _job(job)
        if self._alive(handle):
            raise ValueError(f"job {handle.job_id} is still running; stop it first")
        self._exit_code(handle)  # reap it, if it is ours
        self._remove_record(handle)
        handle.log_path.unlink(missing_ok=True)
        if handle.cgroup:
            try:
                limits.remove_cgroup(Path(handle.cgroup))
            except OSError as exc:
                log.warning("cannot remove the cgroup %s of job %s: %s",
                            handle.cgroup, handle.job_id, exc)  # fmt: skip
        with self._lock:
            self._exit_codes.pop(handle.pid, None)
