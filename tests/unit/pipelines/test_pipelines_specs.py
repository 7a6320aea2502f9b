"""Pipeline specs: the checks types cannot express, and schedules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from stratus.pipelines.schemas import PipelineApply
from stratus.pipelines.service import next_time

TRAIN = {"name": "train", "type": "train", "dataset": "d", "model": "m",
         "trainer": {"estimator": "sklearn.linear_model.Ridge"}}  # fmt: skip
EVALUATE = {"name": "evaluate", "type": "evaluate", "dataset": "h", "baseline": "production"}
GATE = {"name": "gate", "type": "gate", "beat": {"metric": "r2"}}


def spec(*steps: dict[str, Any], **fields: Any) -> PipelineApply:
    return PipelineApply.model_validate({"name": "p", "steps": list(steps), **fields})


def test_a_full_pipeline_is_accepted() -> None:
    deploy = {"name": "deploy", "type": "deploy", "endpoint": "e", "canary": {"traffic": 20}}
    applied = spec(TRAIN, EVALUATE, GATE, deploy, triggers={"schedule": "0 3 * * *"})
    assert [s.type for s in applied.steps] == ["train", "evaluate", "gate", "deploy"]


@pytest.mark.parametrize(
    "steps, message",
    [
        ([TRAIN, {**TRAIN}], "two steps are named 'train'"),
        ([GATE], "needs an evaluate step"),
        ([EVALUATE], "no train step comes before it"),
        ([{"name": "r", "type": "register", "alias": "a"}], "needs a candidate model"),
        ([TRAIN, {**EVALUATE, "baseline": None}, GATE], "give the evaluate step a `baseline`"),
        ([{**TRAIN, "code": {"sha256": "0" * 64, "size": 1, "content_hash": "1" * 64,
                             "entrypoint": "t.py"}}], "exactly one of `code` and `trainer`"),
    ],
)  # fmt: skip
def test_bad_specs_say_what_is_wrong(steps: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(*steps)


def test_schedules_are_cron_in_utc() -> None:
    with pytest.raises(ValidationError, match="not a cron expression"):
        spec(TRAIN, triggers={"schedule": "every night"})
    after = datetime(2026, 11, 27, 3, 0, 30, tzinfo=UTC)
    assert next_time("0 3 * * *", after) == datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    assert next_time("*/15 * * * *", after) == datetime(2026, 11, 27, 3, 15, tzinfo=UTC)
