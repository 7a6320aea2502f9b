"""The controller's handshake with the gateway: a replica is reported ready only while the
gateway's routing table holds a usable link to it, and the table is updated before the status
is written. Driven pass by pass with a typed fake backend and a fake replica that only greets."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from stratus.compute.backend import (
    ComputeBackend,
    JobHandle,
    JobLaunch,
    JobStatus,
    LaunchSpec,
    ReplicaHandle,
    ReplicaState,
    ReplicaStatus,
)
from stratus.compute.limits import Resources
from stratus.endpoints import schemas as s
from stratus.endpoints.controller import ControllerConfig, EndpointController
from stratus.endpoints.metrics import InferenceMetrics
from stratus.endpoints.routing import RouteTable
from stratus.endpoints.service import DesiredEndpoint, EndpointService
from stratus.registry.service import RegistryService
from stratus.serving.wire import HELLO_ID, encode_response


class FakeBackend:
    """Replicas as the test says they are: `states` is what `status` reports."""

    name = "fake"

    def __init__(self) -> None:
        self.handles: dict[str, ReplicaHandle] = {}
        self.states: dict[str, ReplicaState] = {}

    @property
    def supports_adoption(self) -> bool:
        return False

    def start_replica(self, replica_id: str, spec: LaunchSpec) -> ReplicaHandle:
        handle = ReplicaHandle(replica_id, 4242, spec.socket, spec.socket.with_suffix(".log"),
                               0.0, None)  # fmt: skip
        self.handles[replica_id] = handle
        self.states[replica_id] = ReplicaState.starting
        return handle

    def status(self, handle: ReplicaHandle) -> ReplicaStatus:
        return ReplicaStatus(self.states[handle.replica_id])

    def stop_replica(self, handle: ReplicaHandle, grace_seconds: float = 10.0) -> int | None:
        self.states[handle.replica_id] = ReplicaState.exited
        return 0

    def prepare(self) -> None:
        pass

    def logs(self, handle: ReplicaHandle, lines: int = 100) -> list[str]:
        return []

    def running(self) -> list[ReplicaHandle]:
        return [h for i, h in self.handles.items() if self.states[i] is not ReplicaState.exited]

    def capacity(self) -> Resources:
        raise AssertionError("replicas only")

    def start_job(self, launch: JobLaunch) -> JobHandle:
        raise AssertionError("replicas only")

    def job_status(self, handle: JobHandle) -> JobStatus:
        raise AssertionError("replicas only")

    def stop_job(self, handle: JobHandle, grace_seconds: float) -> int | None:
        raise AssertionError("replicas only")

    def read_job_log(self, handle: JobHandle, offset: int = 0, limit: int = 1 << 20) -> bytes:
        raise AssertionError("replicas only")

    def running_jobs(self) -> list[JobHandle]:
        return []

    def release_job(self, handle: JobHandle) -> None:
        raise AssertionError("replicas only")

    def close(self) -> None:
        pass


_: type[ComputeBackend] = FakeBackend  # mypy checks the fake against the Protocol


class FakeReplica:
    """A unix socket that greets like a replica (HELLO), then holds the connection open."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._greet, path=str(self.socket))

    async def _greet(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        writer.write(encode_response(HELLO_ID, 200, b'{"model": "m"}'))
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the gateway hangs up

    async def kill(self) -> None:
        """Gone at once: no more accepts, every connection cut."""
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()


@dataclass
class FakeEndpoints:
    """The controller's view of the endpoint service; each status write is checked against
    the routing table at that moment."""

    endpoint: DesiredEndpoint
    routes: RouteTable
    written: list[s.EndpointStatus] = field(default_factory=list)

    def desired(self) -> list[DesiredEndpoint]:
        return [self.endpoint]

    def reset_statuses(self) -> None:
        pass

    def write_status(self, endpoint_uid: str, status: s.EndpointStatus) -> None:
        check_ready_is_routed(status, self.routes)
        self.written.append(status)


def routable_links(routes: RouteTable) -> dict[str, set[str]]:
    route = routes.get("p", "e")
    links: dict[str, set[str]] = {}
    for variant in route.variants if route is not None else []:
        links.setdefault(variant.name, set()).update(
            link.id for link in variant.replicas if link.usable
        )
    return links


def check_ready_is_routed(status: s.EndpointStatus, routes: RouteTable) -> None:
    links = routable_links(routes)
    for variant in status.variants:
        assert variant.ready <= len(links.get(variant.name, set())), (variant, links)
    for replica in status.replicas:
        if replica.phase == "ready":
            assert replica.id in links.get(replica.variant, set()), (replica.id, links)


@pytest.fixture
def runtime() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="st-") as folder:  # unix socket paths are short
        yield Path(folder)


