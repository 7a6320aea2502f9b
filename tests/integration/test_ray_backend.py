"""The Ray compute backend on a real Ray cluster (a head and two workers on loopback addresses):
a replica runs on a worker and refuses a connection without its secret, the replicas of a
variant spread over the workers, a job runs on a worker in a copy of its folder, and losing a
node shows its replica and its job exited, the job as lost with its node."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from stratus.compute import node_forker  # noqa: E402
from stratus.compute.addresses import parse_address  # noqa: E402
from stratus.compute.backend import (  # noqa: E402
    JobLaunch,
    JobState,
    ReplicaHandle,
    ReplicaState,
    ReplicaStatus,
)
from stratus.compute.backends import open_backend  # noqa: E402
from stratus.compute.limits import Resources  # noqa: E402
from stratus.compute.processes import proc_stat  # noqa: E402
from stratus.compute.ray_backend import RayBackend  # noqa: E402
from stratus.compute.ray_node import fork_server_folder, namespace_folder  # noqa: E402
from stratus.core.errors import ServiceUnavailable  # noqa: E402
from stratus.serving.connections import ReplicaConnection, ReplicaGone  # noqa: E402
from stratus.serving.replica import ReplicaSpec  # noqa: E402
from stratus.serving.wire import REQUEST, Kind  # noqa: E402
from stratus.testing import free_port, wait_for  # noqa: E402

SECRET = "ray-test-secret-" + "r" * 16
TIMEOUT = 120.0  # seconds a replica may take to start, on a busy machine
RUNS = "import time; print('started', flush=True); time.sleep(600)"
LOST_WITHIN = 60.0  # seconds from losing a node to seeing what ran there exited (~3 s here)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    skops_io = pytest.importorskip("skops.io")
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("ray-model")
    skops_io.dump(LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1]), folder / "m.skops")
    return folder


def spec(model_dir: Path, variant: str = "main") -> ReplicaSpec:
    return ReplicaSpec(
        model_dir=model_dir,
        flavor="sklearn",
        model_name="tiny",
        model_version=1,
        variant=variant,
        secret=SECRET,
    )


@pytest.fixture
def open_ray(ray_cluster: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Opens Ray backends (through the registry, as the platform does) in a namespace of this
    test's own, on the workers only; stops whatever they left running."""
    for name, value in ray_cluster.env.items():
        monkeypatch.setenv(name, value)
    namespace = f"it-{uuid.uuid4().hex[:8]}"
    opened: list[RayBackend] = []

    def open_one(**options: Any) -> RayBackend:
        settings = {
            "address": ray_cluster.address,
            "namespace": namespace,
            "state_dir": str(tmp_path / "state"),
            "node_dir": str(tmp_path / "nodes"),  # every node is on this machine
            "resources": {"worker_node": 0.01},
            **options,
        }
        backend = open_backend("ray", settings)
        assert isinstance(backend, RayBackend)
        opened.append(backend)
        return backend

    yield open_one
    if opened:
        backend = opened[0]
        for handle in backend.running():
            backend.stop_replica(handle, 2.0)
        for job in backend.running_jobs():
            backend.stop_job(job, 2.0)
        for entry in ray.util.list_named_actors(all_namespaces=True):
            if entry["namespace"] == namespace:
                with contextlib.suppress(ValueError):
                    ray.kill(ray.get_actor(entry["name"], namespace=namespace))
    for backend in opened:
        backend.close()


def wait_ready(backend: RayBackend, handle: ReplicaHandle) -> ReplicaStatus:
    def ready() -> ReplicaStatus | None:
        status = backend.status(handle)
        assert status.state is not ReplicaState.exited, status.detail
        return status if status.state is ReplicaState.ready else None

    found: ReplicaStatus = wait_for(f"replica {handle.replica_id}", ready, TIMEOUT, 0.05)
    return found


def greet(address: str, secret: str) -> dict[str, Any]:
    async def hello() -> dict[str, Any]:
        connection = await ReplicaConnection.open(address, secret)
        await connection.close()
        return connection.hello

    return asyncio.run(hello())


