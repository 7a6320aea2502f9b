"""The endpoint controller on the fake compute backend, pass by pass: a variant whose replicas
keep crashing backs off and says why, a new template rolls out before the old one drains, a
draining replica leaves the routes at once and stops once it has answered, and a restarted
controller re-adopts the replicas it wants and stops the others.

Ready replicas really serve in this process (`stratus.serving.replica.serve`, on a model whose
predictions wait for the test's gate), so the controller connects with their secrets as it
would to replica processes.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from stratus.compute.backend import ComputeBackend, LaunchSpec, ReplicaState
from stratus.compute.fake import FakeBackend, FakeCluster
from stratus.endpoints import controller as controller_module
from stratus.endpoints import schemas as s
from stratus.endpoints.controller import ControllerConfig, EndpointController
from stratus.endpoints.metrics import InferenceMetrics
from stratus.endpoints.rollout import Phase, backoff_seconds
from stratus.endpoints.routing import RouteTable
from stratus.endpoints.service import DesiredEndpoint, EndpointService
from stratus.registry.batches import Batch
from stratus.registry.service import RegistryService
from stratus.serving.replica import ReplicaSpec, serve
from stratus.serving.wire import Kind
from stratus.storage.grants import ArtifactGrant

CRASH = ("Traceback (most recent call last):", "ValueError: the model is broken")


def endpoint(version: int = 1, replicas: int = 1, revision: int = 1) -> DesiredEndpoint:
    return DesiredEndpoint(
        uid="e1", project="p", name="e", public=True, revision=revision,
        variants=[s.VariantSpec(model="m", version=version, replicas=replicas)],
        capture=s.CaptureSpec(),
    )  # fmt: skip


class GatedModel:
    """Predicts 0 for every row once the gate is open; `entered` is set when a predict waits."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    @property
    def supports_batching(self) -> bool:
        return False

    def predict(self, batch: Batch) -> np.ndarray:
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return np.zeros(batch.n_rows)


class ManualClock:
    """Time that moves only when told: the controller's `time` module, and the cluster's."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Endpoints:
    """The controller's view of the endpoint service."""

    wanted: list[DesiredEndpoint]
    written: list[s.EndpointStatus] = field(default_factory=list)
    resets: int = 0
    events: list[tuple[str, str, str, int, int, str]] = field(default_factory=list)

    def desired(self) -> list[DesiredEndpoint]:
        return list(self.wanted)

    def reset_statuses(self) -> None:
        self.resets += 1

    def write_status(self, endpoint_uid: str, status: s.EndpointStatus) -> None:
        self.written.append(status)

    def record_event(
        self, endpoint_uid: str, variant: str, kind: str, old: int, new: int, reason: str
    ) -> None:
        self.events.append((endpoint_uid, variant, kind, old, new, reason))


class World:
    """Endpoint controllers over one fake cluster; ready replicas serve the gated model."""

    def __init__(self, runtime: Path, clock: Callable[[], float]) -> None:
        self.model = GatedModel()
        self.cluster = FakeCluster(
            socket_dir=runtime, serve=self._serve, clock=clock, sleep=lambda seconds: None
        )
        self.endpoints = Endpoints([endpoint()])
        self.routes = RouteTable()
        self.runtime = runtime

    def _serve(
        self, spec: LaunchSpec, stop: asyncio.Event, listening: Callable[[str], None]
    ) -> Coroutine[Any, Any, None]:
        replica = cast(ReplicaSpec, spec)
        return serve(replica, self.model, stop, on_listening=listening, handle_signals=False)

    def controller(self, **config: Any) -> EndpointController:
        """A control plane's controller, with a backend of its own over the cluster."""

        def grant(project: str, model: str, ref: str) -> tuple[Any, ArtifactGrant]:
            version = SimpleNamespace(flavor="sklearn", trusted=False, signature=None,
                                      version=int(ref))  # fmt: skip
            return version, ArtifactGrant(expires_at=datetime.now(UTC), files=[])

        registry = SimpleNamespace(grant=grant)  # the replicas here serve the gated model
        backend: ComputeBackend = FakeBackend(self.cluster)
        return EndpointController(
            cast(EndpointService, self.endpoints),
            cast(RegistryService, registry),
            backend,
            self.routes,
            InferenceMetrics(CollectorRegistry()),
            ControllerConfig(secret_key=b"k" * 32, prewarm=False, **config),
        )

    def starts(self) -> list[str]:
        return [replica_id for what, replica_id in self.cluster.events if what == "start"]

    def routed(self) -> set[str]:
        route = self.routes.get("p", "e")
        if route is None:
            return set()
        return {link.id for v in route.variants for link in v.replicas if link.usable}

    def status(self) -> s.EndpointStatus:
        return self.endpoints.written[-1]

    def close(self) -> None:
        self.model.gate.set()
        for replica in self.cluster.replicas.values():
            if replica.server is not None:
                replica.server.stop(0.0)


