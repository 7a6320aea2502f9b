"""Where a training job's code finds what the runner prepared for it: the variables below are
the documented contract between a job's runner and the user's code."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobContext:
    """The job this process runs as (None fields outside a job)."""

    project: str | None
    job: str | None
    attempt: int
    checkpoint_dir: Path
    model_dir: Path | None
    data_dir: Path | None
    dataset: str | None
    run_id: str | None
    experiment: str | None

    @property
    def in_job(self) -> bool:
        return self.job is not None


def current_job() -> JobContext:
    """The job context from the environment the runner set (defaults outside a job)."""
    env = os.environ

    def path(name: str) -> Path | None:
        value = env.get(name)
        return Path(value) if value else None

    return JobContext(
        project=env.get("STRATUS_PROJECT"),
        job=env.get("STRATUS_JOB"),
        attempt=int(env.get("STRATUS_JOB_ATTEMPT", "1") or 1),
        checkpoint_dir=path("STRATUS_CHECKPOINT_DIR") or Path(".stratus-checkpoint"),
        model_dir=path("STRATUS_MODEL_DIR"),
        data_dir=path("STRATUS_DATA_DIR"),
        dataset=env.get("STRATUS_DATASET"),
        run_id=env.get("STRATUS_RUN_ID"),
        experiment=env.get("STRATUS_EXPERIMENT"),
    )
