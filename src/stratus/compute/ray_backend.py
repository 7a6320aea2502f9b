"""Run replicas and training jobs on a Ray cluster (`compute.backend = "ray"`). The only module
that imports `ray`; `backends.py` imports it only when this backend is chosen.

Each replica and each job is a named, detached Ray actor (`ray_node.NodeProcess`) in the control
plane's namespace, wrapping one child process on whatever node Ray placed it: the replica program
(listening on TCP at its node's address) or the job's argv. The actor keeps the process's log on
its node and answers for it: where it listens, whether it runs, its exit code, its log. A
restarted control plane finds the actors again by name. A lost node takes its actors along: they
are reported exited, with the last log lines this control plane read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from pydantic import BaseModel, Field
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from stratus.compute import limits
from stratus.compute.backend import (
    SAFE_ID,
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
from stratus.compute.processes import LOG_TAIL_LINES
from stratus.compute.ray_node import (
    KILL_WAIT_SECONDS,
    REPLICA_MODULE,
    NodeProcess,
    folder_files,
    start_fork_server,
)
from stratus.compute.rotating_logs import LOG_BACKUPS, LOG_MAX_BYTES
from stratus.core.errors import ServiceUnavailable

log = logging.getLogger("stratus.compute.ray")

REPLICA_PREFIX = "stratus-replica-"
JOB_PREFIX = "stratus-job-"
ENFORCEMENT = "ray+rlimit"  # Ray reserves the CPUs, memory and GPUs; RLIMIT_DATA bounds memory
PENDING = "pending"  # a handle's node until Ray has placed its actor
# Ray keeps resource amounts as int64 ten-thousandths: `memory=10**15` wraps around and is
# scheduled anywhere. Nothing bigger than this is asked for.
MAX_MEMORY_BYTES = 1 << 49  # 512 TiB
ACTOR_THREADS = 8  # a stop waiting out its grace period leaves the actor answering
KEPT_LINES = 200  # of a replica's log, kept here to show once it is gone
WARM_CHECK_SECONDS = 10.0  # how often starting a replica looks for nodes to warm
ENDED_KEPT = 1000  # ended replicas and jobs remembered (exit code, last lines)

_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class RayBackendConfig(BaseModel):
    """Settings of the Ray compute backend."""

    address: str = Field(pattern=_ADDRESS.pattern, description="the GCS's HOST:PORT")
    namespace: str = Field("stratus", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    state_dir: Path | None = None  # the control plane's own folder (nothing kept there yet)
    # on every node: logs, job folders; None: `stratus-ray` in the node's temp dir
    node_dir: Path | None = None
    # on every node: the artifacts replicas fetch; None: `<node_dir>/artifacts`
    cache_dir: Path | None = None
    # custom resources every replica and job asks for (to keep them on some nodes)
    resources: dict[str, float] = Field(default_factory=dict)
    replica_cpus: float = Field(0.25, gt=0, le=1024)
    replica_memory_bytes: int | None = Field(None, gt=0, le=MAX_MEMORY_BYTES)
    # replicas are forked by a server on each node that imported these once (a replica then
    # starts in well under a second instead of seconds); it exits after this long unused
    preload: list[str] = Field(default=["numpy", "sklearn", "skops.io", "onnxruntime", "s3fs"])
    fork_server: bool = True
    fork_server_idle_seconds: float = Field(600.0, gt=0)
    connect_timeout_seconds: float = Field(10.0, gt=0)
    call_timeout_seconds: float = Field(5.0, gt=0)  # for a method of a replica's or job's actor
    placement_timeout_seconds: float = Field(10.0, ge=0)  # start_* waits this long for a node
    max_job_files_bytes: int = Field(64 << 20, ge=0)  # the job's folder, sent to its node
    log_cache_bytes: int = Field(4 << 20, ge=0)  # of a job's log, copied here as it runs
    log_max_bytes: int = Field(LOG_MAX_BYTES, ge=1024)  # a replica's log is rotated past it
    log_backups: int = Field(LOG_BACKUPS, ge=0, le=20)


@dataclass(frozen=True)
class RayReplicaHandle(ReplicaHandle):
    """A replica run by the actor `actor` of the namespace; `instance` tells it from a later one
    started under the same id ("" when adopted before it answered)."""

    actor: str
    instance: str
    node_id: str = ""
    pid: int | None = None  # of the replica process, on its node

    def details(self) -> dict[str, str | int]:
        return _details(self.actor, self.node_id, self.pid)


@dataclass(frozen=True)
class RayJobHandle(JobHandle):
    """A job run by the actor `actor` of the namespace."""

    actor: str
    instance: str
    node_id: str = ""
    pid: int | None = None

    def details(self) -> dict[str, str | int]:
        return _details(self.actor, self.node_id, self.pid)


def _details(actor: str, node_id: str, pid: int | None) -> dict[str, str | int]:
    # no "pid": it is a process of another machine, and the API's `pid` is one to signal here
    return {"actor": actor, "ray_node": node_id}


@dataclass(frozen=True)
class _Ended:
    """What is known of a replica or job whose actor is gone."""

    exit_code: int | None
    lines: list[str]
    detail: str
    node_lost: bool = False


class _Gone(Exception):
    """The actor is gone (or runs another instance); the message says why, when known."""


# --- on the node ------------------------------------------------------------------------------


class _OnRayNode(NodeProcess):
    """`NodeProcess` told where it runs."""

    def __init__(self, *args: Any) -> None:
        node = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        node_id = ray.get_runtime_context().get_node_id()
        super().__init__((node, node_id), *args)


_NodeProcessActor = ray.remote(_OnRayNode)


@ray.remote(num_cpus=0)
def _warm_node(node_dir: str, namespace: str, idle_seconds: float, preload: list[str]) -> None:
    """Start the node's fork server for the namespace (`node_forker.py`)."""
    node_id = ray.get_runtime_context().get_node_id()
    start_fork_server(node_dir, namespace, node_id, idle_seconds, preload)


