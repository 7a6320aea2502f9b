"""The controller's handshake with the gateway: a replica is reported ready only while the
gateway's routing table holds a usable link to it, and the table is updated before the status
is written. Driven pass by pass with the fake compute backend (`compute/fake.py`) and a fake
replica that only greets."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from stratus.compute.fake import FakeBackend, FakeCluster
from stratus.endpoints import schemas as s
from stratus.endpoints.controller import ControllerConfig, EndpointController
from stratus.endpoints.metrics import InferenceMetrics
from stratus.endpoints.routing import RouteTable
from stratus.endpoints.service import DesiredEndpoint, EndpointService
from stratus.registry.service import RegistryService
from stratus.serving.wire import HELLO_ID, REQUEST, encode_response
from stratus.storage.grants import ArtifactGrant


class FakeReplica:
    """A unix socket that greets like a replica (HELLO) once given the secret, then holds the
    connection open."""

    def __init__(self, address: str) -> None:
        self.socket = Path(address.removeprefix("unix://"))
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._greet, path=str(self.socket))

    async def _greet(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        await reader.readexactly(REQUEST.size + 64)  # AUTH: the header and a 64-digit secret
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


def controller_for(runtime: Path) -> tuple[EndpointController, FakeCluster, FakeEndpoints]:
    endpoint = DesiredEndpoint(
        uid="e1", project="p", name="e", public=True, revision=1,
        variants=[s.VariantSpec(model="m", version=1, replicas=1)], capture=s.CaptureSpec(),
    )  # fmt: skip
    routes = RouteTable()
    endpoints = FakeEndpoints(endpoint, routes)
    version = SimpleNamespace(flavor="sklearn", trusted=False, signature=None, version=1)
    grant = ArtifactGrant(expires_at=datetime.now(UTC) + timedelta(minutes=5), files=[], keys={})
    registry = SimpleNamespace(grant=lambda *_: (version, grant))
    cluster = FakeCluster(socket_dir=runtime)  # the test's FakeReplica listens there
    controller = EndpointController(
        cast(EndpointService, endpoints),
        cast(RegistryService, registry),
        FakeBackend(cluster),
        routes,
        InferenceMetrics(CollectorRegistry()),
        ControllerConfig(secret_key=b"k" * 32, prewarm=False),
    )
    return controller, cluster, endpoints


def test_a_replica_is_ready_only_while_the_gateway_routes_to_it(runtime: Path) -> None:
    async def main() -> None:
        controller, cluster, endpoints = controller_for(runtime)
        endpoint = endpoints.endpoint

        def ready() -> tuple[int, int]:
            """(what the last written status says, what the controller would say now)"""
            return endpoints.written[-1].variants[0].ready, controller.status_of(endpoint).variants[
                0
            ].ready

        await controller.reconcile()  # starts one replica; not ready
        (replica_id,) = cluster.replicas
        assert ready() == (0, 0) and routable_links(endpoints.routes) == {"main": set()}

        fake = FakeReplica(cluster.replicas[replica_id].handle.address)
        await fake.start()
        cluster.mark_ready(replica_id)
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

        fake = FakeReplica(cluster.replicas[replica_id].handle.address)  # it answers again
        await fake.start()
        await controller.reconcile()  # a ready replica without a link is probed again
        assert ready() == (1, 1) and routable_links(endpoints.routes) == {"main": {replica_id}}
        for r in controller.replicas.values():
            if r.link is not None:
                await r.link.connection.close()
        await fake.kill()
        controller._pool.shutdown(wait=True)

    asyncio.run(main())
