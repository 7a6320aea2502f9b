"""The endpoint controller and replicas on the network (the fake backend with `tcp`: replicas
really serve on 127.0.0.1 in this process): each gets a certificate for its id and is reached
over mutual TLS; one whose certificate nears its end is replaced as in a rolling update; a
re-adopted one that refuses the gateway (started under another replica CA) is replaced.
Replicas on unix sockets get no certificate, and no CA is made for them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from cryptography import x509
from prometheus_client import CollectorRegistry

from stratus.compute.backend import ComputeBackend, LaunchSpec, ReplicaState
from stratus.compute.fake import FakeBackend, FakeCluster
from stratus.core import certificates as certs
from stratus.endpoints import controller as controller_module
from stratus.endpoints import schemas as s
from stratus.endpoints.controller import ControllerConfig, EndpointController
from stratus.endpoints.metrics import InferenceMetrics
from stratus.endpoints.replica_authority import CERTIFICATE_LIFETIME, ReplicaAuthority
from stratus.endpoints.rollout import Phase
from stratus.endpoints.routing import RouteTable
from stratus.endpoints.service import DesiredEndpoint, EndpointService
from stratus.registry.batches import Batch
from stratus.registry.service import RegistryService
from stratus.serving.replica import ReplicaSpec, serve
from stratus.serving.replica_tls import replica_identity
from stratus.serving.wire import Kind
from stratus.storage.grants import ArtifactGrant


class Constant:
    supports_batching = False

    def predict(self, batch: Batch) -> Any:
        return [0] * batch.n_rows


def endpoint(replicas: int = 1) -> DesiredEndpoint:
    return DesiredEndpoint(
        uid="e1", project="p", name="e", public=True, revision=1,
        variants=[s.VariantSpec(model="m", version=1, replicas=replicas)],
        capture=s.CaptureSpec(),
    )  # fmt: skip


@dataclass
class Endpoints:
    wanted: list[DesiredEndpoint]
    written: list[s.EndpointStatus] = field(default_factory=list)

    def desired(self) -> list[DesiredEndpoint]:
        return list(self.wanted)

    def reset_statuses(self) -> None:
        pass

    def write_status(self, endpoint_uid: str, status: s.EndpointStatus) -> None:
        self.written.append(status)

    def record_event(self, *args: Any) -> None:
        pass


class World:
    """Controllers over one fake cluster whose ready replicas serve in this process."""

    def __init__(self, runtime: Path, tls_dir: Path, *, tcp: bool) -> None:
        self.cluster = FakeCluster(
            socket_dir=runtime, serve=self._serve, tcp=tcp, sleep=lambda seconds: None
        )
        self.endpoints = Endpoints([endpoint()])
        self.routes = RouteTable()
        self.now: dt.datetime | None = None  # the replica CA's clock; None: the real one
        self.authority = ReplicaAuthority(tls_dir, clock=self._now)

    def _now(self) -> dt.datetime:
        return self.now or dt.datetime.now(dt.UTC)

    def _serve(
        self, spec: LaunchSpec, stop: asyncio.Event, listening: Callable[[str], None]
    ) -> Coroutine[Any, Any, None]:
        replica = cast(ReplicaSpec, spec)
        return serve(replica, Constant(), stop, on_listening=listening, handle_signals=False)

    def controller(self, authority: ReplicaAuthority | None = None, **config: Any) -> Any:
        def grant(project: str, model: str, ref: str) -> tuple[Any, Any]:
            version = SimpleNamespace(flavor="sklearn", trusted=False, signature=None,
                                      version=int(ref))  # fmt: skip
            return version, ArtifactGrant(expires_at=datetime.now(UTC), files=[])

        backend: ComputeBackend = FakeBackend(self.cluster)
        return EndpointController(
            cast(EndpointService, self.endpoints),
            cast(RegistryService, SimpleNamespace(grant=grant)),
            backend,
            self.routes,
            InferenceMetrics(CollectorRegistry()),
            ControllerConfig(
                secret_key=b"k" * 32,
                prewarm=False,
                replica_tls=authority or self.authority,
                **config,
            ),
        )

    def starts(self) -> list[str]:
        return [replica_id for what, replica_id in self.cluster.events if what == "start"]

    def spec_of(self, replica_id: str) -> ReplicaSpec:
        return cast(ReplicaSpec, self.cluster.replicas[replica_id].spec)

    def routed(self) -> set[str]:
        route = self.routes.get("p", "e")
        if route is None:
            return set()
        return {link.id for v in route.variants for link in v.replicas if link.usable}

    def close(self) -> None:
        for replica in self.cluster.replicas.values():
            if replica.server is not None:
                replica.server.stop(0.0)


@pytest.fixture
def folders(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    runtime = Path(tempfile.mkdtemp(prefix="st-", dir="/tmp"))  # unix socket paths are short
    try:
        yield runtime, tmp_path / "tls"
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def network(folders: tuple[Path, Path]) -> Iterator[World]:
    world = World(*folders, tcp=True)
    try:
        yield world
    finally:
        world.close()


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 60))


async def until(what: str, check: Callable[[], object], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def predict(controller: EndpointController, replica_id: str) -> list[Any]:
    link = controller.replicas[replica_id].link
    assert link is not None
    answer = await link.connection.call(
        Kind.PLAIN_PREDICT, "application/json", b'{"instances": [[1.0]]}', 10
    )
    assert answer.status == 200, answer.body
    predictions: list[Any] = orjson.loads(answer.body)["predictions"]
    return predictions


def test_a_replica_on_the_network_is_reached_over_mutual_tls(network: World) -> None:
    async def main() -> None:
        controller = network.controller()
        await controller.reconcile()
        (replica_id,) = network.starts()
        spec = network.spec_of(replica_id)
        assert spec.address.startswith("tcp://127.0.0.1:")
        assert spec.tls is not None and "PRIVATE KEY" in spec.tls.key
        cert = x509.load_pem_x509_certificate(spec.tls.cert.encode())
        assert certs.uris_of(cert) == [replica_identity(replica_id)]
        assert "PRIVATE KEY" not in repr(spec)

        network.cluster.mark_ready(replica_id)
        await controller.reconcile()
        assert network.routed() == {replica_id}
        replica = controller.replicas[replica_id]
        assert replica.link is not None
        tls = replica.link.connection.writer.get_extra_info("ssl_object")
        assert tls is not None and tls.version() == "TLSv1.3"
        assert replica.certificate_ends == cert.not_valid_after_utc.timestamp()
        assert await predict(controller, replica_id) == [0]
        await controller.stop()

    run(main)


def test_a_replica_on_a_unix_socket_gets_no_certificate(folders: tuple[Path, Path]) -> None:
    world = World(*folders, tcp=False)

    async def main() -> None:
        controller = world.controller()
        await controller.reconcile()
        (replica_id,) = world.starts()
        assert world.spec_of(replica_id).tls is None
        world.cluster.mark_ready(replica_id)
        await controller.reconcile()
        link = controller.replicas[replica_id].link
        assert link is not None and link.connection.writer.get_extra_info("ssl_object") is None
        assert await predict(controller, replica_id) == [0]
        await controller.stop()

    try:
        run(main)
    finally:
        world.close()
    assert not world.authority.files.folder.exists()  # no CA made for unix sockets


def test_a_replica_is_replaced_before_its_certificate_ends(network: World) -> None:
    cluster = network.cluster

    async def main() -> None:
        controller = network.controller()
        # the first replica's certificate was issued 29 days ago: it ends in a day
        network.now = dt.datetime.now(dt.UTC) - CERTIFICATE_LIFETIME + dt.timedelta(days=1)
        await controller.reconcile()
        network.now = None
        (old,) = network.starts()
        cluster.mark_ready(old)
        await controller.reconcile()
        assert network.routed() == {old}

        await controller.reconcile()  # it nears its end: a new one starts first...
        new = network.starts()[1:]
        assert len(new) == 1 and network.routed() == {old}
        assert cluster.replicas[old].state is ReplicaState.ready
        cluster.mark_ready(new[0])
        await controller.reconcile()  # ...and the old one drains once it is ready
        assert network.routed() == set(new)
        await until("the old replica to stop", lambda: old not in controller.replicas)
        assert cluster.replicas[old].stops == [(controller.config.drain_seconds, "graceful")]

        ends = controller.replicas[new[0]].certificate_ends
        assert ends is not None
        left = ends - dt.datetime.now(dt.UTC).timestamp()
        assert left > CERTIFICATE_LIFETIME.total_seconds() - 60
        await controller.reconcile()
        assert network.starts()[1:] == new  # the new one is good for 30 days: no more starts
        assert await predict(controller, new[0]) == [0]
        await controller.stop()

    run(main)


def test_a_readopted_replica_that_refuses_the_gateway_is_replaced(
    network: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = network.cluster

    async def main() -> None:
        first = network.controller(stop_replicas_on_shutdown=False)
        await first.reconcile()
        (old,) = network.starts()
        cluster.mark_ready(old)
        await first.reconcile()
        assert network.routed() == {old}
        await first.stop()  # (a restart: the replica runs on)

        # the next control plane has lost the replica CA: it makes another
        clocks_ahead(monkeypatch, seconds=300)  # the replica started long ago
        second = network.controller(ReplicaAuthority(tmp_path / "other-tls"))
        await second._adopt()
        assert second.replicas[old].phase is Phase.starting
        await second.reconcile()
        assert old not in second.replicas  # refused: replaced...
        assert "refused the gateway" in network.endpoints.written[-1].message
        await until("the refusing replica to stop", lambda: cluster.replicas[old].stops)
        (new,) = network.starts()[1:]
        cluster.mark_ready(new)
        await second.reconcile()
        assert network.routed() == {new}  # ...by one of the new CA
        assert await predict(second, new) == [0]
        await second.stop()

    run(main)


def clocks_ahead(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Set the controller's clocks `seconds` ahead of the real ones."""
    ahead = SimpleNamespace(
        time=lambda: time.time() + seconds, monotonic=lambda: time.monotonic() + seconds
    )
    monkeypatch.setattr(controller_module, "time", ahead)
