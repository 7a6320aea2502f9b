"""Checks of a pipeline spec that pydantic's field types cannot express: unique step names,
steps that need a model coming after one that makes it, and a schedule cron can read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_steps(steps: Sequence[Any]) -> None:
    names = [step.name for step in steps]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ValueError(f"two steps are named {duplicate!r}: step names must be unique")
    has_model = False
    has_evaluation = False
    for step in steps:
        if step.type == "train":
            has_model = True
        elif step.type == "evaluate":
            if step.model is None and not has_model:
                raise ValueError(
                    f"step {step.name!r} evaluates the candidate model, but no train step "
                    "comes before it: add one, or name the `model`"
                )
            has_model = has_model or step.model is not None
            has_evaluation = True
        elif step.type == "batch_predict":
            if step.model is None and not has_model:
                raise ValueError(
                    f"step {step.name!r} predicts with the candidate model, but no train step "
                    "comes before it: add one, or name the `model`"
                )
        elif step.type == "gate" and not has_evaluation:
            raise ValueError(f"gate {step.name!r} needs an evaluate step before it")
        elif step.type in ("register", "deploy") and not has_model:
            raise ValueError(
                f"step {step.name!r} needs a candidate model: put a train (or evaluate with "
                "`model`) step before it"
            )
    for step in steps:
        if step.type == "gate" and step.beat is not None:
            evaluations = [s for s in steps if s.type == "evaluate" and s.baseline]
            if not evaluations:
                raise ValueError(
                    f"gate {step.name!r} compares with a baseline: give the evaluate step a "
                    "`baseline` alias (e.g. production)"
                )


def check_schedule(expression: str) -> None:
    from croniter import croniter

    if not croniter.is_valid(expression):
        raise ValueError(f"schedule {expression!r} is not a cron expression (e.g. '0 3 * * *')")
