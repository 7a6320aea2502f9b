"""The gauges alert rules use: per-variant request rate, error ratio and p95 latency over a
rolling window (from the gateway's counters, with a fake clock), and jobs per state."""

from __future__ import annotations

import math
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from stratus.endpoints.metrics import InferenceMetrics, ReplicaCount
from stratus.monitoring.gauges import EndpointRates, JobGauges, all_variant_totals


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def samples(collector: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


def figures(rates: EndpointRates, variant: str = "main") -> tuple[float, float, float]:
    return rates.window_figures()[("p", "e", variant)]


def test_rates_over_a_rolling_window() -> None:
    metrics = InferenceMetrics(CollectorRegistry())
    clock = Clock()
    live = [ReplicaCount("p", "e", "main", "ready", 1), ReplicaCount("p", "e", "idle", "ready", 1)]
    rates = EndpointRates(lambda: all_variant_totals(metrics), lambda: live, clock=clock)
    rates.snapshot()
    series = metrics.series("p", "e", "main", "1")
    for _ in range(90):
        series.observe(200, 0.004)
    for _ in range(10):
        series.observe(503, 0.2)
    clock.now += 10
    rate, ratio, p95 = figures(rates)
    assert rate == 10.0
    assert ratio == 0.1
    assert 0.1 < p95 <= 0.25  # in the bucket that holds the 503s
    assert figures(rates, "idle") == (0.0, 0.0, figures(rates, "idle")[2])
    assert math.isnan(figures(rates, "idle")[2])
    # a minute later with no traffic, the window has moved past every request
    clock.now += 61
    rates.snapshot()
    clock.now += 5
    rate, ratio, p95 = figures(rates)
    assert (rate, ratio) == (0.0, 0.0) and math.isnan(p95)


def test_only_live_variants_are_reported_and_the_names_are_stable() -> None:
    metrics = InferenceMetrics(CollectorRegistry())
    live: list[ReplicaCount] = [ReplicaCount("p", "e", "main", "ready", 1)]
    rates = EndpointRates(lambda: all_variant_totals(metrics), lambda: live, clock=Clock())
    metrics.series("p", "gone", "main", "1").observe(200, 0.01)  # a deleted endpoint's counters
    found = samples(rates)
    labels = (("endpoint", "e"), ("project", "p"), ("variant", "main"))
    assert set(found) == {
        ("stratus_endpoint_request_rate", labels),
        ("stratus_endpoint_error_ratio", labels),
        ("stratus_endpoint_latency_p95_seconds", labels),
    }


def test_job_gauges_come_from_the_last_refresh() -> None:
    counts = {("p", "running"): 2, ("p", "queued"): 3, ("q", "failed"): 1}
    gauges = JobGauges(lambda: counts)
    assert samples(gauges) == {}
    gauges.refresh()
    found = samples(gauges)
    assert found[("stratus_jobs", (("project", "p"), ("state", "running")))] == 2
    assert found[("stratus_jobs", (("project", "p"), ("state", "succeeded")))] == 0
    assert found[("stratus_jobs", (("project", "q"), ("state", "failed")))] == 1
    assert found[("stratus_job_queue_length", (("project", "p"),))] == 3
    assert found[("stratus_job_queue_length", (("project", "q"),))] == 0
    registry = CollectorRegistry()
    registry.register(gauges)
    text = generate_latest(registry).decode()
    assert 'stratus_jobs{project="p",state="queued"} 3.0' in text


def test_the_queue_length_is_zero_for_every_project_without_a_queue() -> None:
    counts = {("p", "running"): 1}
    gauges = JobGauges(lambda: counts, lambda: ["default", "p", "q"])
    gauges.refresh()
    found = samples(gauges)
    assert found[("stratus_job_queue_length", (("project", "default"),))] == 0
    assert found[("stratus_job_queue_length", (("project", "q"),))] == 0
    assert found[("stratus_job_queue_length", (("project", "p"),))] == 0
    assert ("stratus_jobs", (("project", "q"), ("state", "queued"))) not in found
    assert found[("stratus_jobs", (("project", "p"), ("state", "running")))] == 1
