"""The training jobs API's shapes: a job's spec (user code, a built-in trainer or an evaluation
of registered model versions; an instance type, spot or on-demand) and its status as the
scheduler and the job's runner report it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stratus.core.resource_schemas import Labels, Metadata, Name
from stratus.secrets.schemas import SecretRefs

_SHA256 = r"^[0-9a-f]{64}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobPhase(StrEnum):
    """A job's lifecycle: pending (its code is not uploaded yet) → queued → running →
    succeeded | failed | cancelled. A preempted spot job goes back to queued."""

    pending = "pending"
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobPhase.succeeded, JobPhase.failed, JobPhase.cancelled)


class CodeSpec(_Input):
    """The user's code: a folder uploaded with the job (as a tar.gz archive, named by content)."""

    sha256: str = Field(pattern=_SHA256, description="SHA-256 of the code archive")
    size: int = Field(ge=0)
    content_hash: str = Field(
        pattern=_SHA256, description="SHA-256 over the folder's files (paths and contents)"
    )
    entrypoint: str = Field(
        min_length=1, max_length=512, description="a script in the folder, e.g. train.py"
    )
    args: list[str] = Field(default_factory=list, max_length=1000)
    requirements: list[str] = Field(
        default_factory=list, max_length=200, description="pip requirement lines to install"
    )

    @field_validator("entrypoint")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = value.split("/")
        if value.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in value:
            raise ValueError(f"entrypoint {value!r} must be a relative path inside the code folder")
        return value


class TrainerSpec(_Input):
    """A built-in trainer: a scikit-learn estimator fitted on a dataset version."""

    estimator: str = Field(
        pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$",
        max_length=256,
        description="import path, e.g. sklearn.linear_model.LogisticRegression",
    )
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = Field(
        None, max_length=256, description="default: the dataset's column tagged `label`"
    )
    features: list[str] | None = Field(
        None, description="default: every column but the label and id/pii/timestamp columns"
    )
    test_size: float = Field(0.2, gt=0, lt=1)
    random_state: int = 0


ModelReference = Annotated[str, Field(min_length=1, max_length=200)]


class EvaluationSpec(_Input):
    """Metrics of registered model versions on a dataset version (a holdout), computed in the
    job: models are loaded only in a job's process, under its limits."""

    models: list[ModelReference] = Field(
        min_length=1,
        max_length=5,
        description="NAME:VERSION, NAME@alias or NAME (latest); pinned to NAME:VERSION at submit",
    )
    label: str | None = Field(
        None, max_length=256, description="default: the dataset's column tagged `label`"
    )
    features: list[str] | None = Field(
        None,
        max_length=10_000,
        description="default: the version's signature inputs, else every column but the label "
        "and id/pii/timestamp columns",
    )


class BatchPredictSpec(_Input):
    """Predictions of a registered model version for every row of a dataset version, committed
    as a new version of `output_dataset` (the job's `dataset` is the input)."""

    model: ModelReference = Field(
        description="NAME:VERSION, NAME@alias or NAME (latest); pinned to NAME:VERSION at submit"
    )
    output_dataset: Name = Field(description="the dataset the predictions go to (created if new)")
    batch_rows: int = Field(
        10_000, ge=1, le=1_000_000, description="rows per call to the model and per output file"
    )
    features: list[str] | None = Field(
        None,
        max_length=10_000,
        description="the columns fed to the model; default: the version's signature inputs, "
        "else every column but those tagged label/id/pii/timestamp",
    )
    keep: list[str] | None = Field(
        None,
        max_length=10_000,
        description="input columns copied beside the predictions; default: every column",
    )
    prediction_column: str = Field(
        "prediction",
        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$",
        description="the predictions' column (a model with several outputs: one column "
        "each, named PREFIX_OUTPUT)",
    )


