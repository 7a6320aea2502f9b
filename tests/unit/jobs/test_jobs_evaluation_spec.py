"""An evaluation job's request: one program per job, a dataset to score on, 1–5 models, and no
model to register."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from stratus.jobs.schemas import JobCreate, JobSpec

EVALUATION = {"models": ["churn@production", "churn:4"]}


def test_an_evaluation_is_a_program_of_its_own() -> None:
    job = JobCreate.model_validate({"evaluation": EVALUATION, "dataset": "churn-holdout"})
    assert job.evaluation is not None and job.evaluation.models == EVALUATION["models"]
    assert job.evaluation.label is None and job.evaluation.features is None


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"evaluation": EVALUATION}, "needs a `dataset`"),
        ({"evaluation": EVALUATION, "dataset": "d", "model": "m"}, "registers no model"),
        (
            {"evaluation": EVALUATION, "trainer": {"estimator": "sklearn.a.B"}, "dataset": "d"},
            "give exactly one",
        ),
        ({}, "give exactly one"),
        ({"evaluation": {"models": []}, "dataset": "d"}, "at least 1 item"),
        ({"evaluation": {"models": ["m"] * 6}, "dataset": "d"}, "at most 5 items"),
        ({"evaluation": {"models": ["m"], "metric": "x"}, "dataset": "d"}, "Extra inputs"),
    ],
)
def test_bad_evaluations_are_refused(body: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        JobCreate.model_validate(body)


def test_a_spec_stored_before_evaluations_existed_still_reads() -> None:
    stored = {
        "instance_type": "cpu.small",
        "spot": False,
        "code": None,
        "trainer": {"estimator": "sklearn.linear_model.Ridge"},
        "dataset": "d:1",
        "experiment": "jobs",
        "model": None,
        "env": {},
        "timeout_seconds": 60,
        "grace_seconds": 30,
        "max_retries": 0,
    }
    assert JobSpec.model_validate(stored).evaluation is None
