"""The gateway in process, when things go wrong: a bug in the gateway is a problem document
with the request id (its traceback only in the log), and a shadow copy that cannot be sent is
counted, not silently dropped."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import httpx
import pytest
from gateway_kit import AnsweringConnection, unreachable_app
from prometheus_client import CollectorRegistry

from stratus.endpoints.gateway import Gateway
from stratus.endpoints.metrics import InferenceMetrics
from stratus.endpoints.routing import EndpointRoute, ReplicaLink, RouteTable, VariantRoute
from stratus.iam.authenticating import Authenticator
from stratus.serving.connections import ReplicaConnection


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def routes(registry: CollectorRegistry) -> RouteTable:
    metrics = InferenceMetrics(registry)
    main = ReplicaLink("r-main", cast(ReplicaConnection, AnsweringConnection()))
    table = RouteTable()
    table.set(
        EndpointRoute(
            uid="uid",
            project="p",
            name="e",
            public=True,
            variants=[
                VariantRoute("main", 100, False, "m:1", metrics.series("p", "e", "main", "m:1"),
                             [main]),
                VariantRoute("shadow", 0, True, "m:2", metrics.series("p", "e", "shadow", "m:2")),
            ],  # the shadow has no routable replica (yet)
            phase="ready",
        )
    )  # fmt: skip
    return table


@pytest.fixture
def gateway(routes: RouteTable) -> Gateway:
    return Gateway(
        unreachable_app,
        routes,
        cast(Authenticator, object()),  # public endpoint: never asked
        max_body_bytes=1 << 20,
        timeout_seconds=5.0,
    )


def post(gateway: Gateway, path: str, **kwargs: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            return await http.post(path, json=BODY, **kwargs)

    return asyncio.run(send())


BODY: dict[str, Any] = {"instances": [[1.0, 2.0]]}


def test_a_bug_in_the_gateway_is_a_problem_document_with_the_request_id(
    gateway: Gateway,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(self: RouteTable, project: str, endpoint: str) -> EndpointRoute | None:
        raise RuntimeError("a bug in /srv/stratus/endpoints/routing.py")

    monkeypatch.setattr(RouteTable, "get", broken)
    with caplog.at_level(logging.ERROR, logger="stratus.gateway"):
        answer = post(gateway, "/inference/p/e/predict")

    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    request_id = answer.headers["x-request-id"]
    problem = answer.json()
    assert problem["code"] == "internal-error" and problem["status"] == 500
    assert request_id in problem["detail"]
    assert "RuntimeError" not in answer.text and "routing.py" not in answer.text
    assert "Traceback" not in answer.text
    logged = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert request_id in logged and "a bug in /srv/stratus" in logged  # the log has it all


def test_a_caller_chosen_request_id_comes_back_on_a_bug(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any) -> bytes:
        raise KeyError("oops")

    monkeypatch.setattr(Gateway, "_body", broken)
    answer = post(gateway, "/inference/p/e/predict", headers={"X-Request-Id": "trace-7"})
    assert answer.status_code == 500 and answer.headers["x-request-id"] == "trace-7"
    assert answer.json()["instance"] == "/inference/p/e/predict"


def test_a_shadow_without_a_ready_replica_counts_the_skipped_copy(
    gateway: Gateway, registry: CollectorRegistry
) -> None:
    labels = {"project": "p", "endpoint": "e", "variant": "shadow", "reason": "no_ready_replica"}
    for _ in range(3):
        answer = post(gateway, "/inference/p/e/predict")
        assert answer.status_code == 200 and answer.headers["x-stratus-variant"] == "main"
    assert registry.get_sample_value("stratus_shadow_skipped_total", labels) == 3
    main = {"project": "p", "endpoint": "e", "variant": "main", "reason": "no_ready_replica"}
    assert registry.get_sample_value("stratus_shadow_skipped_total", main) is None
