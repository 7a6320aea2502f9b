"""Gauges that alert rules can hold a threshold against (counters cannot): each endpoint
variant's request rate, server-error ratio and p95 latency over a rolling window, computed
from the gateway's own counters; and training jobs per state. Names and labels are a
contract: docs/monitoring-metrics.md.

The rolling window keeps snapshots of the per-variant totals (taken at each collection and
each alert evaluation) and compares now with the oldest snapshot inside the window. Job
counts come from the database, so they are refreshed off the event loop (by the alert
evaluator) and read from memory when Prometheus scrapes.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stratus.endpoints.metrics import InferenceMetrics, ReplicaCount, VariantTotals
from stratus.jobs.schemas import JobPhase

WINDOW_SECONDS = 60.0
_VARIANT = ["project", "endpoint", "variant"]
VariantKey = tuple[str, str, str]


def all_variant_totals(metrics: InferenceMetrics) -> dict[VariantKey, VariantTotals]:
    """Every variant's totals since the platform started (its model versions summed), read
    back from the gateway's counters and latency histogram."""
    codes: dict[VariantKey, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for family in metrics.requests.collect():
        for sample in family.samples:
            if sample.name == f"{family.name}_total":
                labels = sample.labels
                key = (labels["project"], labels["endpoint"], labels["variant"])
                codes[key][int(labels["code"])] += sample.value
    buckets: dict[VariantKey, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    sums: dict[VariantKey, float] = defaultdict(float)
    for family in metrics.latency.collect():
        for sample in family.samples:
            labels = sample.labels
            key = (labels["project"], labels["endpoint"], labels["variant"])
            if sample.name == f"{family.name}_bucket":
                buckets[key][float(labels["le"])] += sample.value
            elif sample.name == f"{family.name}_sum":
                sums[key] += sample.value
    return {
        key: VariantTotals(
            requests=round(sum(codes[key].values())),
            errors=round(sum(n for code, n in codes[key].items() if code >= 500)),
            client_errors=round(sum(n for code, n in codes[key].items() if 400 <= code < 500)),
            latency_buckets=tuple(
                (bound, round(count)) for bound, count in sorted(buckets[key].items())
            ),
            latency_sum=sums[key],
        )
        for key in codes.keys() | buckets.keys()
    }


class EndpointRates(Collector):
    """`stratus_endpoint_request_rate`, `stratus_endpoint_error_ratio` and
    `stratus_endpoint_latency_p95_seconds` for every variant of every live endpoint."""

    def __init__(
        self,
        totals: Callable[[], dict[VariantKey, VariantTotals]],
        variants: Callable[[], Iterable[ReplicaCount]],
        *,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.totals = totals
        self.variants = variants
        self.window = window_seconds
        self.clock = clock
        self._snapshots: deque[tuple[float, dict[VariantKey, VariantTotals]]] = deque()
        self._lock = threading.Lock()

    def snapshot(self) -> tuple[float, dict[VariantKey, VariantTotals]]:
        """Take the totals now; keep what the window needs; (now, totals)."""
        now, totals = self.clock(), self.totals()
        with self._lock:
            self._snapshots.append((now, totals))
            # keep every snapshot inside the window, and the newest one before it (the base)
            while len(self._snapshots) > 1 and self._snapshots[1][0] <= now - self.window:
                self._snapshots.popleft()
        return now, totals

    def window_figures(self) -> dict[VariantKey, tuple[float, float, float]]:
        """(requests per second, server-error ratio, p95 latency or NaN) per live variant."""
        now, totals = self.snapshot()
        with self._lock:
            since, base = self._snapshots[0]
        elapsed = now - since
        live = {(c.project, c.endpoint, c.variant) for c in self.variants()}
        figures = {}
        for key in sorted(live):
            window = totals.get(key, VariantTotals.empty()).minus(
                base.get(key, VariantTotals.empty())
            )
            rate = window.requests / elapsed if elapsed > 0 else 0.0
            ratio = window.errors / window.requests if window.requests else 0.0
            p95 = window.quantile(0.95)
            figures[key] = (rate, ratio, math.nan if p95 is None else p95)
        return figures

    def collect(self) -> Iterator[Any]:
        rate = GaugeMetricFamily(
            "stratus_endpoint_request_rate",
            f"Inference requests per second over the last {self.window:g} s, per variant.",
            labels=_VARIANT,
        )
        errors = GaugeMetricFamily(
            "stratus_endpoint_error_ratio",
            f"Share of requests answered 5xx over the last {self.window:g} s (0 when idle).",
            labels=_VARIANT,
        )
        p95 = GaugeMetricFamily(
            "stratus_endpoint_latency_p95_seconds",
            f"95th percentile latency over the last {self.window:g} s (NaN when idle).",
            labels=_VARIANT,
        )
        for key, (r, e, q) in _retrying(self.window_figures).items():
            rate.add_metric(list(key), r)
            errors.add_metric(list(key), e)
            p95.add_metric(list(key), q)
        yield from (rate, errors, p95)


class JobGauges(Collector):
    """`stratus_jobs{project,state}` (each project that has a job) and
    `stratus_job_queue_length{project}` (every project, 0 when nothing waits, so the
    platform's queue reads 0 rather than nothing), from the last `refresh` (the database is
    never read while Prometheus waits)."""

    def __init__(
        self,
        count: Callable[[], dict[tuple[str, str], int]],
        projects: Callable[[], Iterable[str]] = lambda: (),
    ) -> None:
        self.count = count
        self.projects = projects
        self._counts: dict[tuple[str, str], int] = {}
        self._projects: list[str] = []

    def refresh(self) -> None:
        self._counts = self.count()
        self._projects = list(self.projects())

    def collect(self) -> Iterator[Any]:
        counts = self._counts
        jobs = GaugeMetricFamily(
            "stratus_jobs", "Training and evaluation jobs, by state.", labels=["project", "state"]
        )
        queue = GaugeMetricFamily(
            "stratus_job_queue_length",
            "Jobs queued for capacity (waiting to start).",
            labels=["project"],
        )
        with_jobs = {p for p, _ in counts}
        for project in sorted(with_jobs | set(self._projects)):
            if project in with_jobs:
                for phase in JobPhase:
                    jobs.add_metric([project, phase.value], counts.get((project, phase.value), 0))
            queue.add_metric([project], counts.get((project, JobPhase.queued.value), 0))
        yield from (jobs, queue)


def _retrying(read: Callable[[], Any], attempts: int = 3) -> Any:
    """The endpoint controller's tables change on the event loop while another thread (the
    alert evaluator) collects: a read that meets a change in flight is simply read again."""
    for attempt in range(attempts):
        try:
            return read()
        except RuntimeError:  # "dictionary changed size during iteration"
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
