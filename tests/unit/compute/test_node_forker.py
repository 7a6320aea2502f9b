"""The fork server of a Ray node, for real: it detaches and runs once per folder (not twice,
even while importing its preload, and at any length of the folder's path), forks a real
replica that serves, exits 0 on SIGTERM and logs; a client that hangs up takes its replica
along; a bad request, or another user's, forks nothing; the server exits when idle, or once
idle after its pid file was removed or taken by another, which it leaves alone, and at once,
with its replicas, when the process it watches (the raylet) is gone; and a client whose server
dies sees its replica killed. Every process started is stopped, by pid."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratus.compute import node_forker
from stratus.compute.node_forker import ForkedReplica
from stratus.compute.processes import (
    group_members,
    proc_stat,
    process_start_ticks,
    write_atomic,
)
from stratus.compute.ray_node import REPLICA_MODULE
from stratus.testing import wait_for

pytestmark = pytest.mark.timeout(180)

SECRET = "node-forker-test-" + "s" * 16
TIMEOUT = 60.0  # seconds a replica may take to load its model, on a busy machine
EXIT_WITHIN = 15.0  # seconds for a process to go once it was told to (or should have)


def state(pid: int) -> str:
    """The state letter of a process ("" once it is gone)."""
    stat = proc_stat(pid)
    return stat[0] if stat else ""


def gone(pid: int) -> bool:
    """Whether `pid` is gone (a zombie is: nothing runs, its parent reaps it)."""
    return state(pid) in ("", "Z", "X")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat[1] == pid and stat[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def processes_of(folder: Path) -> list[int]:
    """Live processes running this module for `folder`: its servers (or their starter) and
    the replicas they forked (with their log writers), which have their command line."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and not gone(pid := int(entry.name)):
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"stratus.compute.node_forker" in argv and str(folder).encode() in argv:
                    found.append(pid)
    return found


def servers_of(folder: Path) -> list[int]:
    """Live fork servers of `folder` (not the replicas they forked: those lead a process group
    of their own, or are in one)."""
    found = processes_of(folder)
    return [pid for pid in found if (stat := proc_stat(pid)) and stat[2] not in found]


class Forkers:
    """Fork servers started in a folder of the test and the replicas they forked, all stopped
    by pid at the end of the test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(mode=0o700, parents=True)
        self.processes: dict[int, int] = {}  # pid -> its start time, to not kill a reuse
        self.groups: list[int] = []  # process groups of forked replicas

    @property
    def address(self) -> str:
        return node_forker.address(self.folder)

    @property
    def pid_file(self) -> Path:
        return self.folder / node_forker.PID_NAME

    def pid_in_file(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(self.pid_file.read_text().split()[0])
        return None

    def start(
        self, idle_seconds: float = 120.0, preload: list[str] | None = None, watch: int = 0
    ) -> int:
        """Start the folder's server and wait until it answers; its pid."""
        preload = ["json"] if preload is None else preload
        node_forker.start(self.folder, idle_seconds, preload, watch=watch or None)
        self.note_server()
        wait_for("the fork server", lambda: node_forker.running(self.folder), EXIT_WITHIN, 0.02)
        pid = self.pid_in_file()
        assert pid is not None
        self.note_server()
        return pid

    def note_server(self) -> None:
        """Note what runs this module for the folder, to stop it (and only it) at the end."""
        for pid in processes_of(self.folder):
            stat = proc_stat(pid)
            if pid not in self.processes and stat is not None:
                self.processes[pid] = stat[3]

    def fork(self, args: list[str], cwd: Path) -> ForkedReplica:
        forked = ForkedReplica(self.address, args, cwd)
        self.groups.append(forked.pid)
        return forked

    def stop_all(self) -> None:
        self.note_server()
        for pgid in self.groups:  # a replica's group, while it is one of ours
            if set(group_members(pgid)) & set(self.ours(self.processes)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
        for pid in self.ours(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for("the test's processes to go", lambda: not self.ours(self.processes), EXIT_WITHIN)

    @staticmethod
    def ours(processes: dict[int, int]) -> list[int]:
        """The processes noted that still run (not others that took their pid since)."""
        alive = []
        for pid, started in processes.items():
            stat = proc_stat(pid)
            if stat is not None and stat[0] not in ("Z", "X") and stat[3] == started:
                alive.append(pid)
        return alive


@pytest.fixture
def forkers(tmp_path: Path) -> Iterator[Forkers]:
    started = Forkers(tmp_path / "node")
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    skops_io = pytest.importorskip("skops.io")
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("forker-model")
    skops_io.dump(LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1]), folder / "m.skops")
    return folder


