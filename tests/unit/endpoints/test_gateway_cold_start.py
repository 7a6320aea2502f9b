"""The gateway in front of an endpoint at zero replicas: a request waits (counted as demand, the
controller woken) until a replica is routed, and is answered with `X-Stratus-Cold-Start: true`;
past the deadline or the queue's bound it gets 503 with Retry-After, never a broken connection.
An endpoint that cannot start from zero answers 503 at once."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import httpx
from gateway_kit import AnsweringConnection, unreachable_app
from prometheus_client import CollectorRegistry

from stratus.endpoints.gateway import Gateway
from stratus.endpoints.metrics import InferenceMetrics
from stratus.endpoints.routing import EndpointRoute, ReplicaLink, RouteTable, VariantRoute
from stratus.iam.authenticating import Authenticator
from stratus.serving.connections import ReplicaConnection
from stratus.serving.wire import Kind

BODY: dict[str, Any] = {"instances": [[1.0, 2.0]]}


class Platform:
    """A route table, its metrics, and a gateway whose controller is this test."""

    def __init__(self, queue: int = 100, timeout: float = 10.0, cold_start: bool = True) -> None:
        self.registry = CollectorRegistry()
        self.metrics = InferenceMetrics(self.registry)
        self.series = self.metrics.series("p", "e", "main", "m:1")
        self.routes = RouteTable()
        self.cold_start = cold_start
        self.woken = 0
        self.routes.set(self.route([]))
        self.gateway = Gateway(
            unreachable_app,
            self.routes,
            cast(Authenticator, object()),  # public endpoint: never asked
            max_body_bytes=1 << 20,
            timeout_seconds=5.0,
            cold_start_queue=queue,
            cold_start_timeout_seconds=timeout,
            cold_start_wait=self.metrics.cold_start_wait,
            wake=self.wake,
        )

    def wake(self) -> None:
        self.woken += 1

    def route(self, links: list[ReplicaLink]) -> EndpointRoute:
        return EndpointRoute(
            uid="uid", project="p", name="e", public=True,
            variants=[VariantRoute("main", 100, False, "m:1", self.series, links)],
            phase="ready", cold_start=self.cold_start,
        )  # fmt: skip

    def replica_ready(self) -> AnsweringConnection:
        connection = AnsweringConnection()
        self.routes.set(self.route([ReplicaLink("r1", cast(ReplicaConnection, connection))]))
        return connection

    def waited(self) -> float | None:
        labels = {"project": "p", "endpoint": "e"}
        return self.registry.get_sample_value(
            "stratus_inference_cold_start_wait_seconds_count", labels
        )


async def until(check: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def client(platform: Platform) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=platform.gateway)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30)


def test_a_request_at_zero_waits_for_a_replica_and_says_it_was_a_cold_start() -> None:
    platform = Platform()

    async def main() -> None:
        async with client(platform) as http:
            asked = asyncio.create_task(http.post("/inference/p/e/predict", json=BODY))
            await until(lambda: platform.routes.waiting("p", "e") == 1)
            # it counts as demand the controller sees, and woke it
            assert platform.series.active == 1 and platform.series.arrived >= 1
            assert platform.woken == 1
            platform.routes.set(platform.route([]))  # a pass with no replica yet: waits on
            await until(lambda: platform.routes.waiting("p", "e") == 1)
            connection = platform.replica_ready()
            answer = await asked
        assert answer.status_code == 200 and answer.json() == {"predictions": [1]}
        assert answer.headers["x-stratus-cold-start"] == "true"
        assert connection.calls == [Kind.PLAIN_PREDICT]
        assert platform.series.active == 0 and platform.waited() == 1
        async with client(platform) as http:  # warm now: no header
            again = await http.post("/inference/p/e/predict", json=BODY)
        assert again.status_code == 200 and "x-stratus-cold-start" not in again.headers

    asyncio.run(main())


def test_past_the_deadline_the_answer_is_503_with_retry_after() -> None:
    platform = Platform(timeout=0.2)

    async def main() -> httpx.Response:
        async with client(platform) as http:
            return await http.post("/inference/p/e/predict", json=BODY)

    answer = asyncio.run(main())
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert "none was ready within 0.2 s" in answer.json()["detail"]
    assert platform.series.active == 0 and platform.waited() == 1


def test_a_full_queue_answers_503_at_once_and_the_waiting_request_is_still_served() -> None:
    platform = Platform(queue=1)

    async def main() -> None:
        async with client(platform) as http:
            first = asyncio.create_task(http.post("/inference/p/e/predict", json=BODY))
            await until(lambda: platform.routes.waiting("p", "e") == 1)
            second = await http.post("/inference/p/e/predict", json=BODY)
            assert second.status_code == 503 and second.headers["retry-after"] == "1"
            assert "1 requests already wait" in second.json()["detail"]
            platform.replica_ready()
            answer = await first
            assert answer.status_code == 200
            assert answer.headers["x-stratus-cold-start"] == "true"

    asyncio.run(main())


def test_an_endpoint_that_cannot_start_from_zero_answers_503_at_once() -> None:
    platform = Platform(cold_start=False)

    async def main() -> httpx.Response:
        async with client(platform) as http:
            return await http.post("/inference/p/e/predict", json=BODY)

    answer = asyncio.run(main())
    assert answer.status_code == 503 and "has no ready replica" in answer.json()["detail"]
    assert platform.woken == 0 and platform.waited() is None
    assert platform.series.arrived >= 1  # still counted: an autoscaled variant would wake


def test_a_removed_endpoint_ends_the_wait_with_503() -> None:
    platform = Platform()

    async def main() -> httpx.Response:
        async with client(platform) as http:
            asked = asyncio.create_task(http.post("/inference/p/e/predict", json=BODY))
            await until(lambda: platform.routes.waiting("p", "e") == 1)
            platform.routes.remove("p", "e")
            return await asked

    answer = asyncio.run(main())
    assert answer.status_code == 503 and "changed while the request waited" in answer.text