class JobCreate(_Input):
    name: Name | None = Field(None, description="default: generated from the trainer or code")
    labels: Labels = Field(default_factory=dict)
    instance_type: str = Field("cpu.small", max_length=64)
    spot: bool = Field(False, description="preemptible: cheaper, may be stopped and resumed")
    code: CodeSpec | None = None
    trainer: TrainerSpec | None = None
    evaluation: EvaluationSpec | None = None
    batch_predict: BatchPredictSpec | None = None
    dataset: str | None = Field(
        None, max_length=200, description="NAME or NAME:VERSION; pinned to a version at submit"
    )
    experiment: str | None = Field(None, description="tracking experiment; default: `jobs`")
    model: Name | None = Field(None, description="register the trained model under this name")
    env: dict[str, str] = Field(default_factory=dict, max_length=100)
    secrets: SecretRefs = Field(
        default_factory=list,
        description="project secrets given to the code as environment variables: NAME, or "
        "VARIABLE=NAME; their values are never in the job's spec, logs or audit entries",
    )
    timeout_seconds: int = Field(24 * 3600, ge=1, le=30 * 24 * 3600)
    grace_seconds: int = Field(30, ge=0, le=3600, description="SIGTERM to SIGKILL on a stop")
    max_retries: int = Field(0, ge=0, le=10, description="runs again after a failure")

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        for key in value:
            if not re.fullmatch(_ENV_NAME, key):
                raise ValueError(f"environment variable name {key!r} is not valid")
            if key.startswith("STRATUS_"):
                raise ValueError(f"{key}: STRATUS_* variables are set by the platform")
        return value

    @model_validator(mode="after")
    def _one_program(self) -> JobCreate:
        programs = (self.code, self.trainer, self.evaluation, self.batch_predict)
        given = [p for p in programs if p is not None]
        if len(given) != 1:
            raise ValueError(
                "a job runs `code`, a built-in `trainer`, an `evaluation` or a "
                "`batch_predict`: give exactly one"
            )
        if self.trainer is not None and self.dataset is None:
            raise ValueError("a built-in trainer needs a `dataset` to train on")
        if self.evaluation is not None:
            if self.dataset is None:
                raise ValueError("an evaluation needs a `dataset` to evaluate the models on")
            if self.model is not None:
                raise ValueError("an evaluation registers no model: drop `model`")
        if self.batch_predict is not None:
            if self.dataset is None:
                raise ValueError("a batch prediction needs the input `dataset`")
            if self.model is not None:
                raise ValueError("a batch prediction registers no model: drop `model`")
        return self


class JobSpec(BaseModel):
    instance_type: str
    spot: bool
    code: CodeSpec | None
    trainer: TrainerSpec | None
    evaluation: EvaluationSpec | None = None  # models pinned to NAME:VERSION
    batch_predict: BatchPredictSpec | None = None  # the model pinned to NAME:VERSION
    dataset: str | None
    experiment: str
    model: str | None
    env: dict[str, str]
    secrets: list[str] = Field(default_factory=list, description="VARIABLE=NAME or NAME")
    timeout_seconds: int
    grace_seconds: int
    max_retries: int


class Limits(BaseModel):
    vcpus: float
    memory_bytes: int
    gpus: int
    enforced_by: str | None = Field(
        None, description="cgroup-v2, rlimit+affinity or rlimit: how this backend holds the job"
    )


class Progress(BaseModel):
    done: int = Field(ge=0)
    total: int | None = Field(None, ge=0)
    unit: str = Field("rows", max_length=32)


class JobStatus(BaseModel):
    phase: JobPhase
    message: str = ""
    attempts: int = 0
    preemptions: int = 0
    preempted_seconds: float = Field(
        0.0, description="run time of the attempts a preemption (or a lost node) cut short"
    )
    limits: Limits
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    node: str | None = Field(
        None, description="the compute backend's node the job runs on (while it runs)"
    )
    checkpoint: CheckpointRead | None = None
    run_id: str | None = None
    model_version: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    evaluations: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="an evaluation's metrics: NAME:VERSION → name → value"
    )
    progress: Progress | None = Field(
        None, description="how far the job's work is (a batch prediction's rows)"
    )
    dataset_version: str | None = Field(
        None, description="the dataset version the job committed (a batch prediction's output)"
    )
    cost: float = Field(0.0, description="price of the time run so far, at the type's rate")


class JobRead(BaseModel):
    kind: Literal["TrainingJob"] = "TrainingJob"
    metadata: Metadata
    spec: JobSpec
    status: JobStatus


class CheckpointRead(BaseModel):
    sha256: str
    size: int
    saved_at: datetime
    step: int | None = None


class JobReport(_Input):
    """What a job's runner tells the control plane about the job (with the job's token)."""

    run_id: str | None = Field(None, max_length=64)
    model_version: str | None = Field(None, max_length=200)
    metrics: dict[str, float] | None = None
    evaluations: dict[str, dict[str, float]] | None = Field(
        None, max_length=5, description="an evaluation's metrics per NAME:VERSION"
    )
    message: str | None = Field(None, max_length=2000)
    progress: Progress | None = None
    dataset_version: str | None = Field(None, max_length=200)
    completed: bool = Field(False, description="the job's work is done (the runner is exiting 0)")


class InstanceTypeRead(BaseModel):
    name: str
    vcpus: float
    memory_gib: float
    gpus: int
    price_per_hour: float
    spot_price_per_hour: float
    description: str


JobStatus.model_rebuild()
