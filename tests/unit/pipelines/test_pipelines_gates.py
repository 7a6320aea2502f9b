"""Gate decisions, table-driven: bounds on the candidate's metrics and beating the baseline."""

from __future__ import annotations

from typing import Any

import pytest

from stratus.pipelines.gates import judge
from stratus.pipelines.schemas import GateStep


def gate(**fields: Any) -> GateStep:
    return GateStep.model_validate({"name": "gate", "type": "gate", **fields})


@pytest.mark.parametrize(
    "spec, candidate, baseline, passed, text",
    [
        ({"metrics": {"accuracy": {"min": 0.8}}}, {"accuracy": 0.85}, None, True, "within"),
        ({"metrics": {"accuracy": {"min": 0.8}}}, {"accuracy": 0.75}, None, False, "0.75 < 0.8"),
        ({"metrics": {"rmse": {"max": 2}}}, {"rmse": 2.5}, None, False, "2.5 > 2"),
        ({"metrics": {"f1": {"min": 0.5}}}, {"accuracy": 0.9}, None, False, "no such metric"),
        # beat: not worse (margin 0), by a point (0.01), at most a point worse (-0.01)
        ({"beat": {"metric": "accuracy"}}, {"accuracy": 0.85}, {"accuracy": 0.85}, True, "holds"),
        ({"beat": {"metric": "accuracy"}}, {"accuracy": 0.84}, {"accuracy": 0.85}, False, "not"),
        ({"beat": {"metric": "accuracy", "margin": 0.01}}, {"accuracy": 0.855},
         {"accuracy": 0.85}, False, "+0.01"),
        ({"beat": {"metric": "accuracy", "margin": -0.01}}, {"accuracy": 0.845},
         {"accuracy": 0.85}, True, "-0.01"),
        # lower is better
        ({"beat": {"metric": "rmse", "higher_is_better": False}}, {"rmse": 1.0}, {"rmse": 1.2},
         True, "holds"),
        # no baseline yet: nothing to beat
        ({"beat": {"metric": "accuracy"}}, {"accuracy": 0.5}, None, True, "no baseline yet"),
        ({"beat": {"metric": "accuracy"}}, {"accuracy": 0.5}, {"f1": 0.4}, False,
         "baseline's evaluation has no such metric"),
    ],
)  # fmt: skip
def test_judge(
    spec: dict[str, Any],
    candidate: dict[str, float],
    baseline: dict[str, float] | None,
    passed: bool,
    text: str,
) -> None:
    verdict = judge(gate(**spec), candidate, baseline)
    assert verdict.passed is passed
    assert any(text in c["text"] for c in verdict.checks), verdict.checks
    if not passed:
        assert text in verdict.reason or verdict.reason


def test_a_gate_that_checks_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="checks nothing"):
        gate()