@pytest.mark.ray
def test_a_replica_runs_on_a_worker_and_refuses_a_connection_without_its_secret(
    open_ray: Any, ray_cluster: Any, model_dir: Path
) -> None:
    backend = open_ray()
    handle = backend.start_replica("it-one", spec(model_dir))
    ready = wait_ready(backend, handle)
    where = parse_address(ready.address)
    assert where.scheme == "tcp" and where.host in ray_cluster.worker_ips
    assert handle.node == where.host

    assert greet(ready.address, SECRET)["model"] == "tiny"
    with pytest.raises(ReplicaGone):
        greet(ready.address, "not-" + SECRET)
    # a client that skips the secret and sends a request frame gets nothing back, not even
    # the greeting: the replica hangs up
    with socket.create_connection((where.host, where.port), timeout=10) as raw:
        raw.sendall(REQUEST.pack(1, 2, Kind.PLAIN_PREDICT, 0) + b"{}")
        assert raw.recv(1024) == b""

    assert backend.stop_replica(handle, grace_seconds=10.0) == 0
    assert backend.status(handle).state is ReplicaState.exited
    assert backend.running() == []


@pytest.mark.ray
def test_the_replicas_of_a_variant_spread_over_the_workers(
    open_ray: Any, ray_cluster: Any, model_dir: Path
) -> None:
    backend = open_ray()
    handles = [backend.start_replica(f"it-spread-{i}", spec(model_dir)) for i in range(2)]
    for handle in handles:
        wait_ready(backend, handle)
    # a restarted control plane sees the same placement
    nodes = {h.replica_id: h.node for h in open_ray().running()}
    assert sorted(nodes.values()) == sorted(ray_cluster.worker_ips)
    for handle in handles:
        backend.stop_replica(handle, grace_seconds=10.0)


@pytest.mark.ray
def test_replicas_are_forked_by_the_fork_server_of_their_own_node(
    open_ray: Any, ray_cluster: Any, model_dir: Path
) -> None:
    backend = open_ray()
    backend.prepare()  # starts a fork server on each node that can take replicas
    workers = [
        node["NodeID"]
        for node in ray.nodes()
        if node["Alive"] and node["NodeManagerAddress"] in ray_cluster.worker_ips
    ]
    spaces = namespace_folder(str(backend.config.node_dir), backend.namespace)
    folders = {node_id: fork_server_folder(spaces, node_id) for node_id in workers}
    wait_for(
        "a fork server on each worker",
        lambda: all(node_forker.running(f) for f in folders.values()),
        TIMEOUT,
        0.1,
    )
    servers = {
        node_id: int((f / node_forker.PID_NAME).read_text().split()[0])
        for node_id, f in folders.items()
    }
    assert len(set(servers.values())) == 2  # one per node, though both nodes share a disk

    handles = [backend.start_replica(f"it-forked-{i}", spec(model_dir)) for i in range(2)]
    for handle in handles:
        ready = wait_ready(backend, handle)
        assert greet(ready.address, SECRET)["model"] == "tiny"
        info = backend._ask(handle.actor, handle.instance)
        assert info is not None and info["forked"], info
        assert proc_stat(info["pid"]) is not None
        assert proc_stat(info["pid"])[1] == servers[handle.node_id]  # its parent
    assert sorted(h.node_id for h in handles) == sorted(workers)
    for handle in handles:
        assert backend.stop_replica(handle, grace_seconds=10.0) == 0


