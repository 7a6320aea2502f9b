"""What runs on a Ray node for the Ray compute backend (`ray_backend.py`), which makes this class
its actor: one replica or job process, started when the actor is created, with its log on the
node. Nothing here imports `ray`; the node tells the actor where it runs.

A replica runs `_REPLICA_PROGRAM` (the replica program, listening on the node's address, which
writes the address it took to a file once it accepts connections); a job runs its argv through
`_JOB_PROGRAM`, which bounds its memory. Each is a process group of its own in the node's
session, so it goes with its node.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stratus.compute import node_forker
from stratus.compute.addresses import tcp_address
from stratus.compute.processes import group_members, tail_lines, write_atomic
from stratus.compute.rotating_logs import redirect_output, remove_logs

# The replica program, named (not imported): compute sits below serving in the layers.
REPLICA_MODULE = "stratus.serving.replica"
KILL_WAIT_SECONDS = 5.0


def run_replica(argv: list[str]) -> int:
    """The replica program on a node: route the output through a size-capped log writer, then
    run the replica (`stratus.serving.replica.main`), listening on the node's address (port 0:
    any free one) and writing the address taken to a file once it accepts connections. Run in
    a process forked by the node's fork server (`node_forker.py`), or in a new Python
    (`_REPLICA_PROGRAM`)."""
    import importlib

    module, spec_path, host, cache_dir, ready_path, log_path, max_bytes, backups = argv
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # as a Ray worker leaves them
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    redirect_output(Path(log_path), int(max_bytes), int(backups))
    replica_args = ["--spec", spec_path, "--address", tcp_address(host, 0)]
    replica_args += ["--cache-dir", cache_dir, "--ready-file", ready_path]
    code: int = importlib.import_module(module).main(replica_args)
    return code


# A replica in a new Python, when the node's fork server is not up (yet).
_REPLICA_PROGRAM = (
    "import sys; from stratus.compute.ray_node import run_replica; "
    "sys.exit(run_replica(sys.argv[1:]))"
)

# Run on the node as `python -I -S -c` for a job: undo what a Ray worker set on its signals,
# bound the memory of each process, change to the job's folder and exec its argv (same pid).
_JOB_PROGRAM = """\
import os, signal, sys
memory, cwd = sys.argv[1:3]
argv = sys.argv[4:]
try:
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if memory:
        import resource
        hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
        limit = int(memory) if hard == resource.RLIM_INFINITY else min(int(memory), hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    os.chdir(cwd)
    os.execvp(argv[0], argv)
except Exception as exc:
    sys.stderr.write(f"stratus: cannot start the job {argv!r}: {exc}\\n")
    sys.stderr.flush()
    os._exit(127)
"""


def namespace_folder(node_dir: str, namespace: str) -> Path:
    """A namespace's folder on a node."""
    root = Path(node_dir) if node_dir else Path(tempfile.gettempdir()) / "stratus-ray"
    return root / namespace


def fork_server_folder(spaces: Path, node_id: str) -> Path:
    """The folder of the fork server of one node for a namespace (its pid file and log), made
    if missing. One per Ray node, also where nodes share a disk (or, in tests, a machine): a
    server goes with its node and must not take along the replicas of another."""
    folder = spaces / "forkers" / node_id[:16]
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


def start_fork_server(
    node_dir: str, namespace: str, node_id: str, idle_seconds: float, preload: list[str]
) -> None:
    """Start the fork server of this node for the namespace, unless one runs."""
    folder = fork_server_folder(namespace_folder(node_dir, namespace), node_id)
    node_forker.start(folder, idle_seconds, preload, watch=os.getppid())  # a Ray worker's: raylet


class NodeProcess:
    """The actor: one replica or job process on this node, started at creation (so an actor
    placed after its control plane died still starts it), its log, and what it answers."""

    def __init__(
        self,
        where: tuple[str, str],  # the node's address and Ray node id
        kind: str,
        ident: str,
        instance: str,
        started_at: float,
        namespace: str,
        node_dir: str,
        launch: dict[str, Any],
    ) -> None:
        self.kind, self.ident, self.instance, self.started_at = kind, ident, instance, started_at
        self.node, self.node_id = where
        self.spaces = namespace_folder(node_dir, namespace)
        self.root = self.spaces.parent
        self.folder = self.spaces / f"{kind}s" / ident
        self.forked = False  # by the node's fork server
        self.log_path = self.spaces / f"{kind}s" / f"{ident}.log"
        self.process: subprocess.Popen[bytes] | node_forker.ForkedReplica | None = None
        self.reaped = False  # what the process left in its group is gone too
        self.error = ""
        try:
            if kind == "replica":
                self._start_replica(**launch)
            else:
                self._start_job(**launch)
        except (OSError, ValueError) as exc:
            self.error = f"cannot start on Ray node {self.node}: {exc}"

    def _start_replica(
        self,
        spec: str,
        cache_dir: str,
        max_bytes: int,
        backups: int,
        preload: list[str] | None = None,
        fork_idle_seconds: float = 0.0,
    ) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(mode=0o700, parents=True)
        spec_path = self.folder / "spec.json"
        write_atomic(spec_path, spec.encode())  # it holds the secret: this user's only
        remove_logs(self.log_path)
        cache = cache_dir or str(self.root / "artifacts")
        args = [REPLICA_MODULE, str(spec_path), self.node, cache, str(self.folder / "address")]
        args += [str(self.log_path), str(max_bytes), str(backups)]
        if fork_idle_seconds > 0:
            # Fork it from the node's fork server when one is up; else start one for the next
            # replicas (it takes seconds to import what it preloads) and spawn this one.
            try:
                forker = fork_server_folder(self.spaces, self.node_id)
                server = node_forker.running(forker)
                if server is not None:
                    self.process = node_forker.ForkedReplica(server, args, self.folder)
                    self.forked = True
                    return
                node_forker.start(forker, fork_idle_seconds, preload or [], watch=os.getppid())
            except OSError as exc:
                note = f"stratus: not forked by the node's fork server ({exc}): spawned\n"
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
                with open(os.open(self.log_path, flags, 0o600), "wb") as out:
                    out.write(note.encode())
        self._spawn([sys.executable, "-c", _REPLICA_PROGRAM, *args], dict(os.environ))

    def _start_job(
        self,
        argv: list[str],
        env: dict[str, str],
        files: dict[str, tuple[bytes, int]],
        memory: int,
        cwd: str,
    ) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(mode=0o700, parents=True)
        for name, (data, mode) in files.items():
            path = self.folder / name
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ValueError(f"a job file outside its folder: {name}")
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(
                os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode & 0o777), "wb"
            ) as f:
                f.write(data)
        # paths into the control plane's folder of the job name its copy here
        moved = [
            str(self.folder) + arg[len(cwd) :] if arg == cwd or arg.startswith(cwd + "/") else arg
            for arg in argv
        ]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
        environment.update(env)
        program = [sys.executable, "-I", "-S", "-c", _JOB_PROGRAM, str(memory or "")]
        self._spawn([*program, str(self.folder), "--", *moved], environment, truncate=True)

    def _spawn(self, args: list[str], env: dict[str, str], truncate: bool = False) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        with open(os.open(self.log_path, flags, 0o600), "wb") as out:
            # its own process group (to signal it with what it starts), in the node's session
            # (so it goes with its node)
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, cwd=self.folder, process_group=0,
            )  # fmt: skip

    def _exit_code(self) -> int | None:
        """The process's exit code once it and the rest of its group (a replica's log writer,
        a job's leftovers, killed) are gone."""
        process = self.process
        if process is None or process.poll() is None:
            return None
        if not self.reaped:
            if self.kind == "job":
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
            self._wait_group_gone(KILL_WAIT_SECONDS)
            self.reaped = True
        return process.returncode

    def _wait_group_gone(self, seconds: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while group_members(self.process.pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def info(self) -> dict[str, Any]:
        code = self._exit_code()
        address = ""
        with contextlib.suppress(OSError):
            address = (self.folder / "address").read_text().strip()
        return {
            "kind": self.kind,
            "id": self.ident,
            "instance": self.instance,
            "started_at": self.started_at,
            "node": self.node,
            "node_id": self.node_id,
            "pid": None if self.process is None else self.process.pid,
            "running": self.process is not None and code is None,
            "exit_code": code,
            "address": address if code is None else "",
            "error": self.error,
            "forked": self.forked,
            "log_size": self._log_size(),
        }

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def tail(self, lines: int) -> list[str]:
        found = tail_lines(self.log_path, lines)
        return [*found, self.error][-lines:] if self.error else found

    def read(self, offset: int, limit: int) -> bytes:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read(limit)
        except FileNotFoundError:
            return b""

    def stop(self, grace: float) -> int | None:
        """SIGTERM to the process group, up to `grace` seconds for it to exit (a job's whole
        group; a replica's log writer ignores SIGTERM and ends with the replica's output), then
        SIGKILL (to a job's group; to a replica's process)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if self.kind == "replica" and process.poll() is None:
                    os.kill(process.pid, signal.SIGKILL)
                elif self.kind == "job":
                    if not self._wait_group_gone(max(0.0, deadline - time.monotonic())):
                        os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(KILL_WAIT_SECONDS)
        return self._exit_code()

    def clean_up(self) -> None:
        """Remove the process's folder and log (before the actor is killed)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        remove_logs(self.log_path)


def folder_files(folder: Path, cap: int) -> dict[str, tuple[bytes, int]]:
    """The regular files under `folder` (relative path -> bytes and mode), `cap` bytes at most:
    a job's folder on the control plane, read there to be written on the job's node."""
    files: dict[str, tuple[bytes, int]] = {}
    total = 0
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        stat = path.stat()
        total += stat.st_size
        if total > cap:
            raise ValueError(
                f"the job's folder {folder} holds more than {cap / 2**20:g} MiB; the Ray "
                "backend sends at most that to the job's node (max_job_files_bytes)"
            )
        files[path.relative_to(folder).as_posix()] = (path.read_bytes(), stat.st_mode)
    return files
