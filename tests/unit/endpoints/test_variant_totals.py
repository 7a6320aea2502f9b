"""Per-variant totals read back from the gateway's own counters: every model version of a
variant summed, server and client errors apart, the latency histogram; the window since a
snapshot; quantiles estimated as Prometheus' `histogram_quantile` does."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from stratus.endpoints.metrics import LATENCY_BUCKETS, InferenceMetrics, VariantTotals

INF = float("inf")


def test_totals_per_variant_sum_the_versions_and_split_the_errors() -> None:
    metrics = InferenceMetrics(CollectorRegistry())
    main_1 = metrics.series("p", "e", "main", "m:1")
    main_2 = metrics.series("p", "e", "main", "m:2")
    canary = metrics.series("p", "e", "canary", "m:3")
    for status in (200, 200, 200, 404, 500):
        main_1.observe(status, 0.003)
    for status in (200, 400, 503):
        main_2.observe(status, 0.02)
    for status in (200, 504):
        canary.observe(status, 0.3)
    metrics.series("p", "other", "main", "m:1").observe(500, 0.001)  # another endpoint
    metrics.series("q", "e", "main", "m:1").observe(500, 0.001)  # same name, other project
    metrics.series("p", "e", "shadow", "m:4")  # a variant that never answered

    totals = metrics.variant_totals("p", "e")

    assert set(totals) == {"main", "canary", "shadow"}
    main = totals["main"]
    assert (main.requests, main.errors, main.client_errors) == (8, 2, 2)
    assert main.latency_sum == pytest.approx(5 * 0.003 + 3 * 0.02)
    buckets = dict(main.latency_buckets)
    assert [b for b, _ in main.latency_buckets] == [*LATENCY_BUCKETS, INF]
    assert (buckets[0.0025], buckets[0.005], buckets[0.01], buckets[0.025], buckets[INF]) == (
        0, 5, 5, 8, 8,
    )  # fmt: skip
    assert (totals["canary"].requests, totals["canary"].errors) == (2, 1)
    assert totals["shadow"] == VariantTotals(0, 0, 0, totals["shadow"].latency_buckets, 0.0)
    assert totals["shadow"].quantile(0.95) is None
    assert metrics.variant_totals("p", "nothing") == {}


def test_the_window_since_a_snapshot() -> None:
    metrics = InferenceMetrics(CollectorRegistry())
    series = metrics.series("p", "e", "canary", "m:2")
    for _ in range(10):
        series.observe(200, 0.003)
    before = metrics.variant_totals("p", "e")["canary"]
    for status in (200, 200, 500, 502, 429):
        series.observe(status, 0.2)
    window = metrics.variant_totals("p", "e")["canary"].minus(before)

    assert (window.requests, window.errors, window.client_errors) == (5, 2, 1)
    assert window.latency_sum == pytest.approx(5 * 0.2)
    buckets = dict(window.latency_buckets)
    assert buckets[0.005] == 0 and buckets[0.1] == 0 and buckets[0.25] == 5 and buckets[INF] == 5
    assert 0.1 < (window.quantile(0.5) or 0) <= 0.25  # the old fast requests are gone


def test_a_window_from_nothing_and_after_a_restart() -> None:
    now = VariantTotals(4, 1, 0, ((0.1, 3), (INF, 4)), 0.5)
    assert now.minus(VariantTotals.empty()) == now
    assert now.minus(now) == VariantTotals(0, 0, 0, ((0.1, 0), (INF, 0)), 0.0)
    # counters only grow: fewer requests than the snapshot means they restarted from zero
    assert now.minus(VariantTotals(9, 0, 0, ((0.1, 9), (INF, 9)), 2.0)) == now


def test_a_snapshot_survives_json() -> None:
    import json

    now = VariantTotals(4, 1, 2, ((0.1, 3), (INF, 4)), 0.5)
    text = json.dumps(now.as_json(), allow_nan=False)  # JSON has no infinity
    assert VariantTotals.from_json(json.loads(text)) == now
    assert VariantTotals.from_json(VariantTotals.empty().as_json()) == VariantTotals.empty()


HISTOGRAM = VariantTotals(40, 0, 0, ((0.1, 10), (0.2, 30), (INF, 40)), 6.0)

QUANTILES = [
    # (q, expected seconds), as Prometheus' histogram_quantile computes them
    (0.0, 0.0),
    (0.25, 0.1),  # the rank is the first bucket's count: its upper bound
    (0.125, 0.05),  # linear from 0 inside the first bucket
    (0.5, 0.15),  # rank 20: 10 into (0.1, 0.2] holding 20
    (0.75, 0.2),
    (0.95, 0.2),  # the rank falls in +Inf: the highest finite bound
    (1.0, 0.2),
]


@pytest.mark.parametrize(("q", "expected"), QUANTILES)
def test_quantile_interpolates_like_prometheus(q: float, expected: float) -> None:
    assert HISTOGRAM.quantile(q) == pytest.approx(expected)


def test_quantile_of_nothing_and_out_of_range() -> None:
    assert VariantTotals.empty().quantile(0.5) is None
    assert VariantTotals(0, 0, 0, ((0.1, 0), (INF, 0)), 0.0).quantile(0.95) is None
    with pytest.raises(ValueError):
        HISTOGRAM.quantile(1.5)


def test_quantile_from_real_observations() -> None:
    metrics = InferenceMetrics(CollectorRegistry())
    series = metrics.series("p", "e", "main", "m:1")
    for i in range(100):
        series.observe(200, 0.004 if i < 90 else 0.04)  # 90 in (2.5, 5] ms, 10 in (25, 50] ms
    totals = metrics.variant_totals("p", "e")["main"]
    p50, p95 = totals.quantile(0.5), totals.quantile(0.95)
    assert p50 is not None and p95 is not None
    assert math.isclose(p50, 0.0025 + 0.0025 * 50 / 90)
    assert math.isclose(p95, 0.025 + 0.025 * 5 / 10)
