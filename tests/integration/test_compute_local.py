"""The local compute backend with real replica processes, with and without the fork server:
start → ready → predict → stop, load failures, kills, re-adoption after a control-plane
restart, the pid-reuse guard, and (reported, not asserted) cold start and memory."""

from __future__ import annotations

import contextlib
import ctypes
import json
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stratus.compute.backend import ReplicaState, ReplicaStatus
from stratus.compute.local import LocalBackend, LocalBackendConfig, LocalReplicaHandle
from stratus.compute.processes import process_start_ticks
from stratus.serving.replica import ReplicaSpec
from stratus.serving.wire import HELLO_ID, RESPONSE, Kind, encode_request

pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")

PR_SET_CHILD_SUBREAPER = 36
READY_TIMEOUT = 60.0


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> Iterator[None]:
    """Orphans (replicas of a control plane that exited) become our children, so we reap them
    instead of leaving zombies under a PID 1 that may not reap."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        # the fork server and resource tracker this test process started (replicas are gone)
        multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]
        multiprocessing.resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import joblib
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    data = load_breast_cancer()
    x = data.data
    model = LogisticRegression(max_iter=5000).fit(x, data.target)
    root = tmp_path_factory.mktemp("compute-model")
    skops_io.dump(model, root / "model.skops")
    untrusted = tmp_path_factory.mktemp("compute-untrusted")
    joblib.dump(model, untrusted / "model.joblib")
    return {"dir": root, "untrusted": untrusted, "x": x, "expected": model.predict(x)}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))  # unix socket paths are short
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


SECRET = "s" * 32


class Harness:
    def __init__(self, state_dir: Path, fork_server: bool) -> None:
        self.config = LocalBackendConfig(
            state_dir=state_dir, socket_dir=state_dir / "run", fork_server=fork_server
        )
        self.backend = LocalBackend(self.config)
        self.state_dir = state_dir
        self.handles: list[tuple[LocalBackend, LocalReplicaHandle]] = []

    def spec(self, model_dir: Path, name: str = "r1") -> ReplicaSpec:
        return ReplicaSpec(
            model_dir=model_dir,
            flavor="sklearn",
            model_name="cancer",
            model_version=1,
            secret=SECRET,
        )

    def start(self, replica_id: str, spec: ReplicaSpec) -> LocalReplicaHandle:
        handle = self.backend.start_replica(replica_id, spec)
        assert isinstance(handle, LocalReplicaHandle)
        self.handles.append((self.backend, handle))
        return handle

    def stop_all(self) -> None:
        for backend, handle in self.handles:
            backend.stop_replica(handle, grace_seconds=2)


@pytest.fixture(params=[True, False], ids=["forkserver", "spawn"])
def harness(request: pytest.FixtureRequest, short_dir: Path) -> Iterator[Harness]:
    h = Harness(short_dir, fork_server=request.param)
    try:
        yield h
    finally:
        h.stop_all()
        h.backend.close()


def wait_for(
    backend: LocalBackend, handle: LocalReplicaHandle, state: ReplicaState
) -> ReplicaStatus:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        status = backend.status(handle)
        if status.state == state:
            return status
        assert status.state != ReplicaState.exited, status.detail
        assert time.monotonic() < deadline, f"replica still {status.state}"
        time.sleep(0.05)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the replica closed the connection"
        data += chunk
    return data


def _recv_frame(sock: socket.socket) -> tuple[int, int, bytes]:
    request_id, status, length = RESPONSE.unpack(_recv_exactly(sock, RESPONSE.size))
    return request_id, status, _recv_exactly(sock, length)


def predict(
    path: Path, rows: list[list[float]], secret: str = SECRET
) -> tuple[dict[str, Any], int, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(encode_request(HELLO_ID, Kind.AUTH, "", secret.encode()))
        request_id, _, hello = _recv_frame(sock)
        assert request_id == HELLO_ID
        body = orjson.dumps({"instances": rows})
        sock.sendall(encode_request(7, Kind.PLAIN_PREDICT, "application/json", body))
        request_id, status, payload = _recv_frame(sock)
        assert request_id == 7
        return orjson.loads(hello), status, orjson.loads(payload)


def pss_mb(pid: int, fields: tuple[str, ...] = ("Pss:",)) -> float:
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(fields):
            total += int(line.split()[1])
    return total / 1024


def uss_mb(pid: int) -> float:
    return pss_mb(pid, ("Private_Clean:", "Private_Dirty:"))


def test_start_ready_predict_stop(harness: Harness, model_dir: dict[str, Any]) -> None:
    backend = harness.backend
    handle = harness.start("r1", harness.spec(model_dir["dir"]))
    assert handle.process_start_ticks == process_start_ticks(handle.pid)
    record = harness.state_dir / "replicas" / "r1.json"
    assert json.loads(record.read_text())["pid"] == handle.pid
    assert (harness.state_dir / "replicas" / "r1.spec.json").exists()

    ready = wait_for(backend, handle, ReplicaState.ready)
    assert ready.address == handle.address == f"unix://{handle.socket}"
    assert handle.socket.parent == harness.state_dir / "run" and handle.details() == {
        "pid": handle.pid
    }
    x, expected = model_dir["x"], model_dir["expected"]
    hello, status, out = predict(handle.socket, x[:4].tolist())
    assert hello["pid"] == handle.pid and hello["model"] == "cancer"
    assert status == 200 and out["predictions"] == expected[:4].tolist()
    assert backend.running() == [handle]
    deadline = time.monotonic() + READY_TIMEOUT  # the log writer is a process of its own
    while "ready on" not in handle.log_path.read_text():
        assert time.monotonic() < deadline, "the replica's log never said it was ready"
        time.sleep(0.05)
    assert handle.log_path.stat().st_mode & 0o777 == 0o600

    assert backend.stop_replica(handle) == 0
    assert not record.exists() and not handle.socket.exists()
    # its spec and log go with it
    assert sorted(p.name for p in (harness.state_dir / "replicas").iterdir()) == []
    assert backend.status(handle) == ReplicaStatus(
        ReplicaState.exited, 0, backend.status(handle).detail
    )
    assert backend.stop_replica(handle) == 0  # idempotent
    assert backend.running() == []


def test_a_connection_without_the_secret_gets_nothing(
    harness: Harness, model_dir: dict[str, Any]
) -> None:
    """The replica greets only a connection whose first frame carries its secret; any other
    is closed without a byte (no HELLO, so nothing about the model leaks either)."""
    handle = harness.start("sec", harness.spec(model_dir["dir"], "sec"))
    wait_for(harness.backend, handle, ReplicaState.ready)
    with pytest.raises(AssertionError, match="closed the connection"):
        predict(handle.socket, [[0.0] * 30], secret="w" * 32)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:  # a request, no AUTH
        sock.settimeout(10)
        sock.connect(str(handle.socket))
        sock.sendall(encode_request(1, Kind.PLAIN_PREDICT, "application/json", b"{}"))
        assert sock.recv(100) == b""
    hello, status, _ = predict(handle.socket, model_dir["x"][:1].tolist())
    assert status == 200 and hello["model"] == "cancer"  # and it still serves the right one
    assert "refused a connection" in handle.log_path.read_text()


def test_untrusted_pickle_exits_with_3(harness: Harness, model_dir: dict[str, Any]) -> None:
    handle = harness.start("bad", harness.spec(model_dir["untrusted"], "bad"))
    status = wait_for(harness.backend, handle, ReplicaState.exited)
    assert status.exit_code == 3
    assert "cannot start" in status.detail and "trusted" in status.detail
    assert harness.backend.running() == []  # the record of a dead replica is dropped...
    assert list((harness.state_dir / "replicas").iterdir()) == []  # ...with its files


def test_killed_replica_is_seen_exited(harness: Harness, model_dir: dict[str, Any]) -> None:
    handle = harness.start("k", harness.spec(model_dir["dir"], "k"))
    wait_for(harness.backend, handle, ReplicaState.ready)
    os.kill(handle.pid, signal.SIGKILL)
    status = wait_for(harness.backend, handle, ReplicaState.exited)
    assert status.exit_code == -signal.SIGKILL
    assert not handle.socket.exists()  # seeing it dead removes the socket it left
    assert harness.backend.stop_replica(handle) == -signal.SIGKILL
    assert not (harness.state_dir / "replicas" / "k.json").exists()
    assert not handle.socket.exists()


def test_adoption_by_a_new_backend(harness: Harness, model_dir: dict[str, Any]) -> None:
    first = harness.backend
    handle = harness.start("a", harness.spec(model_dir["dir"], "a"))
    wait_for(first, handle, ReplicaState.ready)
    first.close()  # does not stop the replica

    second = LocalBackend(harness.config)
    harness.backend = second
    adopted = second.running()
    assert adopted == [handle]
    assert isinstance(adopted[0], LocalReplicaHandle)
    assert second.status(adopted[0]).state == ReplicaState.ready
    code = second.stop_replica(adopted[0])
    # a fork-server child's exit code went to the Process object the first backend dropped;
    # a spawned replica is this process's own child, so the second backend reaps it.
    assert code == (None if harness.config.fork_server else 0)
    assert second.running() == []
    assert _proc_gone(handle.pid)
    second.close()


CONTROL_PLANE = textwrap.dedent(
    """
    import json, multiprocessing.forkserver as fs, multiprocessing.resource_tracker as rt, sys
    import time
    from pathlib import Path
    from stratus.compute.local import LocalBackend, LocalBackendConfig
    from stratus.compute.backend import ReplicaState
    from stratus.serving.replica import ReplicaSpec
    state, model, fork = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
    backend = LocalBackend(LocalBackendConfig(state_dir=state, socket_dir=state / "run",
                                              fork_server=fork))
    spec = ReplicaSpec(model_dir=model, flavor="sklearn", model_name="cancer",
                       model_version=1, secret="s" * 32)
    handle = backend.start_replica("cp", spec)
    deadline = time.monotonic() + 60
    while backend.status(handle).state != ReplicaState.ready and time.monotonic() < deadline:
        time.sleep(0.05)
    print(json.dumps({"pid": handle.pid, "forkserver": fs._forkserver._forkserver_pid,
                      "tracker": rt._resource_tracker._pid}))
    """
)


def _proc_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def _reap(pid: int | None, timeout: float = 10.0) -> bool:
    """Wait for an orphan that was reparented to this (subreaper) process; False if it lives."""
    if pid is None:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return _proc_gone(pid)
        if waited:
            return True
        time.sleep(0.05)
    return False


def test_replica_survives_a_control_plane_exit(harness: Harness, model_dir: dict[str, Any]) -> None:
    fork = harness.config.fork_server
    out = harness.state_dir / "control-plane.out"
    # the old fork server and resource tracker inherit the control plane's stdout/stderr
    # and outlive it, so a pipe there would never reach EOF: use a file
    with open(out, "wb") as sink:
        result = subprocess.run(
            [sys.executable, "-c", CONTROL_PLANE, str(harness.state_dir),
             str(model_dir["dir"]), "1" if fork else "0"],
            stdout=sink, stderr=subprocess.STDOUT, timeout=120, check=False,
        )  # fmt: skip
    text = out.read_text()
    pids = json.loads(text.splitlines()[-1]) if text.strip().startswith("{") else {}
    orphans = [pids["forkserver"], pids["tracker"]] if fork and pids else []
    if pids:
        harness.handles.append((harness.backend, _handle_for(harness, pids["pid"])))
    assert result.returncode == 0 and pids, text
    try:
        backend = harness.backend
        adopted = backend.running()
        assert all(isinstance(h, LocalReplicaHandle) for h in adopted)
        assert [h.details()["pid"] for h in adopted] == [pids["pid"]]
        assert backend.status(adopted[0]).state == ReplicaState.ready
        assert isinstance(adopted[0], LocalReplicaHandle)
        hello, status, out = predict(adopted[0].socket, model_dir["x"][:2].tolist())
        assert status == 200 and out["predictions"] == model_dir["expected"][:2].tolist()
        if fork:
            # the replica holds the fork server's "alive" pipe: the old fork server lives on
            # (orphaned) as the replica's parent until the replica exits, and reaps it.
            assert not _proc_gone(pids["forkserver"])
            assert _ppid(pids["pid"]) == pids["forkserver"]
        code = backend.stop_replica(adopted[0])
        # spawned: the replica was reparented to us (a subreaper), so we reap its exit code
        assert code == (None if fork else 0)
        assert _proc_gone(pids["pid"])
    finally:
        for pid in orphans:
            if not _reap(pid):
                os.kill(pid, signal.SIGKILL)
                _reap(pid)
    assert all(_proc_gone(pid) for pid in orphans)  # the old fork server left with its replica


def _handle_for(harness: Harness, pid: int) -> LocalReplicaHandle:
    """A handle for teardown, even if the test fails before adopting the replica."""
    return LocalReplicaHandle("cp", f"unix://{harness.state_dir}/run/cp.sock", "here",
                              time.time(), pid, Path("/nonexistent"),
                              process_start_ticks(pid))  # fmt: skip


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def test_pid_reuse_guard(short_dir: Path) -> None:
    backend = LocalBackend(LocalBackendConfig(state_dir=short_dir, fork_server=False))
    record = short_dir / "replicas" / "impostor.json"
    record.write_text(
        json.dumps(
            {
                "replica_id": "impostor",
                "pid": os.getpid(),
                "socket": "/nonexistent",
                "log_path": str(short_dir / "x.log"),
                "started_at": time.time(),
                "process_start_ticks": 1,
            }
        )  # fmt: skip
    )
    assert backend.running() == []
    assert not record.exists()
    backend.close()


def test_bad_replica_id_is_refused(short_dir: Path, model_dir: dict[str, Any]) -> None:
    backend = LocalBackend(LocalBackendConfig(state_dir=short_dir, fork_server=False))
    spec = ReplicaSpec(model_dir=model_dir["dir"], flavor="sklearn", model_name="m",
                       model_version=1, secret=SECRET)  # fmt: skip
    with pytest.raises(ValueError):
        backend.start_replica("../escape", spec)
    backend.close()


def test_measure_cold_start_and_pss(short_dir: Path, model_dir: dict[str, Any]) -> None:
    """Reported, not asserted: run with -s to see the numbers."""
    lines = []
    for fork in (True, False):
        h = Harness(short_dir / ("fs" if fork else "sp"), fork_server=fork)
        try:
            for run in range(3):
                t0 = time.monotonic()
                handle = h.start(f"m{run}", h.spec(model_dir["dir"], f"m{run}"))
                wait_for(h.backend, handle, ReplicaState.ready)
                cold = time.monotonic() - t0
                time.sleep(0.5)
                pss, uss = pss_mb(handle.pid), uss_mb(handle.pid)
                lines.append(f"fork_server={fork} run={run} cold_start={cold:.2f}s "
                             f"pss={pss:.1f}MB uss={uss:.1f}MB")  # fmt: skip
            # all three still running: PSS splits shared pages between them
            lines.append(
                f"fork_server={fork} pss of 3 live replicas: "
                + ", ".join(f"{pss_mb(x.pid):.1f}MB" for _, x in h.handles)
            )
            server = multiprocessing.forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
            if fork and server:
                rss = pss_mb(server, ("Rss:",))
                lines.append(f"the fork server itself: pss={pss_mb(server):.1f}MB rss={rss:.1f}MB")
        finally:
            h.stop_all()
            h.backend.close()
    with contextlib.suppress(Exception):
        print("\n" + "\n".join(lines))