@pytest.fixture
def world() -> Iterator[World]:
    runtime = Path(tempfile.mkdtemp(prefix="se-", dir="/tmp"))  # unix socket paths are short
    made = World(runtime, clock=time.time)
    try:
        yield made
    finally:
        made.close()
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def clock(world: World, monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """The controller's and the cluster's time, moved by the test."""
    manual = ManualClock()
    monkeypatch.setattr(controller_module, "time", manual)
    world.cluster.clock = manual.time
    return manual


async def until(what: str, check: Callable[[], object], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_a_variant_that_keeps_crashing_backs_off_and_says_why(
    world: World, clock: ManualClock
) -> None:
    world.endpoints.wanted = [endpoint(replicas=2)]
    cluster = world.cluster

    async def main() -> None:
        controller = world.controller()
        await controller.reconcile()
        serving, crashing = world.starts()
        cluster.mark_ready(serving)
        cluster.crash(crashing, 1, *CRASH)
        await controller.reconcile()
        assert len(world.starts()) == 3  # the first crash is replaced at once

        for failures in (2, 3):
            cluster.crash(world.starts()[-1], 1, *CRASH)
            await controller.reconcile()
            assert len(world.starts()) == 1 + failures  # backing off
            clock.advance(backoff_seconds(failures))
            await controller.reconcile()
            assert len(world.starts()) == 2 + failures  # the next try

        status = world.status()
        assert status.phase == "degraded"  # one replica still serves
        assert "exited (code 1)" in status.message and CRASH[-1] in status.message
        assert status.variants[0].restarts == 3 and status.variants[0].ready == 1

        # the one that served dies too: nothing serves
        link = controller.replicas[serving].link
        assert link is not None
        cluster.crash(serving, -9)
        await until("the gateway to see it gone", lambda: not link.usable)
        await controller.reconcile()
        assert world.status().phase == "failed"
        assert f"{serving} exited (code -9)" in world.status().message
        assert len(world.starts()) == 5  # four failures in a row: backing off

        clock.advance(backoff_seconds(4))
        await controller.reconcile()
        for replica_id in world.starts()[-2:]:
            cluster.mark_ready(replica_id)
        await controller.reconcile()
        assert world.status().phase == "ready" and world.status().message == ""
        await controller.stop()

    asyncio.run(main())


def test_a_new_template_rolls_out_before_the_old_one_drains(world: World) -> None:
    world.endpoints.wanted = [endpoint(version=1, replicas=2)]
    cluster = world.cluster

    async def main() -> None:
        controller = world.controller()
        await controller.reconcile()
        old = world.starts()
        for replica_id in old:
            cluster.mark_ready(replica_id)
        await controller.reconcile()
        assert world.routed() == set(old) and world.status().phase == "ready"

        world.endpoints.wanted = [endpoint(version=2, replicas=2, revision=2)]
        await controller.reconcile()
        new = world.starts()[2:]
        assert len(new) == 2  # a surge of the new template...
        assert world.routed() == set(old)  # ...while the old one serves on
        cluster.mark_ready(new[0])
        await controller.reconcile()
        assert world.routed() == {*old, new[0]}  # one new replica is not enough to drain
        assert all(cluster.replicas[r].state is ReplicaState.ready for r in old)

        cluster.mark_ready(new[1])
        await controller.reconcile()
        assert world.routed() == set(new)  # the old ones left the routes at once...
        await until(
            "the old replicas to stop",
            lambda: all(cluster.replicas[r].state is ReplicaState.exited for r in old),
        )
        for r in old:  # ...and were stopped gracefully, after the new ones were ready
            assert cluster.replicas[r].stops == [(controller.config.drain_seconds, "graceful")]
            assert cluster.events.index(("stop", r)) > cluster.events.index(("ready", new[1]))
        await controller.reconcile()
        assert world.status().phase == "ready"
        assert {r.id for r in world.status().replicas} == set(new)
        await controller.stop()

    asyncio.run(main())


def test_a_draining_replica_leaves_the_routes_at_once_and_stops_after_its_calls(
    world: World, clock: ManualClock
) -> None:
    cluster = world.cluster

    async def main() -> None:
        controller = world.controller()
        await controller.reconcile()
        (first,) = world.starts()
        cluster.mark_ready(first)
        await controller.reconcile()
        world.endpoints.wanted = [endpoint(replicas=2, revision=2)]
        clock.advance(1.0)  # the second replica is the newer: the one a scale-down drains
        await controller.reconcile()
        second = world.starts()[1]
        cluster.mark_ready(second)
        await controller.reconcile()
        assert world.routed() == {first, second}

        world.model.gate.clear()
        link = controller.replicas[second].link
        assert link is not None
        call = asyncio.ensure_future(
            link.connection.call(Kind.PLAIN_PREDICT, "application/json",
                                 b'{"instances": [[1.0, 2.0]]}', 30.0)
        )  # fmt: skip
        await until("the call to reach the model", world.model.entered.is_set)

        world.endpoints.wanted = [endpoint(replicas=1, revision=3)]
        await controller.reconcile()
        assert controller.replicas[second].phase is Phase.draining
        assert world.routed() == {first}  # no new request goes there
        await controller.reconcile()
        assert cluster.replicas[second].stops == []  # its call is still being answered

        world.model.gate.set()
        answer = await call
        assert answer.status == 200  # answered before the replica was stopped
        await until("the drained replica to stop", lambda: second not in controller.replicas)
        assert cluster.replicas[second].stops == [(controller.config.drain_seconds, "graceful")]
        assert cluster.replicas[first].state is ReplicaState.ready
        await controller.stop()

    asyncio.run(main())


def test_a_started_controller_routes_every_endpoint_at_once_as_pending(world: World) -> None:
    """Before its first pass has looked at any replica, the gateway knows every endpoint:
    a request then is 503 (pending, retry), not 404 (no such endpoint)."""

    async def main() -> None:
        controller = world.controller(interval_seconds=60.0)
        controller._run = asyncio.Event().wait  # type: ignore[method-assign] # no pass at all
        await controller.start()
        route = world.routes.get("p", "e")
        assert route is not None and route.phase == "pending"
        assert route.pick() is None  # nothing to send it to yet: the gateway's 503
        await controller.stop()

    asyncio.run(main())


def test_a_restarted_controller_adopts_the_replicas_it_wants_and_stops_the_others(
    world: World,
) -> None:
    world.endpoints.wanted = [endpoint(replicas=2)]
    cluster = world.cluster
    stranger = ReplicaSpec(
        model_dir=world.runtime, flavor="sklearn", model_name="x", model_version=1,
        secret="x" * 32,
    )  # fmt: skip

    async def main() -> None:
        first = world.controller(stop_replicas_on_shutdown=False)
        await first.reconcile()
        ours = world.starts()
        for replica_id in ours:
            cluster.mark_ready(replica_id)
        await first.reconcile()
        assert world.routed() == set(ours)
        # replicas nobody wants: of an endpoint gone, and one no controller would name
        other = FakeBackend(cluster)
        other.start_replica("gone.main.1.abcd1234.ffffff", stranger)
        other.start_replica("junk", stranger)
        await first.stop()  # the control plane goes; its replicas run on
        assert all(cluster.replicas[r].state is ReplicaState.ready for r in ours)

        second = world.controller(interval_seconds=0.05)
        await second.start()
        await until("the wanted replicas to be routed again", lambda: world.routed() == set(ours))
        assert set(second.replicas) == set(ours)
        assert all(second.replicas[r].phase is Phase.ready for r in ours)
        for unwanted in ("gone.main.1.abcd1234.ffffff", "junk"):
            assert cluster.replicas[unwanted].state is ReplicaState.exited
        assert world.starts()[2:] == ["gone.main.1.abcd1234.ffffff", "junk"]  # none new
        assert world.endpoints.resets == 1  # what the last one saw is not true
        await second.stop()
        assert all(r.state is ReplicaState.exited for r in cluster.replicas.values())

    asyncio.run(main())


def autoscaled(autoscaling: s.Autoscaling | None, replicas: int = 1) -> DesiredEndpoint:
    return DesiredEndpoint(
        uid="e1", project="p", name="e", public=True, revision=1,
        variants=[s.VariantSpec(model="m", version=1, replicas=replicas, autoscaling=autoscaling)],
        capture=s.CaptureSpec(),
    )  # fmt: skip


def test_an_autoscaled_variant_follows_the_requests_at_the_gateway_and_records_each_step(
    world: World, clock: ManualClock
) -> None:
    scaling = s.Autoscaling(min_replicas=1, max_replicas=4, target_concurrency=1,
                            stable_window_seconds=20, scale_down_delay_seconds=5)  # fmt: skip
    world.endpoints.wanted = [autoscaled(scaling)]
    cluster = world.cluster

    async def main() -> None:
        controller = world.controller()

        async def settle() -> None:
            """A pass, its new replicas made ready, another pass."""
            await controller.reconcile()
            for replica_id in world.starts():
                if cluster.replicas[replica_id].state is ReplicaState.starting:
                    cluster.mark_ready(replica_id)
            await controller.reconcile()

        await settle()
        assert len(world.routed()) == 1  # min_replicas
        series = [v for k, v in controller._series.items() if k[:3] == ("p", "e", "main")]
        assert len(series) == 1

        # a burst: four requests in flight at the gateway, for one replica
        series[0].active, series[0].arrived = 4, series[0].arrived + 4
        for _ in range(2):  # two samples running have seen 4 in flight within 1 s
            clock.advance(0.5)
            await settle()
        assert len(world.routed()) == 4

        def scaled_events() -> list[Any]:
            return [e for e in world.endpoints.events if e[2] == "scaled"]

        await until("the steps' events", lambda: [e[4] for e in scaled_events()][-1:] == [4])
        scaled = scaled_events()
        assert [e[3:5] for e in scaled] == [(0, 1), (1, 2), (2, 4)]  # min, then up
        assert "at the minimum (1)" in scaled[0][5]
        assert all(e[:3] == ("e1", "main", "scaled") and "panic" in e[5] for e in scaled[1:])
        assert world.status().variants[0].desired == 4
        assert world.status().phase == "ready" and world.endpoints.wanted[0].revision == 1
        assert [(c.variant, c.count) for c in controller.desired_counts()] == [("main", 4)]

        # quiet again: back to the minimum once the panic and the delay have passed
        series[0].active = 0
        for _ in range(120):
            clock.advance(0.5)
            await settle()
        assert world.status().variants[0].desired == 1
        live = [r for r in controller.replicas.values() if r.phase is not Phase.draining]
        assert len(live) == 1
        await until("the last step's event", lambda: world.endpoints.events[-1][4] == 1)
        downs = [e[3:5] for e in world.endpoints.events[len(scaled) :]]
        assert downs and downs[-1][1] == 1 and all(new < old for old, new in downs)

        # a fixed count again: autoscaling off, the spec's replicas rule
        world.endpoints.wanted = [autoscaled(None, replicas=2)]
        await settle()
        assert world.status().variants[0].desired == 2
        assert controller.autoscaler.desired(("e1", "main")) is None
        await controller.stop()

    asyncio.run(main())


def test_a_spent_budget_holds_an_autoscaled_variant_at_its_minimum(
    world: World, clock: ManualClock
) -> None:
    scaling = s.Autoscaling(min_replicas=1, max_replicas=4, target_concurrency=1,
                            stable_window_seconds=20, scale_down_delay_seconds=5)  # fmt: skip
    world.endpoints.wanted = [autoscaled(scaling)]
    cluster = world.cluster

    async def main() -> None:
        controller = world.controller()

        async def settle() -> None:
            await controller.reconcile()
            for replica_id in world.starts():
                if cluster.replicas[replica_id].state is ReplicaState.starting:
                    cluster.mark_ready(replica_id)
            await controller.reconcile()

        await settle()
        series = [v for k, v in controller._series.items() if k[:3] == ("p", "e", "main")]
        series[0].active, series[0].arrived = 4, series[0].arrived + 4
        for _ in range(2):
            clock.advance(0.5)
            await settle()
        assert world.status().variants[0].desired == 4

        # the project's budget is spent: within two passes, back to the minimum, under load
        controller.capped = lambda project: "budget 'monthly' of project 'p' is spent"
        for _ in range(2):
            clock.advance(1.0)
            await settle()
        assert world.status().variants[0].desired == 1
        await until("the step's event", lambda: world.endpoints.events[-1][4] == 1)
        assert (
            "budget 'monthly' of project 'p' is spent: held at its minimum"
            in (world.endpoints.events[-1][5])
        )
        # lifted: it follows the requests again
        controller.capped = lambda project: None
        for _ in range(2):
            clock.advance(0.5)
            await settle()
        assert world.status().variants[0].desired == 4
        await controller.stop()

    asyncio.run(main())


def test_a_variant_at_min_zero_stops_when_idle_and_a_request_wakes_it(
    world: World, clock: ManualClock
) -> None:
    scaling = s.Autoscaling(min_replicas=0, max_replicas=2, scale_to_zero_after_seconds=10)
    world.endpoints.wanted = [autoscaled(scaling)]
    cluster = world.cluster

    async def main() -> None:
        controller = world.controller()
        await controller.reconcile()
        assert world.starts() == [] and world.status().variants[0].desired == 0  # idle at zero
        assert world.status().phase == "ready"

        # a request finds no replica (the gateway answers 503 and counts it): one starts
        route = world.routes.get("p", "e")
        assert route is not None
        route.live[0].series.arrived += 1
        clock.advance(0.5)
        await controller.reconcile()
        assert len(world.starts()) == 1
        cluster.mark_ready(world.starts()[0])
        await controller.reconcile()
        assert len(world.routed()) == 1
        await until("the step's event", lambda: world.endpoints.events)  # recorded in a task
        assert world.endpoints.events[-1][3:5] == (0, 1)
        assert "requests waiting at zero replicas" in world.endpoints.events[-1][5]

        # and it stops again after 10 s without a request
        for _ in range(19):
            clock.advance(0.5)
            await controller.reconcile()
        assert len(world.routed()) == 1
        clock.advance(1.0)
        await controller.reconcile()
        assert world.routed() == set() and world.status().variants[0].desired == 0
        await until("the event", lambda: world.endpoints.events[-1][3:5] == (1, 0))
        assert "no request for 10 s: scale to zero" in world.endpoints.events[-1][5]
        await controller.stop()

    asyncio.run(main())
