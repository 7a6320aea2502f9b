"""Canary analysis: from a canary's figures since it started, promote it, roll it back, or wait.

Pure (no I/O, no clock), so it is tested table-driven. The caller (a pipeline's deploy step)
snapshots `InferenceMetrics.variant_totals` when the canary becomes ready, and on each poll
passes the window since then (`VariantTotals.minus`) and the seconds elapsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:  # the policy is part of a pipeline's spec, which the SDK loads without
    # prometheus_client: the figures' type is only named here
    from stratus.endpoints.metrics import VariantTotals


class CanaryPolicy(BaseModel):
    """When a canary is good enough to promote, and when it is bad enough to roll back (the
    `canary:` block of a pipeline's deploy step)."""

    model_config = ConfigDict(extra="forbid")

    traffic: int = Field(10, ge=1, le=99, description="percent of the requests to the canary")
    min_requests: int = Field(100, ge=0, description="promote after this many canary requests…")
    min_seconds: float = Field(0, ge=0, description="…and at least this long")
    max_seconds: float = Field(
        600, gt=0, description="decide by then: without min_requests, roll back (or promote)"
    )
    promote_on_timeout: bool = Field(
        False, description="at max_seconds without min_requests, promote if the bounds hold"
    )
    max_error_rate: float = Field(
        0.01, ge=0, le=1, description="the canary's share of server errors (status >= 500)"
    )
    max_p95_latency_ms: float | None = Field(None, gt=0, description="the canary's p95 bound")
    max_latency_ratio: float | None = Field(
        None, gt=0, description="bound on canary p95 / primary p95 (when the primary has traffic)"
    )
    min_requests_for_errors: int = Field(
        20, ge=0, description="roll back on a bound only past this many canary requests"
    )

    @model_validator(mode="after")
    def _times(self) -> CanaryPolicy:
        if self.min_seconds > self.max_seconds:
            raise ValueError(
                f"min_seconds ({self.min_seconds:g}) is past max_seconds ({self.max_seconds:g})"
            )
        return self


class Verdict(StrEnum):
    wait = "wait"
    promote = "promote"
    rollback = "rollback"


@dataclass(frozen=True)
class CanaryDecision:
    verdict: Verdict
    reason: str  # for people: the figures that decided it
    canary: VariantTotals  # the window's figures, for the run's record
    primary: VariantTotals | None


def decide(
    policy: CanaryPolicy,
    canary: VariantTotals,
    primary: VariantTotals | None,
    elapsed_seconds: float,
) -> CanaryDecision:
    """Roll back as soon as a bound breaks past `min_requests_for_errors` requests; promote
    once `min_requests` and `min_seconds` are reached with every bound holding; at
    `max_seconds` decide anyway (too little evidence rolls back unless `promote_on_timeout`);
    else wait. A bound broken on fewer requests than `min_requests_for_errors` does not roll
    back early, but it does keep the canary from being promoted."""

    def verdict(v: Verdict, reason: str) -> CanaryDecision:
        return CanaryDecision(v, reason, canary, primary)

    n = canary.requests
    breach = _breach(policy, canary, primary)
    if breach is not None and n >= policy.min_requests_for_errors:
        return verdict(Verdict.rollback, f"{breach} after {_requests(n)}")
    enough = n >= policy.min_requests
    timed_out = elapsed_seconds >= policy.max_seconds  # implies min_seconds (validated)
    if breach is None and enough and elapsed_seconds >= policy.min_seconds:
        return verdict(Verdict.promote, f"promote: {_summary(policy, canary, primary)}")
    if timed_out:
        if breach is None and policy.promote_on_timeout:
            return verdict(
                Verdict.promote,
                f"promote on timeout after {elapsed_seconds:.0f} s: "
                f"{_summary(policy, canary, primary)}",
            )
        if breach is not None:
            return verdict(
                Verdict.rollback,
                f"{breach} after {_requests(n)}, at the {policy.max_seconds:g} s deadline",
            )
        return verdict(
            Verdict.rollback,
            f"not enough evidence by {policy.max_seconds:g} s: "
            f"{_requests(n)} of {policy.min_requests}",
        )
    waiting_for = []
    if not enough:
        waiting_for.append(f"{_requests(n)} of {policy.min_requests}")
    if elapsed_seconds < policy.min_seconds:
        waiting_for.append(f"{elapsed_seconds:.0f} s of {policy.min_seconds:g} s")
    if breach is not None:
        waiting_for.append(
            f"{breach} on {_requests(n)} ({policy.min_requests_for_errors} needed to judge)"
        )
    return verdict(Verdict.wait, f"waiting: {'; '.join(waiting_for)}")


def _breach(
    policy: CanaryPolicy, canary: VariantTotals, primary: VariantTotals | None
) -> str | None:
    """The first bound the canary's figures break, in words; None if all hold."""
    if canary.requests > 0:
        rate = canary.errors / canary.requests
        if rate > policy.max_error_rate:
            return f"canary error rate {_pct(rate)} > {_pct(policy.max_error_rate)}"
    p95 = canary.quantile(0.95)
    if p95 is None:
        return None
    if policy.max_p95_latency_ms is not None and p95 * 1000 > policy.max_p95_latency_ms:
        return f"canary p95 {_ms(p95)} > {policy.max_p95_latency_ms:g} ms"
    base = _primary_p95(primary)
    if policy.max_latency_ratio is not None and base is not None:
        ratio = p95 / base
        if ratio > policy.max_latency_ratio:
            return (
                f"canary p95 {_ms(p95)} is {ratio:.2f}x the primary's {_ms(base)} "
                f"> {policy.max_latency_ratio:g}x"
            )
    return None


def _summary(policy: CanaryPolicy, canary: VariantTotals, primary: VariantTotals | None) -> str:
    n = canary.requests
    rate = canary.errors / n if n else 0.0
    parts = [_requests(n), f"{_pct(rate)} errors"]
    p95 = canary.quantile(0.95)
    if p95 is not None:
        bound = policy.max_p95_latency_ms
        parts.append(f"p95 {_ms(p95)}" + (f" <= {bound:g} ms" if bound is not None else ""))
        base = _primary_p95(primary)
        if policy.max_latency_ratio is not None and base is not None:
            parts.append(f"{p95 / base:.2f}x the primary's p95 <= {policy.max_latency_ratio:g}x")
    return ", ".join(parts)


def _primary_p95(primary: VariantTotals | None) -> float | None:
    """The primary's p95 in the window, if it had traffic to compare with."""
    if primary is None or primary.requests == 0:
        return None
    p95 = primary.quantile(0.95)
    return p95 if p95 is not None and p95 > 0 else None


def _requests(n: int) -> str:
    return f"{n} request" if n == 1 else f"{n} requests"


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.3g} ms" if ms >= 1 else f"{ms:.2g} ms"


def _pct(share: float) -> str:
    """`4.2%`; more digits where one decimal would hide or misstate it (`0.05%`, `0.002%`)."""
    text = f"{share:.1%}"
    if abs(float(text[:-1]) / 100 - share) < 1e-9 or float(text[:-1]) >= 1:
        return text
    return f"{share * 100:.2g}%"