class Replica:
    """The files of one replica, as `NodeProcess._start_replica` lays them out."""

    def __init__(self, tmp_path: Path, model_dir: Path, name: str = "r1") -> None:
        from stratus.serving.replica import ReplicaSpec

        self.folder = tmp_path / name
        self.folder.mkdir(mode=0o700)
        spec = ReplicaSpec(
            model_dir=model_dir, flavor="sklearn", model_name="tiny", model_version=1,
            secret=SECRET,
        )  # fmt: skip
        self.spec_path = self.folder / "spec.json"
        write_atomic(self.spec_path, spec.model_dump_json().encode())
        self.ready_path = self.folder / "address"
        self.log_path = tmp_path / f"{name}.log"
        self.args = [REPLICA_MODULE, str(self.spec_path), "127.0.0.1", str(tmp_path / "cache")]
        self.args += [str(self.ready_path), str(self.log_path), str(1 << 20), "2"]

    def address(self) -> str | None:
        with contextlib.suppress(FileNotFoundError):
            return self.ready_path.read_text().strip() or None
        return None

    def wait_ready(self, forked: ForkedReplica) -> str:
        def ready() -> str | None:
            assert forked.poll() is None, f"the replica exited: {self.log()}"
            return self.address()

        address: str = wait_for(f"replica {forked.pid} to listen", ready, TIMEOUT, 0.05)
        return address

    def log(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text()
        return ""


def greet(address: str) -> dict[str, Any]:
    from stratus.serving.connections import ReplicaConnection

    async def hello() -> dict[str, Any]:
        connection = await ReplicaConnection.open(address, SECRET)
        await connection.close()
        return connection.hello

    return asyncio.run(hello())


def ask(server: str, request: bytes) -> tuple[socket.socket, Any]:
    """A raw client: send `request`, read one answer line (None if the server hung up)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(EXIT_WITHIN)
        conn.connect(server)
        conn.sendall(request)
        line = b""
        while not line.endswith(b"\n"):
            data = conn.recv(1)
            if not data:
                break
            line += data
        return conn, json.loads(line) if line else None
    except BaseException:
        conn.close()
        raise


def read_rest(conn: socket.socket) -> bytes:
    rest = b""
    while data := conn.recv(4096):
        rest += data
    return rest


def request_of(args: list[str], cwd: Path) -> bytes:
    return json.dumps({"args": args, "cwd": str(cwd)}).encode() + b"\n"


def blocking_args(forkers: Forkers) -> list[str]:
    """A replica that runs until killed, cheaply: its module, in the server's folder (from
    where the server imports), only sleeps."""
    (forkers.folder / "nf_test_blocker.py").write_text(
        "import time\nwhile True:\n    time.sleep(1)\n"
    )
    args = ["nf_test_blocker", "spec", "127.0.0.1", "cache", "ready"]
    return args + [str(forkers.folder / "r.log"), str(1 << 20), "1"]


# --- starting it -------------------------------------------------------------------------------


def test_the_server_detaches_and_a_second_start_starts_none(forkers: Forkers) -> None:
    assert node_forker.running(forkers.folder) is None
    pid = forkers.start()
    assert node_forker.running(forkers.folder) == forkers.address
    stat = proc_stat(pid)
    assert stat is not None
    assert stat[1] != os.getpid()  # not this process's child: no Ray worker takes it along
    assert stat[2] != os.getpgid(0)  # nor in its process group
    assert servers_of(forkers.folder) == [pid]
    # an abstract socket: no file for it in the folder
    names = {path.name for path in forkers.folder.iterdir()}
    assert names == {"forker.lock", node_forker.LOG_NAME, node_forker.PID_NAME}

    node_forker.start(forkers.folder, 120.0, ["json"])
    assert forkers.pid_in_file() == pid
    assert servers_of(forkers.folder) == [pid]
    assert node_forker.running(forkers.folder) == forkers.address


def test_a_folder_of_any_length_has_its_own_server(tmp_path: Path) -> None:
    long_one = Forkers(tmp_path / ("x" * 120) / ("y" * 120))  # past what AF_UNIX paths take
    other = Forkers(tmp_path / "other")
    try:
        first, second = long_one.start(), other.start()
        assert first != second
        assert node_forker.running(long_one.folder) == long_one.address != other.address
        assert servers_of(long_one.folder) == [first] and servers_of(other.folder) == [second]
    finally:
        long_one.stop_all()
        other.stop_all()


def test_no_second_server_starts_while_the_first_imports_its_preload(forkers: Forkers) -> None:
    # a preload that takes until the test says so (the server imports from its folder)
    (forkers.folder / "nf_test_gate.py").write_text(
        "import os, time\n"
        "deadline = time.monotonic() + 60\n"
        "while not os.path.exists('open') and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
    )
    node_forker.start(forkers.folder, 120.0, ["nf_test_gate"])
    forkers.note_server()
    pid = wait_for("the server's pid file", forkers.pid_in_file, EXIT_WITHIN, 0.02)
    forkers.note_server()
    assert node_forker.running(forkers.folder) is None  # still importing

    node_forker.start(forkers.folder, 120.0, ["nf_test_gate"])
    forkers.note_server()
    assert forkers.pid_in_file() == pid
    assert servers_of(forkers.folder) == [pid]

    (forkers.folder / "open").touch()
    wait_for("the fork server", lambda: node_forker.running(forkers.folder), EXIT_WITHIN, 0.02)
    assert forkers.pid_in_file() == pid
    assert servers_of(forkers.folder) == [pid]


# --- forking replicas --------------------------------------------------------------------------


def test_a_forked_replica_serves_and_exits_0_on_sigterm_with_its_log(
    forkers: Forkers, tmp_path: Path, model_dir: Path
) -> None:
    server = forkers.start()
    replica = Replica(tmp_path, model_dir)
    forked = forkers.fork(replica.args, replica.folder)
    address = replica.wait_ready(forked)
    assert re.fullmatch(r"tcp://127\.0\.0\.1:\d+", address), address
    assert greet(address)["model"] == "tiny"

    stat = proc_stat(forked.pid)
    assert stat is not None
    assert stat[1] == server and stat[2] == forked.pid  # the server's child, in its own group
    assert os.readlink(f"/proc/{forked.pid}/cwd") == str(replica.folder)
    assert forked.poll() is None and forked.returncode is None

    os.killpg(forked.pid, signal.SIGTERM)  # as `NodeProcess.stop` does
    assert forked.wait(TIMEOUT) == 0  # the replica stops serving and returns
    assert forked.poll() == 0 and forked.returncode == 0
    # its log writer drains the replica's output, then goes
    wait_for("the replica's group to go", lambda: not group_members(forked.pid), EXIT_WITHIN)
    assert f"replica of tiny:1 ready on {address}" in replica.log()
    assert node_forker.running(forkers.folder) is not None  # the server serves on


def test_a_replica_that_fails_at_once_tells_its_exit_code(forkers: Forkers) -> None:
    forkers.start()
    forked = forkers.fork(["too", "few", "arguments"], forkers.folder)
    assert forked.wait(EXIT_WITHIN) == 1
    # what it printed before it could redirect its output is in the server's log
    log = forkers.folder / node_forker.LOG_NAME
    wait_for("the traceback", lambda: "ValueError" in log.read_text(), EXIT_WITHIN, 0.02)
    assert node_forker.running(forkers.folder) is not None


def test_a_client_that_hangs_up_takes_its_replica_along(
    forkers: Forkers, tmp_path: Path, model_dir: Path
) -> None:
    server = forkers.start()
    replica = Replica(tmp_path, model_dir)
    # a raw client (a ForkedReplica would kill the group itself): only the server kills here
    conn, answer = ask(forkers.address, request_of(replica.args, replica.folder))
    pid = answer["pid"]
    forkers.groups.append(pid)
    try:
        wait_for("the replica to listen", replica.address, TIMEOUT, 0.05)
        assert not gone(pid)
        assert len(group_members(pid)) == 2  # the replica and its log writer
    finally:
        conn.close()
    wait_for("the replica to go", lambda: gone(pid), EXIT_WITHIN, 0.02)
    wait_for("its group to go", lambda: not group_members(pid), EXIT_WITHIN, 0.02)
    assert not children_of(server)
    assert node_forker.running(forkers.folder) is not None  # the server serves on


def test_a_forked_replica_whose_server_dies_is_killed(
    forkers: Forkers, tmp_path: Path, model_dir: Path
) -> None:
    server = forkers.start()
    replica = Replica(tmp_path, model_dir)
    forked = forkers.fork(replica.args, replica.folder)
    replica.wait_ready(forked)
    assert len(group_members(forked.pid)) == 2  # the replica and its log writer

    os.kill(server, signal.SIGKILL)
    assert forked.wait(EXIT_WITHIN) == -signal.SIGKILL
    assert forked.poll() == -signal.SIGKILL
    wait_for("the replica's group to go", lambda: not group_members(forked.pid), EXIT_WITHIN)
    assert gone(forked.pid)


@pytest.mark.parametrize(
    "request_line",
    [
        b'{"args": "x"}\n',
        b'{"args": "x", "cwd": "/"}\n',
        b'{"args": ["a", 1], "cwd": "/"}\n',
        b'{"args": [], "cwd": 7}\n',
        b"not json\n",
        b"[]\n",
        b"x" * (node_forker.MAX_REQUEST_BYTES + 1),  # no end of line in sight
    ],
    ids=["args-str-no-cwd", "args-str", "args-not-str", "cwd-not-str", "not-json", "list", "long"],
)
def test_a_bad_request_gets_an_error_and_forks_nothing(
    forkers: Forkers, request_line: bytes
) -> None:
    server = forkers.start()
    conn, answer = ask(forkers.address, request_line)
    with conn:
        assert isinstance(answer, dict) and set(answer) == {"error"}, answer
        assert read_rest(conn) == b""  # and it hangs up
    assert not children_of(server)
    assert node_forker.running(forkers.folder) is not None


@pytest.mark.skipif(os.getuid() != 0, reason="becomes another user to ask")
def test_another_users_request_is_refused_and_forks_nothing(forkers: Forkers) -> None:
    server = forkers.start()
    request = request_of(["too", "few"], Path("/"))
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # nobody, with nothing but this socket (an abstract one: no file modes)
        told = b"nothing"
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(EXIT_WITHIN)
                conn.connect(node_forker.address(forkers.folder))
                try:  # the server may hang up before this is sent, or with it unread
                    conn.sendall(request)
                    told = b"answer:" + read_rest(conn)
                except (BrokenPipeError, ConnectionResetError):
                    told = b"answer:"
        except BaseException as exc:
            told = repr(exc).encode()
        finally:
            os.write(write_end, told)
            os._exit(0)
    os.close(write_end)
    try:
        wait_for("the other user's client", lambda: os.waitpid(child, os.WNOHANG)[0], EXIT_WITHIN)
        with os.fdopen(read_end, "rb") as pipe:
            assert pipe.read() == b"answer:"  # hung up on, without a word
    finally:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(child, os.WNOHANG)[0] == 0:
                os.kill(child, signal.SIGKILL)
                os.waitpid(child, 0)
    assert not children_of(server)
    # this user's client is still served
    forked = forkers.fork(["too", "few"], forkers.folder)
    assert forked.wait(EXIT_WITHIN) == 1


# --- exiting -----------------------------------------------------------------------------------


def test_the_server_exits_when_idle(forkers: Forkers) -> None:
    pid = forkers.start(idle_seconds=1.0)
    wait_for("the idle fork server to exit", lambda: gone(pid), EXIT_WITHIN, 0.05)
    assert forkers.pid_in_file() is None
    assert node_forker.running(forkers.folder) is None
    assert "exiting" in (forkers.folder / node_forker.LOG_NAME).read_text()


def test_the_server_exits_once_its_pid_file_is_removed(forkers: Forkers) -> None:
    pid = forkers.start(idle_seconds=600.0)
    forkers.pid_file.unlink()  # as when its folder is removed
    wait_for("the fork server to exit", lambda: gone(pid), EXIT_WITHIN, 0.05)
    assert node_forker.running(forkers.folder) is None
    assert not forkers.pid_file.exists()


def test_the_server_exits_once_its_pid_file_names_another_and_leaves_it(
    forkers: Forkers,
) -> None:
    pid = forkers.start(idle_seconds=600.0)
    forkers.pid_file.write_text(str(os.getpid()))  # as a newer server's
    wait_for("the fork server to exit", lambda: gone(pid), EXIT_WITHIN, 0.05)
    assert forkers.pid_in_file() == os.getpid()  # not removed on its way out
    assert node_forker.running(forkers.folder) is None


def test_the_server_goes_with_its_replicas_once_the_process_it_watches_is_gone(
    forkers: Forkers,
) -> None:
    # a raylet: runs until killed (and is then reaped, as a raylet is by its parent)
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    ) as watched:
        try:
            server = forkers.start(idle_seconds=600.0, watch=watched.pid)
            ticks = process_start_ticks(watched.pid)
            argv = Path(f"/proc/{server}/cmdline").read_bytes().split(b"\0")
            assert f"{watched.pid}:{ticks}".encode() in argv  # not fooled by a reuse of its pid
            # a raw client, which kills nothing itself
            request = request_of(blocking_args(forkers), forkers.folder)
            conn, answer = ask(forkers.address, request)
            child = answer["pid"]
            forkers.groups.append(child)
            with conn:
                wait_for("the replica's group", lambda: group_members(child), EXIT_WITHIN, 0.02)
                assert not gone(server)

                watched.kill()
                watched.wait(EXIT_WITHIN)
                wait_for("the fork server to exit", lambda: gone(server), EXIT_WITHIN, 0.05)
                wait_for("its replica to go", lambda: not group_members(child), EXIT_WITHIN)
                assert read_rest(conn) == b""  # hung up on, with no exit code to tell
            assert node_forker.running(forkers.folder) is None
        finally:
            if watched.poll() is None:
                watched.kill()


def test_a_busy_server_whose_pid_file_is_removed_waits_for_its_replica(
    forkers: Forkers, tmp_path: Path, model_dir: Path
) -> None:
    pid = forkers.start(idle_seconds=600.0)
    replica = Replica(tmp_path, model_dir)
    forked = forkers.fork(replica.args, replica.folder)
    forkers.pid_file.unlink()
    replica.wait_ready(forked)
    assert not gone(pid)  # it still serves its replica's client
    os.killpg(forked.pid, signal.SIGTERM)
    assert forked.wait(TIMEOUT) == 0  # and tells it the exit code
    wait_for("the fork server to exit", lambda: gone(pid), EXIT_WITHIN, 0.05)


# --- known bugs (drop the mark once fixed) ----------------------------------------------------


def wakeup_pipe(pid: int) -> int:
    """The write end of the server's signal wakeup pipe (its only pipe)."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:"):
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()
            flags = int(next(line for line in info if line.startswith("flags:")).split()[1], 8)
            if flags & os.O_ACCMODE == os.O_WRONLY:
                return int(fd)
    raise AssertionError(f"no wakeup pipe in fork server {pid}")


