"""Gate decisions: a pure function of the candidate's and the baseline's metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stratus.pipelines.schemas import GateStep


@dataclass
class GateVerdict:
    passed: bool
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reason(self) -> str:
        failed = [c["text"] for c in self.checks if not c["passed"]]
        return "; ".join(failed) if failed else "every check passed"


def judge(
    gate: GateStep, candidate: dict[str, float], baseline: dict[str, float] | None
) -> GateVerdict:
    """Each bound on the candidate's metrics, and the `beat` rule against the baseline (a run
    with no baseline yet — the alias points nowhere — passes `beat`, saying so)."""
    verdict = GateVerdict(passed=True)

    def record(passed: bool, text: str, **figures: Any) -> None:
        verdict.checks.append({"passed": passed, "text": text, **figures})
        verdict.passed = verdict.passed and passed

    for metric, bound in gate.metrics.items():
        value = candidate.get(metric)
        if value is None:
            record(False, f"{metric}: the evaluation has no such metric", metric=metric)
            continue
        if bound.min is not None and value < bound.min:
            record(False, f"{metric} {value:.4g} < {bound.min:g}", metric=metric, value=value)
        elif bound.max is not None and value > bound.max:
            record(False, f"{metric} {value:.4g} > {bound.max:g}", metric=metric, value=value)
        else:
            record(True, f"{metric} {value:.4g} within bounds", metric=metric, value=value)
    rule = gate.beat
    if rule is not None:
        mine = candidate.get(rule.metric)
        theirs = None if baseline is None else baseline.get(rule.metric)
        if mine is None:
            record(False, f"{rule.metric}: the candidate's evaluation has no such metric")
        elif baseline is None:
            record(True, f"no baseline yet: {rule.metric} {mine:.4g} stands alone")
        elif theirs is None:
            record(False, f"{rule.metric}: the baseline's evaluation has no such metric")
        else:
            better = mine - theirs if rule.higher_is_better else theirs - mine
            ok = better >= rule.margin
            word = "holds up against" if ok else "does not hold up against"
            record(
                ok,
                f"candidate {rule.metric} {mine:.4g} {word} the baseline's {theirs:.4g}"
                + f" (needed a difference of at least {rule.margin:+g})",
                metric=rule.metric,
                candidate=mine,
                baseline=theirs,
            )
    return verdict
