"""The gateway's picks: traffic weights, least-busy replicas, skipping closed connections,
falling back to another variant; and the request paths the gateway understands."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from stratus.core.errors import NotFound
from stratus.endpoints.gateway import _operation
from stratus.endpoints.metrics import InferenceMetrics
from stratus.endpoints.routing import EndpointRoute, ReplicaLink, VariantRoute
from stratus.serving.connections import ReplicaConnection
from stratus.serving.wire import Kind


@dataclass
class FakeConnection:
    in_flight: int = 0
    closed: bool = False
    calls: list[Any] = field(default_factory=list)


def link(name: str, in_flight: int = 0, closed: bool = False) -> ReplicaLink:
    return ReplicaLink(name, cast(ReplicaConnection, FakeConnection(in_flight, closed)))


METRICS = InferenceMetrics(CollectorRegistry())


def variant(name: str, traffic: int, *links: ReplicaLink, shadow: bool = False) -> VariantRoute:
    series = METRICS.series("p", "e", name, "m:1")
    return VariantRoute(name, traffic, shadow, "m:1", series, list(links))


def test_least_busy_replica_wins() -> None:
    v = variant("main", 100, link("a", 5), link("b", 1), link("c", 3))
    assert {v.pick().id for _ in range(10)} == {"b"}  # type: ignore[union-attr]


def test_ties_rotate_and_closed_or_avoided_replicas_are_skipped() -> None:
    a, b, c = link("a"), link("b"), link("c", closed=True)
    v = variant("main", 100, a, b, c)
    picked = Counter(v.pick().id for _ in range(100))  # type: ignore[union-attr]
    assert set(picked) == {"a", "b"} and min(picked.values()) > 20
    assert v.pick(avoid=a) is b
    assert variant("x", 100, c).pick() is None


def test_traffic_weights_are_respected() -> None:
    random.seed(7)
    route = EndpointRoute(
        "uid", "p", "e", False,
        [variant("main", 90, link("m")), variant("canary", 10, link("c")),
         variant("shadow", 0, link("s"), shadow=True)],
    )  # fmt: skip
    seen = Counter(route.pick()[0].name for _ in range(5000))  # type: ignore[index]
    assert set(seen) == {"main", "canary"}
    assert 0.08 < seen["canary"] / 5000 < 0.12
    assert [v.name for v in route.shadows] == ["shadow"]


def test_a_variant_without_replicas_falls_back_to_one_with() -> None:
    route = EndpointRoute(
        "uid", "p", "e", False, [variant("main", 50, link("m")), variant("canary", 50)]
    )
    assert {route.pick()[1].id for _ in range(50)} == {"m"}  # type: ignore[index]
    assert EndpointRoute("uid", "p", "e", False, [variant("main", 100)]).pick() is None


@pytest.mark.parametrize(
    ("rest", "kind"),
    [
        (["predict"], Kind.PLAIN_PREDICT),
        (["invocations"], Kind.MLFLOW_INVOCATIONS),
        (["v2", "models", "e", "infer"], Kind.V2_INFER),
        (["v2", "models", "e", "versions", "3", "infer"], Kind.V2_INFER),
        (["v2", "models", "e"], Kind.METADATA),
        (["v2", "models", "e", "ready"], None),
        (["v2", "health", "ready"], None),
    ],
)
def test_paths(rest: list[str], kind: Kind | None) -> None:
    assert _operation(rest, "e")[0] == kind


@pytest.mark.parametrize(
    "rest",
    [["predict", "x"], ["v2", "models", "other", "infer"], ["v1"], ["v2", "models", "e", "x"]],
)
def test_unknown_paths_are_404(rest: list[str]) -> None:
    with pytest.raises(NotFound):
        _operation(rest, "e")
