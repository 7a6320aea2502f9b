"""An in-memory compute backend for tests: replicas and jobs do what the test says.

`FakeCluster` is what outlives a control plane (the replicas and jobs running somewhere); a
`FakeBackend` over it is one control plane's view, so a new `FakeBackend` over the same cluster
is a restart that re-adopts them. The test drives the cluster: replicas start `starting` and
become ready, crash or ignore a graceful stop when told; jobs write their log and exit when told.
Given `serve`, a ready replica really serves in a thread of this process, so a gateway can dial it
(on a unix socket, or with `tcp`, on 127.0.0.1 as a replica on another machine would).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stratus.compute.addresses import tcp_address, unix_address
from stratus.compute.backend import (
    SAFE_ID,
    ComputeBackend,
    JobHandle,
    JobLaunch,
    JobState,
    JobStatus,
    LaunchSpec,
    ReplicaHandle,
    ReplicaState,
    ReplicaStatus,
)
from stratus.compute.limits import Resources

TAIL_LINES = 20  # what an exited replica's or job's `detail` holds, as the local backend's
GRACEFUL_REPLICA_EXIT = 0  # a replica answers SIGTERM by finishing and exiting 0
GRACEFUL_JOB_EXIT = -signal.SIGTERM  # a job's default answer to SIGTERM
FORCED_EXIT = -signal.SIGKILL

#: Serve a spec at `spec.address` until the event is set, calling back with the address it
#: accepts connections on: `stratus.serving.replica.serve` with a model bound to it.
Serve = Callable[[LaunchSpec, asyncio.Event, Callable[[str], None]], Awaitable[None]]


@dataclass(frozen=True)
class FakeReplicaHandle(ReplicaHandle):
    serial: int  # tells this replica from a later one started with the same id, as a pid would


@dataclass(frozen=True)
class FakeJobHandle(JobHandle):
    serial: int


@dataclass
class FakeReplica:
    """One replica as the cluster runs it; the test reads and sets these fields."""

    handle: FakeReplicaHandle
    spec: LaunchSpec  # as the backend handed it over, with its address
    state: ReplicaState = ReplicaState.starting
    address: str = ""  # where it is dialled once ready
    exit_code: int | None = None
    log: list[str] = field(default_factory=list)
    ignores_stop: bool = False  # only a forced stop ends it, after the grace period
    stops: list[tuple[float, str]] = field(default_factory=list)  # (grace, "graceful"/"forced")
    server: InProcessServer | None = None


@dataclass
class FakeJob:
    handle: FakeJobHandle
    launch: JobLaunch
    state: JobState = JobState.running
    exit_code: int | None = None
    oom_killed: bool = False
    node_lost: bool = False
    log: bytearray = field(default_factory=bytearray)
    ignores_stop: bool = False
    stops: list[tuple[float, str]] = field(default_factory=list)


class FakeCluster:
    """The replicas and jobs, which outlive any one `FakeBackend`.

    A replica stays `starting` (slow) until the test marks it ready or crashes it. `clock`
    gives start times, and `sleep` is how a stop waits out the grace period of a replica or job
    that ignores the graceful stop (pass one that does not sleep). `events` records ("start" |
    "ready" | "exited" | "stop", id) in order, for tests of ordering.
    """

    def __init__(
        self,
        *,
        capacity: Resources | None = None,
        socket_dir: Path = Path("/nonexistent/stratus-fake"),
        node: str = "fake-node",
        serve: Serve | None = None,
        tcp: bool = False,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.capacity = capacity or Resources(vcpus=8.0, memory_bytes=32 << 30)
        self.socket_dir = socket_dir
        self.node = node
        self.serve = serve
        self.tcp = tcp  # replicas listen on tcp://127.0.0.1 (any port), not on unix sockets
        self.clock = clock
        self.sleep = sleep
        self.replicas: dict[str, FakeReplica] = {}
        self.jobs: dict[str, FakeJob] = {}
        self.events: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self._serials = 0

    def next_serial(self) -> int:
        with self.lock:
            self._serials += 1
            return self._serials

    # --- what a test does to replicas

    def mark_ready(self, replica_id: str) -> None:
        """The replica has loaded its model and listens (really, in this process, if the
        cluster has `serve`)."""
        replica = self.replicas[replica_id]
        assert replica.state is ReplicaState.starting, f"{replica_id} is {replica.state}"
        address = replica.handle.address
        if self.serve is not None:
            replica.server = InProcessServer(self.serve, replica.spec)
            address = replica.server.start()
        with self.lock:
            replica.address = address
            replica.state = ReplicaState.ready
            replica.log.append(f"fake replica {replica_id} ready on {address}")
            self.events.append(("ready", replica_id))

    def write_log(self, replica_id: str, *lines: str) -> None:
        with self.lock:
            self.replicas[replica_id].log.extend(lines)

    def crash(self, replica_id: str, exit_code: int | None = 1, *log_lines: str) -> None:
        """The replica dies at once (its connections cut), having printed `log_lines` last."""
        self.write_log(replica_id, *log_lines)
        self.exit_replica(replica_id, exit_code)

    def exit_replica(self, replica_id: str, exit_code: int | None, grace: float = 0.0) -> None:
        """The replica's process ends; one that serves gets `grace` seconds to answer what it
        holds before its connections are cut."""
        with self.lock:
            replica = self.replicas[replica_id]
            server, replica.server = replica.server, None
        if server is not None:
            server.stop(grace)
        with self.lock:
            if replica.state is not ReplicaState.exited:
                replica.state, replica.exit_code = ReplicaState.exited, exit_code
                self.events.append(("exited", replica_id))

    # --- what a test does to jobs

    def write_job_log(self, job_id: str, data: bytes) -> None:
        with self.lock:
            self.jobs[job_id].log.extend(data)

    def exit_job(
        self,
        job_id: str,
        exit_code: int | None = 0,
        *,
        oom_killed: bool = False,
        node_lost: bool = False,
    ) -> None:
        """The job's process ends (a negative code: killed by that signal, as when a spot
        machine is taken back); `node_lost`: the machine it ran on is gone."""
        with self.lock:
            job = self.jobs[job_id]
            if job.state is JobState.running:
                job.state, job.exit_code, job.oom_killed = JobState.exited, exit_code, oom_killed
                job.node_lost = node_lost


class FakeBackend:
    """One control plane's view of a `FakeCluster`, implementing `ComputeBackend`.

    Like the local backend, it knows the exit codes only of what it started itself: a replica
    or job re-adopted after a restart reports None.
    """

    name = "fake"

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.prepared = 0
        self.closed = False
        self._started: set[int] = set()  # serials of what this backend started

    @property
    def supports_adoption(self) -> bool:
        return True

    @property
    def replicas_on_network(self) -> bool:
        return self.cluster.tcp

    def prepare(self) -> None:
        self.prepared += 1

    def close(self) -> None:
        self.closed = True

    # --- replicas

    def start_replica(self, replica_id: str, spec: LaunchSpec) -> ReplicaHandle:
        if not SAFE_ID.fullmatch(replica_id):
            raise ValueError(f"a replica id must be a file-name-safe name, not {replica_id!r}")
        name = hashlib.sha256(replica_id.encode()).hexdigest()[:16] + ".sock"
        cluster = self.cluster
        if cluster.tcp:  # the port is known once it listens (`mark_ready`)
            address = tcp_address("127.0.0.1", 0)
        else:
            address = unix_address(cluster.socket_dir / name)
        with cluster.lock:
            previous = cluster.replicas.get(replica_id)
            if previous is not None and previous.state is not ReplicaState.exited:
                raise ValueError(f"replica {replica_id} is already running")
            handle = FakeReplicaHandle(
                replica_id, address, cluster.node, cluster.clock(), cluster.next_serial()
            )
            cluster.replicas[replica_id] = FakeReplica(
                handle, spec.model_copy(update={"address": address})
            )
            cluster.events.append(("start", replica_id))
            self._started.add(handle.serial)
        return handle

    def _replica(self, handle: ReplicaHandle) -> FakeReplica | None:
        """The cluster's replica of this handle; None once it is gone (or another replica of
        the same id took its place)."""
        if not isinstance(handle, FakeReplicaHandle):
            raise ValueError(f"replica {handle.replica_id} is not one of the fake backend's")
        replica = self.cluster.replicas.get(handle.replica_id)
        return replica if replica is not None and replica.handle == handle else None

    def _known(self, handle: ReplicaHandle | JobHandle, code: int | None) -> int | None:
        return code if getattr(handle, "serial", None) in self._started else None

    def status(self, handle: ReplicaHandle) -> ReplicaStatus:
        with self.cluster.lock:
            replica = self._replica(handle)
            if replica is None:
                return ReplicaStatus(ReplicaState.exited)
            if replica.state is ReplicaState.exited:
                detail = "\n".join(replica.log[-TAIL_LINES:])
                return ReplicaStatus(
                    ReplicaState.exited, self._known(handle, replica.exit_code), detail
                )
            if replica.state is ReplicaState.ready:
                return ReplicaStatus(ReplicaState.ready, address=replica.address)
            return ReplicaStatus(ReplicaState.starting)

    def stop_replica(self, handle: ReplicaHandle, grace_seconds: float = 10.0) -> int | None:
        cluster = self.cluster
        with cluster.lock:
            replica = self._replica(handle)
            if replica is None:
                return None
            alive = replica.state is not ReplicaState.exited
            forced = replica.ignores_stop
            if alive:
                replica.stops.append((grace_seconds, "forced" if forced else "graceful"))
                cluster.events.append(("stop", handle.replica_id))
        if alive and forced:
            cluster.sleep(grace_seconds)
            cluster.exit_replica(handle.replica_id, FORCED_EXIT)
        elif alive:
            cluster.exit_replica(handle.replica_id, GRACEFUL_REPLICA_EXIT, grace_seconds)
        return self._known(handle, replica.exit_code)

    def logs(self, handle: ReplicaHandle, lines: int = 100) -> list[str]:
        with self.cluster.lock:
            replica = self._replica(handle)
            return [] if replica is None or lines <= 0 else replica.log[-lines:]

    def running(self) -> list[ReplicaHandle]:
        with self.cluster.lock:
            return [
                r.handle
                for _, r in sorted(self.cluster.replicas.items())
                if r.state is not ReplicaState.exited
            ]

    # --- jobs

    def capacity(self) -> Resources:
        return self.cluster.capacity

    def start_job(self, launch: JobLaunch) -> JobHandle:
        if not SAFE_ID.fullmatch(launch.job_id):
            raise ValueError(f"a job id must be a file-name-safe name, not {launch.job_id!r}")
        if not launch.argv:
            raise ValueError(f"job {launch.job_id}: nothing to run (an empty argv)")
        if not launch.cwd.is_dir():
            raise ValueError(f"job {launch.job_id}: no folder {launch.cwd} to run in")
        cluster = self.cluster
        with cluster.lock:
            previous = cluster.jobs.get(launch.job_id)
            if previous is not None and previous.state is JobState.running:
                raise ValueError(f"job {launch.job_id} is already running")
            handle = FakeJobHandle(
                launch.job_id, cluster.node, cluster.clock(), "fake", cluster.next_serial()
            )
            cluster.jobs[launch.job_id] = FakeJob(handle, launch)
            cluster.events.append(("start", launch.job_id))
            self._started.add(handle.serial)
        return handle

    def _job(self, handle: JobHandle) -> FakeJob | None:
        if not isinstance(handle, FakeJobHandle):
            raise ValueError(f"job {handle.job_id} is not one of the fake backend's")
        job = self.cluster.jobs.get(handle.job_id)
        return job if job is not None and job.handle == handle else None

    def job_status(self, handle: JobHandle) -> JobStatus:
        with self.cluster.lock:
            job = self._job(handle)
            if job is None:
                return JobStatus(JobState.exited)
            if job.state is JobState.running:
                return JobStatus(JobState.running)
            lines = job.log.decode(errors="replace").splitlines()[-TAIL_LINES:]
            code = self._known(handle, job.exit_code)
            return JobStatus(
                JobState.exited, code, job.oom_killed, "\n".join(lines), node_lost=job.node_lost
            )

    def stop_job(self, handle: JobHandle, grace_seconds: float) -> int | None:
        cluster = self.cluster
        with cluster.lock:
            job = self._job(handle)
            if job is None:
                return None
            alive = job.state is JobState.running
            forced = job.ignores_stop
            if alive:
                job.stops.append((grace_seconds, "forced" if forced else "graceful"))
                cluster.events.append(("stop", handle.job_id))
        if alive and forced:
            cluster.sleep(grace_seconds)
        if alive:
            cluster.exit_job(handle.job_id, FORCED_EXIT if forced else GRACEFUL_JOB_EXIT)
        return self._known(handle, job.exit_code)

    def read_job_log(self, handle: JobHandle, offset: int = 0, limit: int = 1 << 20) -> bytes:
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative")
        with self.cluster.lock:
            job = self._job(handle)
            return b"" if job is None else bytes(job.log[offset : offset + limit])

    def job_record(self, handle: JobHandle) -> dict[str, Any]:
        if not isinstance(handle, FakeJobHandle):
            raise ValueError(f"job {handle.job_id} is not one of the fake backend's")
        return dataclasses.asdict(handle)

    def job_from_record(self, record: Mapping[str, Any]) -> JobHandle:
        try:
            return FakeJobHandle(
                job_id=str(record["job_id"]),
                node=str(record["node"]),
                started_at=float(record["started_at"]),
                enforcement=str(record["enforcement"]),
                serial=int(record["serial"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a fake job's record: {exc}") from None

    def running_jobs(self) -> list[JobHandle]:
        with self.cluster.lock:
            return [
                j.handle
                for _, j in sorted(self.cluster.jobs.items())
                if j.state is JobState.running
            ]

    def release_job(self, handle: JobHandle) -> None:
        with self.cluster.lock:
            job = self._job(handle)
            if job is not None and job.state is JobState.running:
                raise ValueError(f"job {handle.job_id} is still running; stop it first")
            if job is not None:
                del self.cluster.jobs[handle.job_id]


_: type[ComputeBackend] = FakeBackend  # mypy holds the fake to the Protocol


class InProcessServer:
    """A ready fake replica served for real: `serve` runs on an event loop of its own in a
    thread, so it answers whoever dials it, whatever loop (or none) the test runs."""

    def __init__(self, serve: Serve, spec: LaunchSpec) -> None:
        self._serve = serve
        self._spec = spec
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._listening = threading.Event()
        self._address = ""
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="stratus-fake-replica", daemon=True)

    def start(self, timeout: float = 30.0) -> str:
        """Serve; the address it accepts connections on, once it does.

        Raises:
            RuntimeError: `serve` failed or did not listen within `timeout` seconds.
        """
        self._thread.start()
        if not self._listening.wait(timeout) or not self._address:
            self.stop(0.0)
            raise RuntimeError(f"the in-process replica did not listen: {self._error!r}")
        return self._address

    def stop(self, grace: float) -> None:
        """Ask it to stop (it answers what it holds), wait up to `grace` seconds, then cut
        every connection; a grace of 0 is a crash."""
        if grace > 0 and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: it is gone already
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(grace)
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._cancel_all)
            self._thread.join(10.0)

    @staticmethod
    def _cancel_all() -> None:
        for task in asyncio.all_tasks():
            task.cancel()

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # cancelled (a crash), or `serve` failed
            self._error = self._error or exc
        finally:
            self._listening.set()
            # as asyncio.run ends: what is left (connections being served) is cancelled
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()

        def listening(address: str) -> None:
            self._address = address
            self._listening.set()

        await self._serve(self._spec, self._stop, listening)
