"""Prometheus metrics of the inference path, with stable names and labels.

The gateway counts requests, errors, latency and in-flight requests per endpoint, variant and
model version (label children are cached per variant, so a request costs two dict lookups).
Replica-side figures (batch sizes) and replica counts are read at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
LABELS = ("project", "endpoint", "variant", "model_version")


class InferenceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "stratus_inference_requests",
            "Inference requests answered, by HTTP status code.",
            [*LABELS, "code"],
            registry=registry,
        )
        self.errors = Counter(
            "stratus_inference_errors",
            "Inference requests that failed (HTTP status 400 or above).",
            [*LABELS, "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "stratus_inference_request_duration_seconds",
            "Time from a request's arrival at the gateway to its answer.",
            LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "stratus_inference_in_flight_requests",
            "Inference requests being answered now.",
            LABELS,
            registry=registry,
        )

    def series(self, project: str, endpoint: str, variant: str, version: str) -> Series:
        labels = (project, endpoint, variant, version)
        return Series(
            labels=labels,
            metrics=self,
            latency=self.latency.labels(*labels),
            in_flight=self.in_flight.labels(*labels),
        )


@dataclass
class Series:
    """The metric children of one (endpoint, variant, model version)."""

    labels: tuple[str, str, str, str]
    metrics: InferenceMetrics
    latency: Any
    in_flight: Any
    _codes: dict[int, tuple[Any, Any | None]] = field(default_factory=dict)

    def observe(self, status: int, seconds: float) -> None:
        children = self._codes.get(status)
        if children is None:
            code = str(status)
            children = (
                self.metrics.requests.labels(*self.labels, code),
                self.metrics.errors.labels(*self.labels, code) if status >= 400 else None,
            )
            self._codes[status] = children
        children[0].inc()
        if children[1] is not None:
            children[1].inc()
        self.latency.observe(seconds)


@dataclass(frozen=True)
class ReplicaFigures:
    """What one replica reported (its STATS frame) plus who it is."""

    project: str
    endpoint: str
    variant: str
    model_version: str
    replica: str
    stats: dict[str, Any]


@dataclass(frozen=True)
class ReplicaCount:
    project: str
    endpoint: str
    variant: str
    phase: str
    count: int


class ServingCollector(Collector):
    """Replica counts and batch sizes, read from the controller when Prometheus scrapes."""

    def __init__(
        self,
        counts: Callable[[], Iterable[ReplicaCount]],
        figures: Callable[[], Iterable[ReplicaFigures]],
    ) -> None:
        self.counts = counts
        self.figures = figures

    def collect(self) -> Iterator[Any]:
        replicas = GaugeMetricFamily(
            "stratus_endpoint_replicas",
            "Replicas of each endpoint variant, by phase.",
            labels=["project", "endpoint", "variant", "phase"],
        )
        for c in self.counts():
            replicas.add_metric([c.project, c.endpoint, c.variant, c.phase], c.count)
        yield replicas
        batches = HistogramMetricFamily(
            "stratus_inference_batch_size",
            "Rows per model call after adaptive batching, per replica.",
            labels=[*LABELS, "replica"],
        )
        for f in self.figures():
            sizes = {int(k): int(v) for k, v in f.stats.get("batch_sizes", {}).items()}
            buckets = [
                (_go_float(bound), sum(n for size, n in sizes.items() if size <= bound))
                for bound in BATCH_BUCKETS
            ]
            buckets.append(("+Inf", sum(sizes.values())))
            total = float(sum(size * n for size, n in sizes.items()))
            batches.add_metric(
                [f.project, f.endpoint, f.variant, f.model_version, f.replica], buckets, total
            )
        yield batches


def _go_float(value: float) -> str:
    """A bucket bound as Prometheus writes it (`1.0`, `+Inf`)."""
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]
