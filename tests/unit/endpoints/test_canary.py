"""Canary analysis, table-driven: roll back as soon as a bound breaks on enough requests,
promote once there is enough evidence within bounds, decide by the deadline, else wait."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stratus.endpoints.canary import CanaryPolicy, Verdict, decide
from stratus.endpoints.metrics import LATENCY_BUCKETS, VariantTotals

W, P, R = Verdict.wait, Verdict.promote, Verdict.rollback


def totals(n: int, errors: int = 0, ms: float = 4.0, client_errors: int = 0) -> VariantTotals:
    """`n` requests, all of them taking `ms` milliseconds."""
    seconds = ms / 1000
    buckets = tuple((b, n if seconds <= b else 0) for b in LATENCY_BUCKETS)
    return VariantTotals(n, errors, client_errors, (*buckets, (float("inf"), n)), n * seconds)


def policy(**fields: object) -> CanaryPolicy:
    return CanaryPolicy.model_validate(fields)


CASES = [
    # (policy, canary, primary, elapsed seconds, verdict, words in the reason)
    # gathering evidence
    (policy(), totals(0), None, 0, W, "0 requests of 100"),
    (policy(), totals(50), totals(450), 10, W, "50 requests of 100"),
    (policy(min_seconds=60), totals(100), None, 30, W, "30 s of 60 s"),
    # enough requests (and time), every bound holds
    (policy(), totals(100), totals(900), 0, P, "promote: 100 requests, 0.0% errors, p95"),
    (policy(min_seconds=60), totals(100), None, 60, P, "promote: 100 requests"),
    (policy(min_requests=0), totals(0), None, 0, P, "promote: 0 requests"),
    (policy(max_error_rate=0.01), totals(200, errors=2), None, 1, P, "1.0% errors"),
    # client errors are the callers' mistakes, not the canary's
    (policy(), totals(100, client_errors=60), None, 1, P, "0.0% errors"),
    # the error rate breaks its bound: roll back at once, even before min_requests/min_seconds
    (policy(), totals(240, errors=10), None, 5, R,
     "canary error rate 4.2% > 1.0% after 240 requests"),
    (policy(min_seconds=300), totals(20, errors=1), None, 5, R, "5.0% > 1.0% after 20 requests"),
    (policy(max_error_rate=0), totals(500, errors=1), None, 5, R, "0.2% > 0.0%"),
    (policy(max_error_rate=0.0005), totals(1000, errors=1), None, 5, R, "0.1% > 0.05%"),
    (policy(max_error_rate=0.00001), totals(50000, errors=1), None, 5, R, "0.002% > 0.001%"),
    # ...but not on a handful of requests (1 failure of 3 is not 33 %): wait for more
    (policy(), totals(3, errors=1), None, 5, W, "33.3% > 1.0% on 3 requests (20 needed to judge)"),
    (policy(min_requests=5), totals(5, errors=1), None, 5, W, "(20 needed to judge)"),
    (policy(min_requests_for_errors=5), totals(5, errors=1), None, 5, R, "after 5 requests"),
    # p95 bound
    (policy(max_p95_latency_ms=200), totals(100, ms=300), None, 1, R, "canary p95 "),
    (policy(max_p95_latency_ms=200), totals(100, ms=300), None, 1, R, "> 200 ms after 100"),
    (policy(max_p95_latency_ms=200), totals(100, ms=12), None, 1, P, "p95 24.2 ms <= 200 ms"),
    (policy(max_p95_latency_ms=200), totals(10, ms=300), None, 1, W, "canary p95"),
    (policy(min_requests=20, min_requests_for_errors=5, max_p95_latency_ms=0.001), totals(5),
     None, 1, R, "p95"),
    # p95 relative to the primary's, when the primary had traffic in the window
    (policy(max_latency_ratio=2), totals(100, ms=300), totals(900, ms=30), 1, R,
     "p95 488 ms is 10.00x the primary's 48.8 ms > 2x"),
    (policy(max_latency_ratio=2.5), totals(100, ms=60), totals(900, ms=30), 1, P,
     "p95 97.5 ms, 2.00x the primary's p95 <= 2.5x"),
    (policy(max_latency_ratio=2), totals(100, ms=300), None, 1, P, "promote"),
    (policy(max_latency_ratio=2), totals(100, ms=300), totals(0), 1, P, "promote"),
    # the deadline: too little evidence rolls back...
    (policy(), totals(40), totals(360), 600, R, "not enough evidence by 600 s: 40 requests of 100"),
    (policy(max_seconds=60), totals(0), None, 61, R, "0 requests of 100"),
    # ...unless promote_on_timeout, and then only within bounds
    (policy(promote_on_timeout=True), totals(40), None, 600, P, "promote on timeout after 600 s"),
    (policy(promote_on_timeout=True), totals(3, errors=1), None, 600, R,
     "33.3% > 1.0% after 3 requests, at the 600 s deadline"),
    (policy(min_requests=5), totals(5, errors=1), None, 600, R, "at the 600 s deadline"),
    # enough evidence by the deadline: decided on it
    (policy(), totals(100), None, 900, P, "promote"),
]  # fmt: skip


@pytest.mark.parametrize(("policy", "canary", "primary", "elapsed", "verdict", "words"), CASES)
def test_decide(
    policy: CanaryPolicy,
    canary: VariantTotals,
    primary: VariantTotals | None,
    elapsed: float,
    verdict: Verdict,
    words: str,
) -> None:
    decision = decide(policy, canary, primary, elapsed)
    assert decision.verdict is verdict, decision.reason
    assert words in decision.reason, decision.reason
    assert decision.canary is canary and decision.primary is primary


def test_the_policy_is_the_pipeline_yaml_shape() -> None:
    parsed = CanaryPolicy.model_validate(
        {"traffic": 50, "min_requests": 30, "max_error_rate": 0.02, "max_p95_latency_ms": 1000}
    )
    assert parsed.traffic == 50 and parsed.max_seconds == 600 and not parsed.promote_on_timeout
    assert parsed.min_requests_for_errors == 20 and parsed.max_latency_ratio is None


@pytest.mark.parametrize(
    "fields",
    [
        {"traffic": 0},
        {"traffic": 100},
        {"max_error_rate": 1.5},
        {"max_seconds": 0},
        {"max_p95_latency_ms": 0},
        {"min_seconds": 700, "max_seconds": 600},
        {"max_error_rat": 0.1},  # a typo is an error, not a default
    ],
)
def test_invalid_policies_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CanaryPolicy.model_validate(fields)