def test_a_replica_exit_seen_with_its_client_leaving_does_not_crash_the_server(
    forkers: Forkers,
) -> None:
    server = forkers.start()
    conn, answer = ask(forkers.address, request_of(blocking_args(forkers), forkers.folder))
    child = answer["pid"]
    forkers.groups.append(child)
    wait_for("the replica's group", lambda: group_members(child), EXIT_WITHIN, 0.02)
    wake = wakeup_pipe(server)
    # the server sees, in one batch: its SIGCHLD wakeup first, then its client's end
    os.kill(server, signal.SIGSTOP)
    try:
        wait_for("the server to stop", lambda: state(server) == "T", EXIT_WITHIN, 0.01)
        fd = os.open(f"/proc/{server}/fd/{wake}", os.O_WRONLY)
        os.write(fd, b"\0")  # what the signal handler writes, ready before the client's end
        os.close(fd)
        os.killpg(child, signal.SIGKILL)
        wait_for("the replica to die", lambda: gone(child), EXIT_WITHIN, 0.02)
        conn.close()
    finally:
        os.kill(server, signal.SIGCONT)
    forked = forkers.fork(["too", "few"], forkers.folder)  # the server still serves
    assert forked.wait(EXIT_WITHIN) == 1


def test_clients_that_hang_up_at_once_take_their_replicas_along(forkers: Forkers) -> None:
    forkers.start()
    request = request_of(blocking_args(forkers), forkers.folder)
    forked = []
    for _ in range(50):
        conn, answer = ask(forkers.address, request)
        forked.append(answer["pid"])
        forkers.groups.append(answer["pid"])
        conn.close()
    wait_for("every replica to go", lambda: all(gone(pid) for pid in forked), 5.0, 0.05)


def test_a_pid_file_naming_a_live_process_that_is_not_its_server_starts_a_new_one(
    forkers: Forkers,
) -> None:
    # this test process, with a start time that is not its own: a stale file, a reused pid
    forkers.pid_file.write_text(f"{os.getpid()} 1")
    server = forkers.start()
    assert server != os.getpid()
    ticks = proc_stat(server)
    assert ticks is not None
    assert forkers.pid_file.read_text().split() == [str(server), str(ticks[3])]
