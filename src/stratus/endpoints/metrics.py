"""Prometheus metrics of the inference path, with stable names and labels.

The gateway counts requests, errors, latency and in-flight requests per endpoint, variant and
model version (label children are cached per variant, so a request costs two dict lookups),
and the request copies a shadow variant missed.
Replica-side figures (batch sizes) and replica counts are read at scrape time. Canary analysis
reads the same counters back per variant (`variant_totals`), so there is one source of truth.
"""

from __future__ import annotations

import math
from collections import defaultdict
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
COLD_START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
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
        self.cold_start_wait = Histogram(
            "stratus_inference_cold_start_wait_seconds",
            "How long requests to an endpoint at zero replicas waited at the gateway for one "
            "(answered or not).",
            ["project", "endpoint"],
            buckets=COLD_START_BUCKETS,
            registry=registry,
        )
        self.rate_limited = Counter(
            "stratus_rate_limited",
            "Requests refused with 429 by a rate limit, by scope: key (an API key's own "
            "limit), project (a project's per-caller limit), endpoint (the endpoint's limit) "
            "or login (failed logins).",
            ["scope", "project", "endpoint"],
            registry=registry,
        )
        self.shadow_skips = Counter(
            "stratus_shadow_skipped",
            "Copies of requests a shadow variant did not get, by reason "
            "(no_ready_replica: none of its replicas was routable when the request came).",
            ["project", "endpoint", "variant", "reason"],
            registry=registry,
        )

    def rate_limited_by(self, scope: str, project: str, endpoint: str) -> None:
        self.rate_limited.labels(scope, project, endpoint).inc()

    def series(self, project: str, endpoint: str, variant: str, version: str) -> Series:
        labels = (project, endpoint, variant, version)
        return Series(
            labels=labels,
            metrics=self,
            latency=self.latency.labels(*labels),
            in_flight=self.in_flight.labels(*labels),
        )

    def variant_totals(self, project: str, endpoint: str) -> dict[str, VariantTotals]:
        """Each variant's figures since the platform started (all its model versions summed),
        read back from the counters and the latency histogram."""
        codes: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for family in self.requests.collect():
            for sample in family.samples:
                labels = sample.labels
                if (
                    sample.name == f"{family.name}_total"
                    and labels["project"] == project
                    and labels["endpoint"] == endpoint
                ):
                    codes[labels["variant"]][int(labels["code"])] += sample.value
        buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
        sums: dict[str, float] = defaultdict(float)
        for family in self.latency.collect():
            for sample in family.samples:
                labels = sample.labels
                if labels["project"] != project or labels["endpoint"] != endpoint:
                    continue
                if sample.name == f"{family.name}_bucket":
                    buckets[labels["variant"]][float(labels["le"])] += sample.value
                elif sample.name == f"{family.name}_sum":
                    sums[labels["variant"]] += sample.value
        return {
            variant: VariantTotals(
                requests=round(sum(codes[variant].values())),
                errors=round(sum(n for code, n in codes[variant].items() if code >= 500)),
                client_errors=round(
                    sum(n for code, n in codes[variant].items() if 400 <= code < 500)
                ),
                latency_buckets=tuple(
                    (bound, round(count)) for bound, count in sorted(buckets[variant].items())
                ),
                latency_sum=sums[variant],
            )
            for variant in sorted(codes.keys() | buckets.keys())
        }