@pytest.mark.ray
def test_a_job_runs_on_a_worker_in_a_copy_of_its_folder(
    open_ray: Any, ray_cluster: Any, tmp_path: Path
) -> None:
    backend = open_ray()
    folder = tmp_path / "job"
    (folder / "code").mkdir(parents=True)
    (folder / "runner.json").write_text('{"step": 1}')
    (folder / "code" / "train.py").write_text(
        "import os, sys\n"
        "print(open(sys.argv[1]).read(), os.environ['GREETING'], os.getcwd(), flush=True)\n"
        "raise SystemExit(3)\n"
    )
    launch = JobLaunch(
        job_id="it-job",
        argv=[sys.executable, str(folder / "code" / "train.py"), str(folder / "runner.json")],
        env={"GREETING": "hello"},
        cwd=folder,
        resources=Resources(vcpus=0.5, memory_bytes=512 << 20),
    )
    handle = backend.start_job(launch)
    assert handle.node in ray_cluster.worker_ips and handle.enforcement == "ray+rlimit"

    status = wait_for("the job to exit", lambda: _exited(backend, handle), TIMEOUT, 0.05)
    assert status.exit_code == 3 and not status.node_lost
    text = backend.read_job_log(handle).decode()
    assert '{"step": 1} hello' in text
    cwd = text.split()[-1]
    assert cwd != str(folder) and Path(cwd).name == "it-job"  # its copy, on its node
    backend.release_job(handle)


def test_an_unreachable_cluster_is_a_clear_error(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    backend = open_backend("ray", {"address": address, "state_dir": str(tmp_path)})
    with pytest.raises(ServiceUnavailable, match=address):
        backend.prepare()
    backend.close()


def test_a_job_asking_for_more_memory_than_ray_can_count_is_refused(tmp_path: Path) -> None:
    backend = open_backend("ray", {"address": "127.0.0.1:1", "state_dir": str(tmp_path)})
    launch = JobLaunch(
        job_id="too-big",
        argv=["true"],
        env={},
        cwd=tmp_path,
        resources=Resources(vcpus=1, memory_bytes=10**15),  # wraps around in Ray: refused first
    )
    with pytest.raises(ValueError, match="memory"):
        backend.start_job(launch)


def test_a_job_folder_too_big_to_send_to_its_node_is_refused(tmp_path: Path) -> None:
    options = {"address": "127.0.0.1:1", "state_dir": str(tmp_path), "max_job_files_bytes": 10}
    backend = open_backend("ray", options)
    (tmp_path / "data.csv").write_bytes(b"x" * 11)
    launch = JobLaunch(
        job_id="too-many-files",
        argv=["true"],
        env={},
        cwd=tmp_path,
        resources=Resources(vcpus=1, memory_bytes=1 << 30),
    )
    with pytest.raises(ValueError, match="max_job_files_bytes"):
        backend.start_job(launch)


@pytest.mark.ray
def test_losing_a_node_shows_its_replica_and_job_exited(
    open_ray: Any, ray_cluster: Any, model_dir: Path, tmp_path: Path
) -> None:
    lost = ray_cluster.worker_ips[-1]
    backend = open_ray(resources={f"node:{lost}": 0.01})  # both on the node about to be lost
    replica = backend.start_replica("it-lost", spec(model_dir))
    job = backend.start_job(
        JobLaunch(
            job_id="it-lost-job",
            argv=[
                sys.executable,
                "-c",
                "import time; print('started', flush=True); time.sleep(600)",
            ],
            env={},
            cwd=tmp_path,
            resources=Resources(vcpus=0.25, memory_bytes=256 << 20),
        )
    )
    wait_ready(backend, replica)
    wait_for("the job's log", lambda: b"started" in backend.read_job_log(job), TIMEOUT, 0.05)
    assert replica.node == job.node == lost
    try:
        ray_cluster.kill_node(lost)

        def replica_exited() -> ReplicaStatus | None:
            status = backend.status(replica)
            return status if status.state is ReplicaState.exited else None

        gone = wait_for("the replica to be seen exited", replica_exited, LOST_WITHIN, 0.1)
        assert gone.exit_code is None and lost in gone.detail
        status = wait_for("the job to be seen exited", lambda: _exited(backend, job), 30, 0.1)
        assert status.exit_code is None and status.node_lost
        assert f"lost with its Ray node {lost}" in status.detail
        assert backend.read_job_log(job) == b"started\n"  # what was read before, kept
        assert backend.running() == [] and backend.running_jobs() == []
        backend.release_job(job)
    finally:
        if lost not in ray_cluster.nodes:  # leave the session's cluster whole
            ray_cluster.add_node(lost)


def _exited(backend: RayBackend, handle: Any) -> Any:
    status = backend.job_status(handle)
    return status if status.state is JobState.exited else None
