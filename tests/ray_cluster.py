"""A real multi-node Ray cluster on loopback addresses, for tests marked `ray`.

Each node is one `ray start --block` subprocess in a session of its own: Ray's daemons (GCS,
raylet, agents) and its worker processes (actors, and subprocesses they start without a new
session) all keep that session id, so a node is stopped, or killed like a crashed machine, by
the processes of its session -- never with `ray stop`, which kills every Ray process of the user.

Node addresses come in slots of three (slot 0: 127.0.0.2-4, slot 1: 127.0.0.5-7, ...). A session
holds its slot's file lock for as long as its cluster runs, so two pytest-xdist workers, or two
checkouts testing at once, never start nodes on the same addresses; each slot also has its own
range of worker ports.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from stratus.testing import free_port, wait_for

# Every node and every driver needs these: token auth is on by default in `ray start --head`.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

# Node-only settings: the GCS declares a node dead after 3 missed 1 s health checks (~3 s; the
# default is ~13 s), and a SIGTERMed node stops at once instead of draining for up to 30 s.
NODE_ENV = {
    **RAY_ENV,
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
}

# what `ray start --block` logs once the node is up and it only watches its daemons
BLOCKING = "This command will now block forever"

SLOTS = 16  # 127.0.0.2 .. 127.0.0.49
WORKER_PORTS_PER_SLOT = 500  # slot N: worker ports 10002 + 500 N .. + 499
WORKER_RESOURCES = {"worker_node": 4}  # pins work to the two workers (the head has none)
NODE_MEMORY = 2 * 1024**3  # the `memory` resource of each node (Ray's default: 70% of the RAM)
OBJECT_STORE_MEMORY = 200 * 1024**2


def slot_ips(slot: int) -> list[str]:
    base = 2 + 3 * slot
    return [f"127.0.0.{base + i}" for i in range(3)]


def _session_pids(sid: int) -> list[int]:
    """The live (not zombie) processes of session `sid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry))
    return found


def _signal_session(sid: int, sig: signal.Signals) -> None:
    for pid in _session_pids(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _ray_executable() -> str:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else shutil.which("ray") or "ray"


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class RayNode:
    ip: str
    head: bool
    temp_dir: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        """The `ray start --block` process; also the id of the node's session."""
        return self.process.pid

    def pids(self) -> list[int]:
        return _session_pids(self.pid)

    def blocking(self) -> bool:
        """Whether `ray start` is done starting: SIGTERMed earlier, it can hang for good."""
        try:
            return BLOCKING in self.log.read_text(errors="replace")
        except OSError:
            return False


@dataclass
class RayCluster:
    """A head and two workers, each `ray start --block` on its own loopback address."""

    root: Path
    ips: list[str]
    port: int
    worker_ports: tuple[int, int]
    num_cpus: int = 1
    nodes: dict[str, RayNode] = field(default_factory=dict)
    _gcs: Any = None
    _generation: int = 0

    @property
    def head_ip(self) -> str:
        return self.ips[0]

    @property
    def worker_ips(self) -> list[str]:
        return self.ips[1:]

    @property
    def address(self) -> str:
        """What a driver passes to `ray.init(address=...)`."""
        return f"{self.head_ip}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The variables a driver (this process or a subprocess) must have set."""
        return dict(RAY_ENV)

    # --- starting and stopping ---------------------------------------------------------------

    def _start_node(self, ip: str) -> RayNode:
        head = ip == self.head_ip
        self._generation += 1
        # short: Ray's unix sockets live under it and their paths are limited to ~107 bytes
        temp_dir = self.root / f"{ip.rsplit('.', 1)[1]}-{self._generation}"
        temp_dir.mkdir(parents=True)
        log = self.root / f"{ip}-{self._generation}.log"
        args = [
            _ray_executable(),
            "start",
            "--block",
            f"--node-ip-address={ip}",
            f"--num-cpus={self.num_cpus}",
            f"--memory={NODE_MEMORY}",
            f"--object-store-memory={OBJECT_STORE_MEMORY}",
            f"--temp-dir={temp_dir}",
            f"--min-worker-port={self.worker_ports[0]}",
            f"--max-worker-port={self.worker_ports[1]}",
            f"--dashboard-agent-listen-port={free_port(ip)}",
            "--disable-usage-stats",
        ]
        if head:
            args += ["--head", f"--port={self.port}", "--include-dashboard=false"]
        else:
            args += [f"--address={self.address}", f"--resources={json.dumps(WORKER_RESOURCES)}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        with open(log, "wb") as out:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**env, **NODE_ENV},
                cwd=self.root,
                start_new_session=True,
            )
        node = RayNode(ip=ip, head=head, temp_dir=temp_dir, log=log, process=process)
        self.nodes[ip] = node
        return node

    def start(self, timeout: float = 180.0) -> RayCluster:
        """Start the head, then both workers at once; return when all three are alive."""
        self._start_node(self.head_ip)
        wait_for("the Ray head's GCS port", self._gcs_listening, timeout=timeout)
        for ip in self.worker_ips:
            self._start_node(ip)
        self.wait_for_nodes(self.ips, timeout=timeout)
        return self

    def _wait_started(self, timeout: float) -> None:
        def started() -> bool:
            self._check_processes()
            return all(node.blocking() for node in self.nodes.values())

        wait_for("`ray start` to finish starting", started, timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every process of every node's session (all gone in ~5 s; signalling only
        `ray start --block` can leave a node stopping for 20 s and its agents running for
        ever), then SIGKILL whatever is left after `timeout`."""
        nodes = list(self.nodes.values())
        for node in nodes:
            _signal_session(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(node.pids() for node in nodes) and time.monotonic() < deadline:
            time.sleep(0.1)
        for node in nodes:
            _signal_session(node.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(5)
        self.nodes.clear()
        self._gcs = None

    # --- node loss -----------------------------------------------------------------------------

    def kill_node(self, ip: str, timeout: float = 20.0) -> None:
        """Lose a worker node as if its machine crashed: SIGKILL its raylet, agents and
        workers (actors) at once. The GCS notices after its health checks fail (~3 s)."""
        if ip == self.head_ip:
            raise ValueError("kill_node kills workers; the head is the cluster")
        node = self.nodes.pop(ip)
        _signal_session(node.pid, signal.SIGKILL)
        node.process.wait(timeout)
        wait_for(f"the processes of Ray node {ip} to exit", lambda: not node.pids(), timeout)

    def add_node(self, ip: str, timeout: float = 180.0) -> None:
        """Start (again) the worker node at `ip` and wait until the GCS lists it alive."""
        if ip in self.nodes:
            raise ValueError(f"Ray node {ip} is running")
        if ip not in self.worker_ips:
            raise ValueError(f"{ip} is not one of this cluster's worker addresses")
        self._start_node(ip)
        wait_for(f"Ray node {ip} to be alive", lambda: ip in self.alive_ips(), timeout)
        self._wait_started(timeout)

    # --- what the GCS knows ------------------------------------------------------------------

    def _gcs_listening(self) -> bool:
        self._check_processes()
        with contextlib.suppress(OSError), socket.create_connection((self.head_ip, self.port), 1):
            return True
        return False

    def _gcs_client(self) -> Any:
        if self._gcs is None:
            from ray._raylet import GcsClient  # blocks ~40 s if the GCS is not listening

            self._gcs = GcsClient(address=self.address)
        return self._gcs

    def alive_ips(self) -> list[str]:
        """The addresses of the nodes the GCS holds alive (a lost node stays listed, dead)."""
        from ray.core.generated.gcs_pb2 import GcsNodeInfo

        infos = self._gcs_client().get_all_node_info(timeout=5).values()
        alive = GcsNodeInfo.GcsNodeState.ALIVE
        return sorted(info.node_manager_address for info in infos if info.state == alive)

    def wait_for_nodes(self, ips: list[str], timeout: float = 60.0) -> None:
        """Wait until exactly the nodes at `ips` are alive."""

        def exactly() -> bool:
            self._check_processes()
            return self.alive_ips() == sorted(ips)

        wait_for(f"exactly the Ray nodes {sorted(ips)} to be alive", exactly, timeout)
        self._wait_started(timeout)

    def _check_processes(self) -> None:
        for node in self.nodes.values():
            if node.process.poll() is not None:
                raise RuntimeError(
                    f"`ray start` for {node.ip} exited ({node.process.returncode}):\n"
                    + _log_tail(node.log)
                )


@contextlib.contextmanager
def _slot_lock() -> Iterator[int]:
    """Hold the first free slot's lock: one per machine (a fixed directory, whatever TMPDIR
    says), released when this process ends, however it ends."""
    lock_dir = Path("/tmp/stratus-ray-slots")
    lock_dir.mkdir(exist_ok=True)
    for slot in range(SLOTS):
        handle: IO[bytes] = open(lock_dir / f"slot-{slot}.lock", "wb")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield slot
        finally:
            handle.close()  # releases the lock
        return
    raise RuntimeError(f"all {SLOTS} Ray cluster slots are in use on this machine")


@contextlib.contextmanager
def ray_cluster_running(timeout: float = 180.0) -> Iterator[RayCluster]:
    """Start a 3-node cluster in a free slot; stop it by PID on the way out, failure or not."""
    with _slot_lock() as slot:
        ips = slot_ips(slot)
        low = 10002 + slot * WORKER_PORTS_PER_SLOT
        root = Path(tempfile.mkdtemp(prefix="sray-", dir="/tmp"))
        cluster = RayCluster(
            root=root,
            ips=ips,
            port=free_port(ips[0]),
            worker_ports=(low, low + WORKER_PORTS_PER_SLOT - 1),
        )
        try:
            yield cluster.start(timeout)
        finally:
            cluster.stop()
            shutil.rmtree(root, ignore_errors=True)


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pass
else:

    @pytest.fixture(scope="session")
    def ray_cluster() -> Iterator[RayCluster]:
        """A real Ray cluster (a head and two workers, 1 CPU and 2 GiB `memory` each, workers
        with the custom resource `worker_node`) on loopback addresses, shared by the session's
        `ray` tests: `.address` for `ray.init` (with `.env` set), `.ips`, `.head_ip`,
        `.worker_ips`, `.kill_node(ip)`, `.add_node(ip)`, `.alive_ips()`, `.wait_for_nodes(ips)`.
        A test that kills a node adds it back before it ends."""
        pytest.importorskip("ray")
        with ray_cluster_running() as cluster:
            yield cluster