@dataclass(frozen=True)
class VariantTotals:
    """One variant's answered requests: all of them, server errors (status 500 and above,
    the gateway's 503/504 included), client errors (400-499, the callers' mistakes, apart),
    and the latency histogram (cumulative `(upper bound in seconds, count)`, `+Inf` last)."""

    requests: int
    errors: int
    client_errors: int
    latency_buckets: tuple[tuple[float, int], ...]
    latency_sum: float

    @classmethod
    def empty(cls) -> VariantTotals:
        return cls(0, 0, 0, (), 0.0)

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe dict (to keep a snapshot in a JSON column): the `+Inf` bound as the
        string `"+Inf"`, since JSON has no infinity."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "client_errors": self.client_errors,
            "latency_buckets": [
                ["+Inf" if math.isinf(bound) else bound, count]
                for bound, count in self.latency_buckets
            ],
            "latency_sum": self.latency_sum,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VariantTotals:
        """The inverse of `as_json`."""
        return cls(
            requests=int(data["requests"]),
            errors=int(data["errors"]),
            client_errors=int(data.get("client_errors", 0)),
            latency_buckets=tuple(
                (float(bound), int(count)) for bound, count in data.get("latency_buckets", ())
            ),
            latency_sum=float(data.get("latency_sum", 0.0)),
        )

    def minus(self, earlier: VariantTotals) -> VariantTotals:
        """The window since `earlier` (a snapshot of the same variant). Counters only grow, so
        fewer requests now than then means the platform restarted: the window is all of now."""
        if self.requests < earlier.requests:
            return self
        before = dict(earlier.latency_buckets)
        return VariantTotals(
            requests=self.requests - earlier.requests,
            errors=max(0, self.errors - earlier.errors),
            client_errors=max(0, self.client_errors - earlier.client_errors),
            latency_buckets=tuple(
                (bound, max(0, count - before.get(bound, 0)))
                for bound, count in self.latency_buckets
            ),
            latency_sum=max(0.0, self.latency_sum - earlier.latency_sum),
        )

    def quantile(self, q: float) -> float | None:
        """The `q` quantile of the latency in seconds, as Prometheus' `histogram_quantile`
        estimates it: linear inside the bucket holding the rank; the highest finite bound when
        the rank falls in `+Inf`. None without requests."""
        if not 0 <= q <= 1:
            raise ValueError(f"a quantile is between 0 and 1, not {q}")
        if not self.latency_buckets or self.latency_buckets[-1][1] <= 0:
            return None
        rank = q * self.latency_buckets[-1][1]
        lower, below = 0.0, 0
        for i, (bound, count) in enumerate(self.latency_buckets):
            if count >= rank:
                if math.isinf(bound):
                    return lower if i > 0 else None
                if count == below:
                    return lower
                return lower + (bound - lower) * (rank - below) / (count - below)
            lower, below = bound, count
        return lower


@dataclass
class Series:
    """The metric children of one (endpoint, variant, model version)."""

    labels: tuple[str, str, str, str]
    metrics: InferenceMetrics
    latency: Any
    in_flight: Any
    active: int = 0  # requests in flight now, as plain counts for the autoscaler
    arrived: int = 0  # requests that reached the variant (a refused one at zero replicas too)
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

    def shadow_skipped(self, reason: str) -> None:
        """A copy of a request this (shadow) variant did not get."""
        project, endpoint, variant, _ = self.labels
        self.metrics.shadow_skips.labels(project, endpoint, variant, reason).inc()


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
        desired: Callable[[], Iterable[ReplicaCount]] = tuple,
    ) -> None:
        self.counts = counts
        self.figures = figures
        self.desired = desired

    def collect(self) -> Iterator[Any]:
        replicas = GaugeMetricFamily(
            "stratus_endpoint_replicas",
            "Replicas of each endpoint variant, by phase.",
            labels=["project", "endpoint", "variant", "phase"],
        )
        for c in self.counts():
            replicas.add_metric([c.project, c.endpoint, c.variant, c.phase], c.count)
        yield replicas
        desired = GaugeMetricFamily(
            "stratus_endpoint_desired_replicas",
            "Replicas each endpoint variant should have: its spec's count, or its autoscaler's.",
            labels=["project", "endpoint", "variant"],
        )
        for c in self.desired():
            desired.add_metric([c.project, c.endpoint, c.variant], c.count)
        yield desired
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
