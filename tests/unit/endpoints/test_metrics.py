"""The serving metrics: request series per code, and the batch-size histogram built from the
replicas' own counters at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from stratus.endpoints.metrics import (
    InferenceMetrics,
    ReplicaCount,
    ReplicaFigures,
    ServingCollector,
)


def test_series_count_requests_errors_and_latency() -> None:
    metrics = InferenceMetrics(CollectorRegistry())
    series = metrics.series("p", "e", "main", "m:2")
    for status in (200, 200, 400):
        series.observe(status, 0.002)
    text = generate_latest(metrics.registry).decode()
    labels = 'endpoint="e",model_version="m:2",project="p",variant="main"'
    assert f'stratus_inference_requests_total{{code="200",{labels}}} 2.0' in text
    assert f'stratus_inference_errors_total{{code="400",{labels}}} 1.0' in text
    assert 'code="200"' not in text.split("stratus_inference_errors_total")[-1].split("\n# ")[0]
    assert f"stratus_inference_request_duration_seconds_count{{{labels}}} 3.0" in text


def test_batch_sizes_and_replica_counts_at_scrape_time() -> None:
    registry = CollectorRegistry()
    figures = [
        ReplicaFigures("p", "e", "main", "m:1", "r1", {"batch_sizes": {"1": 3, "5": 2, "64": 1}})
    ]
    counts = [ReplicaCount("p", "e", "main", "ready", 2)]
    registry.register(ServingCollector(lambda: counts, lambda: figures))
    text = generate_latest(registry).decode()
    prefix = 'stratus_inference_batch_size_bucket{endpoint="e",le="'
    assert prefix + '1.0",model_version="m:1",project="p",replica="r1",variant="main"} 3.0' in text
    assert prefix + '4.0",model_version="m:1",project="p",replica="r1",variant="main"} 3.0' in text
    assert prefix + '8.0",model_version="m:1",project="p",replica="r1",variant="main"} 5.0' in text
    assert prefix + '+Inf",model_version="m:1",project="p",replica="r1",variant="main"} 6.0' in text
    assert "stratus_inference_batch_size_sum" in text and "77.0" in text
    assert (
        'stratus_endpoint_replicas{endpoint="e",phase="ready",project="p",variant="main"} 2.0'
        in text
    )