# --- on the control plane -------------------------------------------------------------------

_driver_lock = threading.Lock()
_driver_users = 0  # backends of this process using its one Ray connection
_driver_address: str | None = None  # what this module connected to (None: not connected by it)


def _reachable(address: str, timeout: float) -> None:
    """Fail fast when nothing listens at the GCS address (Ray itself blocks for long)."""
    match = _ADDRESS.match(address)
    assert match is not None  # the config's pattern
    host, port = match.group(1).strip("[]"), int(match.group(2))
    try:
        with socket.create_connection((host, port), timeout):
            pass
    except OSError as exc:
        raise ServiceUnavailable(
            f"cannot reach the Ray cluster at {address} ({exc}); is `ray start --head` "
            "running there, and is compute.ray.address right?"
        ) from None


def _why(exc: BaseException) -> str:
    """The last line Ray gives of why an actor died."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _replica(handle: ReplicaHandle) -> RayReplicaHandle:
    if not isinstance(handle, RayReplicaHandle):
        raise ValueError(f"replica {handle.replica_id} is not one of the Ray backend's")
    return handle


def _job(handle: JobHandle) -> RayJobHandle:
    if not isinstance(handle, RayJobHandle):
        raise ValueError(f"job {handle.job_id} is not one of the Ray backend's")
    return handle


class RayBackend:
    """Replicas and jobs as detached actors of a Ray cluster; they outlive the control plane.

    Thread-safe: the controllers call it from several threads at once.
    """

    name = "ray"

    def __init__(self, config: RayBackendConfig) -> None:
        self.config = config
        self.namespace = config.namespace
        self._connected = False
        self._lock = threading.RLock()
        self._actors: dict[str, Any] = {}  # actor name -> its handle
        self._asking: dict[str, Any] = {}  # actor name -> an `info` call not answered yet
        self._seen: dict[str, dict[str, Any]] = {}  # actor name -> its last answer
        self._ended: OrderedDict[tuple[str, str], _Ended] = OrderedDict()
        self._tails: dict[tuple[str, str], list[str]] = {}  # a replica's last lines read
        self._job_logs: dict[tuple[str, str], bytearray] = {}  # a job's log from its start
        self._warmed: set[str] = set()  # Ray node ids whose fork server was started
        self._warmed_at = 0.0  # when the nodes were last looked at for new ones

    @property
    def supports_adoption(self) -> bool:
        return True

    @property
    def replicas_on_network(self) -> bool:
        return True  # on TCP, at their node's address

    # -- the connection

    def prepare(self) -> None:
        """Connect, and start the fork server of every node that can take a replica."""
        self._connect()
        self._warm_nodes()

    def _warm_nodes(self) -> None:
        """Start the fork server on each live node with room for replicas not warmed yet
        (a zero-CPU task pinned to the node; not waited for)."""
        if not self.config.fork_server:
            return
        with contextlib.suppress(RayError, ConnectionError):
            nodes = ray.nodes()  # type: ignore[no-untyped-call]
            for node in nodes:
                have = node.get("Resources", {})
                fits = have.get("CPU", 0.0) >= self.config.replica_cpus and all(
                    have.get(name, 0.0) >= amount for name, amount in self.config.resources.items()
                )
                if not node.get("Alive") or not fits or node["NodeID"] in self._warmed:
                    continue
                self._warmed.add(node["NodeID"])
                _warm_node.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
                ).remote(
                    str(self.config.node_dir or ""),
                    self.namespace,
                    self.config.fork_server_idle_seconds,
                    [REPLICA_MODULE, *self.config.preload],
                )

    def _connect(self) -> None:
        global _driver_users, _driver_address
        with self._lock:
            if self._connected:
                return
            with _driver_lock:
                address = self.config.address
                if not ray.is_initialized():
                    _reachable(address, self.config.connect_timeout_seconds)
                    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                    try:
                        ray.init(
                            address=address,
                            namespace=self.namespace,
                            ignore_reinit_error=True,
                            log_to_driver=False,
                            logging_level=logging.WARNING,
                        )
                    except (ConnectionError, RuntimeError, TimeoutError, RayError) as exc:
                        # a driver attaches to a Ray node of its own machine
                        hint = (
                            "; this machine must be a node of the cluster too (`ray start "
                            f"--address={address} --num-cpus=0`)"
                            if "No node info found" in str(exc)
                            else ""
                        )
                        raise ServiceUnavailable(
                            f"cannot connect to the Ray cluster at {address}: {exc}{hint}"
                        ) from exc
                    _driver_address = address
                elif _driver_address not in (None, address):
                    raise ServiceUnavailable(
                        f"this process is connected to the Ray cluster at {_driver_address}; "
                        f"it cannot use the one at {address} too"
                    )
                _driver_users += 1
            self._connected = True

    def close(self) -> None:
        """Disconnect (the last backend of this process to close ends its Ray connection);
        replicas and jobs keep running."""
        global _driver_users, _driver_address
        with self._lock:
            if not self._connected:
                return
            self._connected = False
            self._actors.clear()
            self._asking.clear()
            with _driver_lock:
                _driver_users -= 1
                if _driver_users == 0 and _driver_address is not None:
                    ray.shutdown()
                    _driver_address = None

    # -- actors

    def _actor(self, name: str) -> Any | None:
        with self._lock:
            actor = self._actors.get(name)
        if actor is None:
            try:
                actor = ray.get_actor(name, namespace=self.namespace)
            except ValueError:  # no live actor of that name
                return None
            with self._lock:
                self._actors[name] = actor
        return actor

    def _forget(self, name: str) -> None:
        with self._lock:
            self._actors.pop(name, None)
            self._asking.pop(name, None)

    def _ask(self, name: str, instance: str) -> dict[str, Any] | None:
        """The actor's `info`; None when it does not answer in time (not placed yet, or its
        node unreachable for the moment: a call still pending is checked again next time).

        Raises:
            _Gone: the actor is dead, or runs a later instance.
        """
        actor = self._actor(name)
        if actor is None:
            raise _Gone(f"no actor {name} is left in Ray namespace {self.namespace}")
        with self._lock:
            ref = self._asking.pop(name, None)
        wait = 0.0 if ref is not None else self.config.call_timeout_seconds
        if ref is None:
            ref = actor.info.remote()
        done, _ = ray.wait([ref], timeout=wait)
        if not done:
            with self._lock:
                self._asking.setdefault(name, ref)
            return None
        try:
            info: dict[str, Any] = ray.get(ref)
        except ActorUnavailableError:
            return None
        except RayActorError as exc:  # died: killed, or lost with its node
            self._forget(name)
            raise _Gone(_why(exc)) from None
        if instance and info["instance"] != instance:
            raise _Gone(f"actor {name} runs a later instance")
        with self._lock:
            self._seen[name] = info
        return info

    def _call(self, name: str, method: str, *args: Any, timeout: float | None = None) -> Any:
        """A method of the actor; raises _Gone when it is dead or does not answer in time."""
        actor = self._actor(name)
        if actor is None:
            raise _Gone(f"no actor {name} is left in Ray namespace {self.namespace}")
        try:
            return ray.get(
                getattr(actor, method).remote(*args),
                timeout=timeout or self.config.call_timeout_seconds,
            )
        except (RayActorError, GetTimeoutError) as exc:
            raise _Gone(_why(exc)) from None

    def _release(self, name: str, clean_up: bool = True) -> None:
        """Remove the actor's files on its node (when it answers), then kill it."""
        actor = self._actor(name)
        if actor is None:
            return
        if clean_up:
            with contextlib.suppress(_Gone):
                self._call(name, "clean_up")
        with contextlib.suppress(RayError, ValueError):
            ray.kill(actor, no_restart=True)
        self._forget(name)

    def _clear_name(self, name: str, what: str) -> None:
        """Make room for a new actor `name`: refuse while its process runs; release one whose
        process is gone."""
        if self._actor(name) is None:
            return
        try:
            info = self._ask(name, "")
        except _Gone:
            return
        if info is None or info["running"]:
            raise ValueError(f"{what} is already running on Ray")
        self._release(name)

    def _create(
        self, name: str, options: dict[str, Any], kind: str, ident: str, launch: dict[str, Any]
    ) -> tuple[Any, str, float]:
        """Create the actor (Ray places it when a node has room); it starts the process."""
        instance, started_at = uuid.uuid4().hex, time.time()
        node_dir = str(self.config.node_dir) if self.config.node_dir else ""
        actor = _NodeProcessActor.options(
            name=name,
            namespace=self.namespace,
            lifetime="detached",
            max_restarts=0,
            max_concurrency=ACTOR_THREADS,
            scheduling_strategy="SPREAD",
            resources=dict(self.config.resources) or None,
            **options,
        ).remote(kind, ident, instance, started_at, self.namespace, node_dir, launch)
        with self._lock:
            self._actors[name] = actor
        return actor, instance, started_at

    def _placed(self, name: str, actor: Any) -> dict[str, Any] | None:
        """The new actor's `info` once Ray has placed and started it, within the placement
        timeout; None if it is still pending (it starts when a node has room)."""
        ref = actor.info.remote()
        done, _ = ray.wait([ref], timeout=self.config.placement_timeout_seconds)
        if not done:
            with self._lock:
                self._asking[name] = ref
            return None
        try:
            info: dict[str, Any] = ray.get(ref)
        except RayActorError:
            return None  # status() will tell
        return info

    def _end(self, key: tuple[str, str], ended: _Ended, replace: bool = True) -> _Ended:
        """Remember how a replica or job ended (`replace`: over what another thread found)."""
        with self._lock:
            if not replace and key in self._ended:
                return self._ended[key]
            self._ended[key] = ended
            while len(self._ended) > ENDED_KEPT:
                self._ended.popitem(last=False)
            self._tails.pop(key, None)
        return ended

    def _gone(self, node: str, node_id: str, name: str, why: str) -> tuple[str, bool]:
        """What to say of an actor that is gone without being stopped here, and whether its
        node was lost (else it was killed, or crashed, on a node still there)."""
        seen = self._seen.get(name, {})
        node, node_id = seen.get("node") or node, seen.get("node_id") or node_id
        alive = None
        if node_id:
            with contextlib.suppress(RayError, ConnectionError):
                states = {n["NodeID"]: n["Alive"] for n in ray.nodes()}  # type: ignore[no-untyped-call]
                alive = bool(states.get(node_id, False))
        lost = not alive if alive is not None else "node" in why.lower()
        if lost:
            return f"stratus: lost with its Ray node {node} ({why})", True
        return f"stratus: its Ray actor {name} on node {node} is gone ({why})", False

    # -- replicas

    def start_replica(self, replica_id: str, spec: LaunchSpec) -> ReplicaHandle:
        if not SAFE_ID.fullmatch(replica_id):
            raise ValueError(f"a replica id must be a file-name-safe name, not {replica_id!r}")
        self._connect()
        if time.monotonic() - self._warmed_at > WARM_CHECK_SECONDS:
            self._warmed_at = time.monotonic()
            self._warm_nodes()  # a node that joined since: warm for the next replicas
        name = REPLICA_PREFIX + replica_id
        self._clear_name(name, f"replica {replica_id}")
        cache = str(self.config.cache_dir) if self.config.cache_dir else ""
        launch = {
            "spec": spec.model_dump_json(),  # where it listens is set on its node
            "cache_dir": cache,
            "max_bytes": self.config.log_max_bytes,
            "backups": self.config.log_backups,
            "preload": [REPLICA_MODULE, *self.config.preload],
            "fork_idle_seconds": self.config.fork_server_idle_seconds
            if self.config.fork_server
            else 0.0,
        }
        options = {"num_cpus": self.config.replica_cpus, "memory": self.config.replica_memory_bytes}
        actor, instance, started_at = self._create(name, options, "replica", replica_id, launch)
        info = self._placed(name, actor) or {}
        handle = RayReplicaHandle(
            replica_id=replica_id,
            address=info.get("address", ""),
            node=info.get("node", PENDING),
            started_at=started_at,
            actor=name,
            instance=instance,
            node_id=info.get("node_id", ""),
            pid=info.get("pid"),
        )
        log.info("started replica %s on Ray node %s", replica_id, handle.node)
        return handle

    def status(self, handle: ReplicaHandle) -> ReplicaStatus:
        replica = _replica(handle)
        key = (replica.actor, replica.instance)
        if (ended := self._ended.get(key)) is not None:
            return ReplicaStatus(ReplicaState.exited, ended.exit_code, ended.detail)
        self._connect()
        try:
            info = self._ask(replica.actor, replica.instance)
        except _Gone as gone:
            lines = self._tails.get(key, [])
            lost, _ = self._gone(replica.node, replica.node_id, replica.actor, str(gone))
            last = "\n".join([*lines[-LOG_TAIL_LINES + 1 :], lost])
            ended = self._end(key, _Ended(None, [*lines, lost], last), replace=False)
            return ReplicaStatus(ReplicaState.exited, ended.exit_code, ended.detail)
        if info is None:  # no answer for now: as last seen
            info = self._seen.get(replica.actor) or {"running": True, "address": ""}
        if info["running"]:
            if info["address"]:
                return ReplicaStatus(ReplicaState.ready, address=info["address"])
            return ReplicaStatus(ReplicaState.starting)
        try:  # it exited: keep its last lines, then let its actor go
            lines = self._call(replica.actor, "tail", KEPT_LINES)
        except _Gone:
            lines = self._tails.get(key, [])
        self._release(replica.actor)
        detail = "\n".join(lines[-LOG_TAIL_LINES:])
        ended = self._end(key, _Ended(info["exit_code"], lines, detail))
        return ReplicaStatus(ReplicaState.exited, ended.exit_code, ended.detail)

    def stop_replica(self, handle: ReplicaHandle, grace_seconds: float = 10.0) -> int | None:
        replica = _replica(handle)
        key = (replica.actor, replica.instance)
        if (ended := self._ended.get(key)) is not None:
            return ended.exit_code
        self._connect()
        try:
            info = self._ask(replica.actor, replica.instance)
        except _Gone as gone:
            lost, _ = self._gone(replica.node, replica.node_id, replica.actor, str(gone))
            ended = self._end(key, _Ended(None, [*self._tails.get(key, []), lost], lost), False)
            return ended.exit_code
        code: int | None = None
        lines = self._tails.get(key, [])
        if info is not None:  # it answers: ask it to stop, then keep its last lines
            timeout = grace_seconds + 2 * KILL_WAIT_SECONDS + self.config.call_timeout_seconds
            with contextlib.suppress(_Gone):
                code = self._call(replica.actor, "stop", grace_seconds, timeout=timeout)
            with contextlib.suppress(_Gone):
                lines = self._call(replica.actor, "tail", KEPT_LINES)
        self._release(replica.actor, clean_up=info is not None)
        self._end(key, _Ended(code, lines, "\n".join(lines[-LOG_TAIL_LINES:])))
        log.info("stopped replica %s (exit code %s)", replica.replica_id, code)
        return code

    def logs(self, handle: ReplicaHandle, lines: int = 100) -> list[str]:
        replica = _replica(handle)
        key = (replica.actor, replica.instance)
        if (ended := self._ended.get(key)) is not None:
            return ended.lines[-lines:] if lines > 0 else []
        self._connect()
        try:
            found: list[str] = self._call(replica.actor, "tail", max(lines, KEPT_LINES))
        except _Gone:
            found = self._tails.get(key, [])
        else:
            with self._lock:
                self._tails[key] = found[-KEPT_LINES:]
        return found[-lines:] if lines > 0 else []

    def running(self) -> list[ReplicaHandle]:
        handles: list[ReplicaHandle] = []
        for name, info in self._named(REPLICA_PREFIX):
            replica_id = name[len(REPLICA_PREFIX) :]
            if info is not None and not info["running"]:
                log.info("dropping replica %s: its process is gone", replica_id)
                self._release(name)
                continue
            info = info or {}
            handles.append(
                RayReplicaHandle(
                    replica_id=replica_id,
                    address=info.get("address", ""),
                    node=info.get("node", PENDING),
                    started_at=info.get("started_at", time.time()),
                    actor=name,
                    instance=info.get("instance", ""),
                    node_id=info.get("node_id", ""),
                    pid=info.get("pid"),
                )
            )
        return handles

    def _named(self, prefix: str) -> list[tuple[str, dict[str, Any] | None]]:
        """The live actors of the namespace named with `prefix`, each with its `info` (None:
        no answer in time, such as an actor still waiting for a node)."""
        self._connect()
        names = sorted(
            entry["name"]
            for entry in ray.util.list_named_actors(all_namespaces=True)
            if entry["namespace"] == self.namespace and entry["name"].startswith(prefix)
        )
        asked = {}
        for name in names:
            actor = self._actor(name)
            if actor is not None:
                asked[name] = actor.info.remote()
        if asked:
            timeout = self.config.call_timeout_seconds
            ray.wait(list(asked.values()), num_returns=len(asked), timeout=timeout)
        found: list[tuple[str, dict[str, Any] | None]] = []
        for name, ref in asked.items():
            done, _ = ray.wait([ref], timeout=0)
            if not done:
                with self._lock:
                    self._asking[name] = ref
                found.append((name, None))
                continue
            try:
                info = ray.get(ref)
            except ActorUnavailableError:
                found.append((name, None))
                continue
            except RayActorError:
                self._forget(name)
                continue  # died meanwhile
            with self._lock:
                self._seen[name] = info
            found.append((name, info))
        return found

    # -- jobs

    def capacity(self) -> Resources:
        self._connect()
        total = ray.cluster_resources()  # type: ignore[no-untyped-call]
        return Resources(
            vcpus=float(total.get("CPU", 0.0)),
            memory_bytes=int(total.get("memory", 0)),
            gpus=int(total.get("GPU", 0)),
        )

    def start_job(self, launch: JobLaunch) -> JobHandle:
        job_id, resources = launch.job_id, launch.resources
        if not SAFE_ID.fullmatch(job_id):
            raise ValueError(f"a job id must be a file-name-safe name, not {job_id!r}")
        if not launch.argv:
            raise ValueError(f"job {job_id}: nothing to run (an empty argv)")
        if not launch.cwd.is_dir():
            raise ValueError(f"job {job_id}: no folder {launch.cwd} to run in")
        if not 0 < resources.vcpus <= 1 << 20 or resources.gpus < 0:
            raise ValueError(f"job {job_id}: bad resources {resources}")
        if not 0 <= resources.memory_bytes <= MAX_MEMORY_BYTES:
            raise ValueError(
                f"job {job_id}: {resources.memory_bytes} bytes of memory is more than Ray can "
                f"reserve ({MAX_MEMORY_BYTES >> 40} TiB at most)"
            )
        files = folder_files(launch.cwd, self.config.max_job_files_bytes)
        self._connect()
        name = JOB_PREFIX + job_id
        self._clear_name(name, f"job {job_id}")
        payload = {
            "argv": list(launch.argv),
            "env": dict(launch.env),
            "files": files,
            "memory": resources.memory_bytes,
            "cwd": str(launch.cwd),
        }
        options = {
            "num_cpus": resources.vcpus,
            "memory": resources.memory_bytes or None,
            "num_gpus": resources.gpus,
        }
        actor, instance, started_at = self._create(name, options, "job", job_id, payload)
        info = self._placed(name, actor) or {}
        if info.get("error"):
            self._release(name)
            raise OSError(info["error"])
        handle = RayJobHandle(
            job_id=job_id,
            node=info.get("node", PENDING),
            started_at=started_at,
            enforcement=ENFORCEMENT,
            actor=name,
            instance=instance,
            node_id=info.get("node_id", ""),
            pid=info.get("pid"),
        )
        log.info("started job %s on Ray node %s", job_id, handle.node)
        return handle

    def job_status(self, handle: JobHandle) -> JobStatus:
        job = _job(handle)
        key = (job.actor, job.instance)
        if (ended := self._ended.get(key)) is not None:
            return JobStatus(JobState.exited, ended.exit_code, detail=ended.detail,
                             node_lost=ended.node_lost)  # fmt: skip
        self._connect()
        try:
            info = self._ask(job.actor, job.instance)
        except _Gone as gone:
            lines = self._log_copy(key).decode(errors="replace").splitlines()
            lost, node_lost = self._gone(job.node, job.node_id, job.actor, str(gone))
            last = "\n".join([*lines[-LOG_TAIL_LINES + 1 :], lost])
            ended = self._end(key, _Ended(None, [], last, node_lost), replace=False)
            return JobStatus(JobState.exited, ended.exit_code, detail=ended.detail,
                             node_lost=ended.node_lost)  # fmt: skip
        if info is None or info["running"]:
            if info is not None:
                self._follow_log(job, key, info["log_size"])
            return JobStatus(JobState.running)
        try:
            detail = "\n".join(self._call(job.actor, "tail", LOG_TAIL_LINES))
        except _Gone:
            detail = info["error"]
        code = info["exit_code"]
        oom = code not in (0, None) and limits.oom_killed(None, detail)
        return JobStatus(JobState.exited, code, oom, detail)

    def stop_job(self, handle: JobHandle, grace_seconds: float) -> int | None:
        job = _job(handle)
        key = (job.actor, job.instance)
        if (ended := self._ended.get(key)) is not None:
            return ended.exit_code
        self._connect()
        try:
            info = self._ask(job.actor, job.instance)
        except _Gone:
            return None
        if info is None:  # not placed yet, or out of reach: nothing to ask it
            log.warning("job %s does not answer; killing its Ray actor", job.job_id)
            self._release(job.actor, clean_up=False)
            lines = self._log_copy(key).decode(errors="replace").splitlines()
            killed = f"stratus: killed its Ray actor {job.actor}, which did not answer"
            self._end(key, _Ended(None, [], "\n".join([*lines[-LOG_TAIL_LINES + 1 :], killed])))
            return None
        timeout = grace_seconds + 2 * KILL_WAIT_SECONDS + self.config.call_timeout_seconds
        try:
            code: int | None = self._call(job.actor, "stop", grace_seconds, timeout=timeout)
        except _Gone:
            return None
        return code

    def read_job_log(self, handle: JobHandle, offset: int = 0, limit: int = 1 << 20) -> bytes:
        job = _job(handle)
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative")
        key = (job.actor, job.instance)
        if key not in self._ended:
            self._connect()
            try:
                data: bytes = self._call(job.actor, "read", offset, limit)
            except _Gone:
                pass
            else:
                self._keep_log(key, offset, data)
                return data
        return bytes(self._log_copy(key)[offset : offset + limit])

    def _follow_log(self, job: RayJobHandle, key: tuple[str, str], size: int) -> None:
        """Copy what the running job wrote since the last look (up to `log_cache_bytes` in
        all), so that its log is not all gone if its node is lost."""
        done = len(self._log_copy(key))
        want = min(self.config.log_cache_bytes - done, size - done, 1 << 20)
        if want > 0:
            with contextlib.suppress(_Gone):
                self._keep_log(key, done, self._call(job.actor, "read", done, want))

    def _log_copy(self, key: tuple[str, str]) -> bytearray:
        with self._lock:
            return self._job_logs.get(key, bytearray())

    def _keep_log(self, key: tuple[str, str], offset: int, data: bytes) -> None:
        """Extend the copy of the job's log (from its start, up to `log_cache_bytes`) with
        what was just read, when it follows on."""
        with self._lock:
            copy = self._job_logs.setdefault(key, bytearray())
            room = self.config.log_cache_bytes - len(copy)
            if offset <= len(copy) < offset + len(data) and room > 0:
                copy += data[len(copy) - offset :][:room]

    def job_record(self, handle: JobHandle) -> dict[str, Any]:
        return dataclasses.asdict(_job(handle))

    def job_from_record(self, record: Mapping[str, Any]) -> JobHandle:
        try:
            pid = record.get("pid")
            return RayJobHandle(
                job_id=str(record["job_id"]),
                node=str(record["node"]),
                started_at=float(record["started_at"]),
                enforcement=str(record["enforcement"]),
                actor=str(record["actor"]),
                instance=str(record["instance"]),
                node_id=str(record.get("node_id") or ""),
                pid=None if pid is None else int(pid),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a Ray job's record: {exc}") from None

    def running_jobs(self) -> list[JobHandle]:
        handles: list[JobHandle] = []
        for name, info in self._named(JOB_PREFIX):
            if info is not None and not info["running"]:
                continue  # exited: its actor holds its log until release_job
            info = info or {}
            handles.append(
                RayJobHandle(
                    job_id=name[len(JOB_PREFIX) :],
                    node=info.get("node", PENDING),
                    started_at=info.get("started_at", time.time()),
                    enforcement=ENFORCEMENT,
                    actor=name,
                    instance=info.get("instance", ""),
                    node_id=info.get("node_id", ""),
                    pid=info.get("pid"),
                )
            )
        return handles

    def release_job(self, handle: JobHandle) -> None:
        job = _job(handle)
        key = (job.actor, job.instance)
        if key not in self._ended:
            self._connect()
            with contextlib.suppress(_Gone):
                info = self._ask(job.actor, job.instance)
                if info is None or info["running"]:
                    raise ValueError(f"job {job.job_id} is still running; stop it first")
                status = self.job_status(handle)
                self._release(job.actor)
                self._end(key, _Ended(status.exit_code, [], status.detail))
        with self._lock:
            self._job_logs.pop(key, None)
