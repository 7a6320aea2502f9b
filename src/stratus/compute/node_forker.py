"""A fork server for the replicas of one Ray node (`ray_node.py`).

Starting a replica as a new Python costs seconds before it loads its model: the interpreter,
then numpy, scikit-learn, skops and the rest. The local backend forks replicas from a server
that imported those once (`multiprocessing`'s fork server); this is the same for a Ray node,
where each replica is the child of its own Ray actor: one server per node and namespace, which
the actors ask over a Unix socket.

Run as `python -m stratus.compute.node_forker FOLDER IDLE_SECONDS WATCH [PRELOAD...]`. It
detaches at once (a double fork: no Ray worker is its parent, so none takes it along when that
worker exits), writes its pid to `FOLDER/forker.pid`, imports PRELOAD, and listens on the
abstract Unix socket named after FOLDER (no file: no limit on FOLDER's length, nothing left
behind), serving only processes of its own user (checked on each connection). It exits after
IDLE_SECONDS with no client and no replica; once idle, if its pid file is gone (its folder
removed); and at once, killing its replicas, when the process WATCH names (`PID:START_TICKS`,
the node's raylet; empty: none) is gone, so a stopped or crashed Ray node leaves nothing
behind. It runs nothing but the replica program (`ray_node.run_replica`), with the arguments a
client sends.

One connection per replica, JSON lines. The client sends `{"args": [...], "cwd": "..."}`; the
server answers `{"pid": N}` once the replica is forked (in a process group of its own), then
`{"exit": CODE}` (negative: killed by that signal) when it has exited, and closes. A client that
goes away takes its replica along: its process group is killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from stratus.compute.processes import exit_after, process_start_ticks

LOG_NAME = "forker.log"
PID_NAME = "forker.pid"
MAX_REQUEST_BYTES = 1 << 16
_CREDENTIALS = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid


def address(folder: Path) -> str:
    """The abstract socket name of the fork server of `folder`."""
    digest = hashlib.sha256(str(folder.absolute()).encode()).hexdigest()[:32]
    return f"\0stratus-forker-{digest}"


# --- the client: in a Ray actor ----------------------------------------------------------------


def running(folder: Path) -> str | None:
    """The address of the fork server of `folder` when one answers there."""
    name = address(folder)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(name)
        except OSError:
            return None
    return name


def start(folder: Path, idle_seconds: float, preload: list[str], watch: int | None = None) -> None:
    """Start the fork server of `folder` unless one runs; returns without waiting for it to
    import its preload (it listens once it has). With `watch` (a pid: the node's raylet), the
    server goes, with its replicas, when that process does."""
    with open(os.open(folder / "forker.lock", os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if running(folder) is not None:
            return
        if _recorded_server(folder) is not None:
            return  # one is still importing its preload
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        with open(os.open(folder / LOG_NAME, flags, 0o600), "wb") as out:
            watching = ""
            if watch is not None and (ticks := process_start_ticks(watch)) is not None:
                watching = f"{watch}:{ticks}"
            argv = [str(folder), str(idle_seconds), watching, *preload]
            starter = subprocess.Popen(
                [sys.executable, "-m", __name__, *argv],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=folder, process_group=0,
            )  # fmt: skip
        starter.wait(30)  # it forks the server and exits at once


def _recorded_server(folder: Path) -> int | None:
    """The pid of the server that `folder`'s pid file names, if that process still runs (its
    start time recorded beside its pid tells it from a later process given the same pid)."""
    try:
        pid, ticks = (int(field) for field in (folder / PID_NAME).read_text().split())
    except (OSError, ValueError):
        return None
    return pid if process_start_ticks(pid) == ticks else None


class ForkedReplica:
    """A replica forked by the node's fork server, answering as much of `subprocess.Popen`
    as `NodeProcess` uses: `pid`, `poll`, `wait`, `returncode`."""

    def __init__(self, server: str, args: list[str], cwd: Path, timeout: float = 10.0) -> None:
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._conn.settimeout(timeout)
            self._conn.connect(server)
            self._conn.sendall(json.dumps({"args": args, "cwd": str(cwd)}).encode() + b"\n")
            self._reader = self._conn.makefile("rb")
            answer = json.loads(self._reader.readline() or b"{}")
            if not isinstance(answer.get("pid"), int):
                raise OSError(f"the node's fork server did not start the replica: {answer}")
        except (OSError, ValueError):
            self._close()
            raise
        self.pid: int = answer["pid"]
        self.returncode: int | None = None
        self._done = threading.Event()
        self._conn.settimeout(None)
        threading.Thread(target=self._wait_exit, name=f"forked-{self.pid}", daemon=True).start()

    def _wait_exit(self) -> None:
        code: int | None = None
        with contextlib.suppress(OSError, ValueError):
            line = self._reader.readline()
            if line:
                code = int(json.loads(line)["exit"])
        if code is None:  # the fork server is gone: so is its replica
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            code = -signal.SIGKILL
        self._close()
        self.returncode = code
        self._done.set()

    def _close(self) -> None:
        with contextlib.suppress(AttributeError, OSError):
            self._reader.close()  # else it keeps the socket open
        self._conn.close()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"replica {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode


# --- the server --------------------------------------------------------------------------------


class _Client:
    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""
        self.pid: int | None = None


class _Server:
    def __init__(self, folder: Path, idle_seconds: float, watch: tuple[int, int] | None) -> None:
        self.pid_file = folder / PID_NAME
        self.watch = watch
        self.idle_seconds = idle_seconds
        self.selector = selectors.DefaultSelector()
        self.clients: dict[int, _Client] = {}  # by file descriptor
        self.children: dict[int, _Client | None] = {}  # pid -> its client, while it has one
        self.last_busy = time.monotonic()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_w)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(address(folder))  # EADDRINUSE: another server has the folder

    def listen(self) -> None:
        """Take connections (until now, clients are refused: it is importing its preload)."""
        self.listener.listen(64)
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)

    def run(self) -> None:
        while True:
            if self.watch is not None and process_start_ticks(self.watch[0]) != self.watch[1]:
                print(f"fork server {os.getpid()}: process {self.watch[0]} is gone", flush=True)
                for pid in list(self.children):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
                break
            busy = bool(self.clients or self.children)
            if busy:
                self.last_busy = time.monotonic()
            elif time.monotonic() - self.last_busy >= self.idle_seconds or not self._ours():
                break  # idle, or its folder was removed
            for key, _ in self.selector.select(timeout=1.0):
                if key.fileobj is self.listener:
                    self._accept()
                elif key.fileobj == self.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self.wake_r, 512):
                            pass
                    self._reap()
                elif (client := self.clients.get(key.fd)) is not None:  # not just dropped
                    self._read(client)
            self._reap()
        self._close()

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            conn, _ = self.listener.accept()
            credentials = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
            if _CREDENTIALS.unpack(credentials)[1] != os.getuid():  # another user's process
                conn.close()
                return
            conn.setblocking(False)
            self.clients[conn.fileno()] = _Client(conn)
            self.selector.register(conn, selectors.EVENT_READ)

    def _drop(self, client: _Client) -> None:
        self.clients.pop(client.conn.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(client.conn)
        client.conn.close()

    def _send(self, client: _Client, message: dict[str, Any]) -> None:
        client.conn.setblocking(True)
        client.conn.settimeout(5.0)
        with contextlib.suppress(OSError):
            client.conn.sendall(json.dumps(message).encode() + b"\n")
        client.conn.setblocking(False)

    def _read(self, client: _Client) -> None:
        try:
            data = client.conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client is gone: its replica goes too
            if client.pid is not None and client.pid in self.children:
                self.children[client.pid] = None
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(client.pid, signal.SIGKILL)
            self._drop(client)
            return
        if client.pid is not None:
            return  # nothing more is asked on a replica's connection
        client.buffer += data
        if b"\n" not in client.buffer:
            if len(client.buffer) > MAX_REQUEST_BYTES:
                self._send(client, {"error": "request too long"})
                self._drop(client)
            return
        try:
            request = json.loads(client.buffer.split(b"\n", 1)[0])
            args, cwd = request["args"], request["cwd"]
            if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
                raise ValueError("args must be a list of strings")
            if not isinstance(cwd, str):
                raise ValueError("cwd must be a string")
        except (ValueError, KeyError, TypeError) as exc:
            self._send(client, {"error": f"bad request: {exc}"})
            self._drop(client)
            return
        pid = os.fork()
        if pid == 0:
            self._child(args, cwd)
        with contextlib.suppress(OSError):  # here too: a kill of its group must find it at once
            os.setpgid(pid, pid)
        client.pid = pid
        self.children[pid] = client
        self._send(client, {"pid": pid})

    def _child(self, args: list[str], cwd: str) -> None:
        def body() -> int:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.setpgid(0, 0)
            self.selector.close()
            for client in self.clients.values():
                client.conn.close()
            self.listener.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            os.chdir(cwd)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            code: int = importlib.import_module("stratus.compute.ray_node").run_replica(args)
            return code

        exit_after(body)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            client = self.children.pop(pid, None)
            if client is not None:
                self._send(client, {"exit": os.waitstatus_to_exitcode(status)})
                self._drop(client)

    def _ours(self) -> bool:
        """Whether the folder is still this server's (its pid file not removed)."""
        try:
            return int(self.pid_file.read_text().split()[0]) == os.getpid()
        except (OSError, ValueError):
            return False

    def _close(self) -> None:
        self.listener.close()
        if self._ours():
            with contextlib.suppress(OSError):
                self.pid_file.unlink()


def main(argv: list[str]) -> int:
    where, idle, watching, *preload = argv
    watch = None
    if watching:
        pid, ticks = watching.split(":")
        watch = int(pid), int(ticks)
    if os.fork() > 0:  # detach: the starter waits for this one, which ends at once
        os._exit(0)
    folder = Path(where)
    try:
        server = _Server(folder, float(idle), watch)  # the folder's name is taken here
    except OSError as exc:
        print(f"fork server {os.getpid()}: cannot listen ({exc}): exiting", flush=True)
        return 1
    (folder / PID_NAME).write_text(f"{os.getpid()} {process_start_ticks(os.getpid())}")
    print(f"fork server {os.getpid()} importing {' '.join(preload)}", flush=True)
    for module in preload:
        try:
            importlib.import_module(module)
        except Exception as exc:  # an optional library not installed on this node
            print(f"fork server: not preloading {module}: {exc}", flush=True)
    server.listen()
    print(f"fork server {os.getpid()} listening", flush=True)
    server.run()
    print(f"fork server {os.getpid()} idle for {idle} s (or its folder gone): exiting", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