def controller_for(runtime: Path) -> tuple[EndpointController, FakeBackend, FakeEndpoints]:
    endpoint = DesiredEndpoint(
        uid="e1", project="p", name="e", public=True, revision=1,
        variants=[s.VariantSpec(model="m", version=1, replicas=1)], capture=s.CaptureSpec(),
    )  # fmt: skip
    routes = RouteTable()
    endpoints = FakeEndpoints(endpoint, routes)
    version = SimpleNamespace(flavor="sklearn", trusted=False, signature=None, version=1)
    registry = SimpleNamespace(materialize=lambda *_: (version, runtime / "model"))
    backend = FakeBackend()
    controller = EndpointController(
        cast(EndpointService, endpoints),
        cast(RegistryService, registry),
        backend,
        routes,
        InferenceMetrics(CollectorRegistry()),
        ControllerConfig(runtime_dir=runtime, cache_dir=runtime, prewarm=False),
    )
    return controller, backend, endpoints


def test_a_replica_is_ready_only_while_the_gateway_routes_to_it(runtime: Path) -> None:
    async def main() -> None:
        controller, backend, endpoints = controller_for(runtime)
        endpoint = endpoints.endpoint

        def ready() -> tuple[int, int]:
            """(what the last written status says, what the controller would say now)"""
            return endpoints.written[-1].variants[0].ready, controller.status_of(endpoint).variants[
                0
            ].ready

        await controller.reconcile()  # starts one replica; not ready
        (replica_id,) = backend.handles
        assert ready() == (0, 0) and routable_links(endpoints.routes) == {"main": set()}

        fake = FakeReplica(backend.handles[replica_id].socket)
        await fake.start()
        backend.states[replica_id] = ReplicaState.ready
        await controller.reconcile()  # connects, routes, then says ready (checked at write)
        assert ready() == (1, 1) and endpoints.written[-1].phase == "ready"
        assert routable_links(endpoints.routes) == {"main": {replica_id}}

        # the replica dies; the backend has not noticed yet (it still says ready)
        await fake.kill()
        for _ in range(100):
            if not routable_links(endpoints.routes)["main"]:
                break
            await asyncio.sleep(0.01)  # the connection's reader sees the hang-up
        assert routable_links(endpoints.routes) == {"main": set()}
        assert controller.status_of(endpoint).variants[0].ready == 0  # no link, not ready
        await controller.reconcile()  # reconnecting fails: still not routable, not ready
        assert ready() == (0, 0), endpoints.written[-1]
        assert endpoints.written[-1].phase != "ready"
        assert {r.phase for r in endpoints.written[-1].replicas} == {"starting"}

        fake = FakeReplica(backend.handles[replica_id].socket)  # it answers again
        await fake.start()
        await controller.reconcile()  # a ready replica without a link is probed again
        assert ready() == (1, 1) and routable_links(endpoints.routes) == {"main": {replica_id}}
        for r in controller.replicas.values():
            if r.link is not None:
                await r.link.connection.close()
        await fake.kill()
        controller._pool.shutdown(wait=True)

    asyncio.run(main())
