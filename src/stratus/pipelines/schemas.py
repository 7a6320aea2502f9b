"""The pipelines API's shapes: a pipeline's spec (triggers and typed steps, as written in
`pipeline.yaml`) and its runs, with each step's status, timings, outputs and log."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stratus.core.resource_schemas import Labels, Metadata, Name
from stratus.data.rules import RuleSet
from stratus.endpoints.canary import CanaryPolicy
from stratus.jobs.schemas import CodeSpec, TrainerSpec
from stratus.secrets.schemas import SecretRefs


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TriggerKind(StrEnum):
    """What started a run."""

    manual = "manual"
    schedule = "schedule"
    dataset = "dataset"
    webhook = "webhook"
    alert = "alert"
    resume = "resume"


class RunState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunState.succeeded, RunState.failed, RunState.cancelled)


class StepState(StrEnum):
    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"


# --- steps ---------------------------------------------------------------------------------


class _Step(_Input):
    name: Name
    retries: int = Field(0, ge=0, le=10, description="run the step again after a failure")


class ValidateStep(_Step):
    """Check the run's dataset version against rules; the run stops here if one fails."""

    type: Literal["validate"]
    dataset: str = Field(min_length=1, max_length=200)
    rules: RuleSet


class JobStepBase(_Step):
    instance_type: str = Field("cpu.small", max_length=64)
    spot: bool = False
    env: dict[str, str] = Field(default_factory=dict)
    secrets: SecretRefs = Field(
        default_factory=list,
        description="project secrets the step's job gets as environment variables",
    )
    timeout_seconds: int = Field(3600, ge=1, le=30 * 24 * 3600)


class TrainStep(JobStepBase):
    """A training job (code or the built-in trainer) that registers `model`."""

    type: Literal["train"]
    dataset: str = Field(min_length=1, max_length=200)
    model: Name
    trainer: TrainerSpec | None = None
    code: CodeSpec | None = None
    experiment: str | None = None

    @model_validator(mode="after")
    def _one(self) -> TrainStep:
        if (self.code is None) == (self.trainer is None):
            raise ValueError(f"step {self.name!r}: give exactly one of `code` and `trainer`")
        return self


class EvaluateStep(JobStepBase):
    """Metrics of the candidate (the model the last train step registered, or `model`) on a
    holdout dataset version; with `baseline`, of the version behind that alias too."""

    type: Literal["evaluate"]
    dataset: str = Field(min_length=1, max_length=200)
    label: str | None = None
    model: str | None = Field(None, description="default: the model a train step registered")
    baseline: str | None = Field(
        None, max_length=63, description="an alias (e.g. production) to compare with"
    )


class BatchPredictStep(JobStepBase):
    """Predictions of the candidate (the model an earlier step registered, or `model`) for
    every row of a dataset version, committed as a new version of `output_dataset`."""

    type: Literal["batch_predict"]
    dataset: str = Field(min_length=1, max_length=200)
    output_dataset: Name
    model: str | None = Field(None, description="default: the model a train step registered")
    batch_rows: int = Field(10_000, ge=1, le=1_000_000)
    features: list[str] | None = None
    keep: list[str] | None = None
    prediction_column: str = Field("prediction", pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


class Bound(_Input):
    min: float | None = None
    max: float | None = None


class BeatRule(_Input):
    metric: str = Field(min_length=1, max_length=128)
    margin: float = Field(
        0.0,
        description="candidate minus baseline must be at least this: 0 = not worse, "
        "0.01 = a point better, -0.01 = at most a point worse",
    )
    higher_is_better: bool = True


class GateStep(_Step):
    """Thresholds on the candidate's evaluation metrics, and/or beating the baseline."""

    type: Literal["gate"]
    metrics: dict[str, Bound] = Field(default_factory=dict)
    beat: BeatRule | None = None

    @model_validator(mode="after")
    def _something(self) -> GateStep:
        if not self.metrics and self.beat is None:
            raise ValueError(f"gate {self.name!r} checks nothing: give `metrics` and/or `beat`")
        return self


class RegisterStep(_Step):
    """Point an alias of the model at the candidate version."""

    type: Literal["register"]
    alias: str = Field(min_length=1, max_length=63)


class DeployStep(_Step):
    """Put the candidate on an endpoint: created with it if new; else a canary at the policy's
    traffic share, promoted when healthy or rolled back (the step then fails)."""

    type: Literal["deploy"]
    endpoint: Name
    replicas: int = Field(1, ge=1, le=64)
    canary: CanaryPolicy = Field(default_factory=CanaryPolicy)
    ready_timeout_seconds: float = Field(300, gt=0, le=3600)
    alias_on_promote: str | None = Field(
        None, max_length=63, description="point this alias at the version once it serves"
    )


class CustomStep(JobStepBase):
    """User code run as a job; earlier steps' outputs are in PIPELINE_OUTPUTS (JSON), with
    PIPELINE_NAME and PIPELINE_RUN."""

    type: Literal["custom"]
    code: CodeSpec
    dataset: str | None = None


Step = Annotated[
    ValidateStep
    | TrainStep
    | EvaluateStep
    | BatchPredictStep
    | GateStep
    | RegisterStep
    | DeployStep
    | CustomStep,
    Field(discriminator="type"),
]


class Triggers(_Input):
    schedule: str | None = Field(None, description="cron, e.g. '0 3 * * *' (UTC)")
    datasets: list[str] = Field(
        default_factory=list, description="run when one of these datasets gets a new version"
    )
    webhook: bool = Field(False, description="accept POST /api/v1/webhooks/... with a secret")
    alerts: list[Name] = Field(
        default_factory=list,
        max_length=50,
        description="run when one of these alert rules starts firing (retraining on drift)",
    )


class PipelineApply(_Input):
    """Create a pipeline, or replace its spec (runs keep the spec they started with)."""

    name: Name
    description: str = Field("", max_length=5000)
    labels: Labels = Field(default_factory=dict)
    triggers: Triggers = Field(default_factory=Triggers)
    steps: list[Step] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _checked(self) -> PipelineApply:
        from stratus.pipelines.checking import check_steps

        check_steps(self.steps)
        if self.triggers.schedule is not None:
            from stratus.pipelines.checking import check_schedule

            check_schedule(self.triggers.schedule)
        return self


class PipelineSpec(BaseModel):
    description: str
    triggers: Triggers
    steps: list[Step]


class PipelineStatus(BaseModel):
    runs: int
    last_run: int | None = None
    last_state: RunState | None = None
    next_scheduled_at: datetime | None = None
    webhook_url: str | None = None


class PipelineRead(BaseModel):
    kind: Literal["Pipeline"] = "Pipeline"
    metadata: Metadata
    spec: PipelineSpec
    status: PipelineStatus
    webhook_secret: str | None = Field(
        None, description="shown once, when the webhook is enabled or its secret rotated"
    )


class RunCreate(_Input):
    datasets: dict[str, int] = Field(
        default_factory=dict, description="pin these datasets to versions (default: latest)"
    )
    reason: str = Field("", max_length=1000)


class WebhookCall(_Input):
    """What a CI system may send: all optional, kept with the run."""

    ref: str | None = Field(None, max_length=500)
    sha: str | None = Field(None, max_length=200)
    reason: str = Field("", max_length=1000)
    datasets: dict[str, int] = Field(default_factory=dict)


class StepRead(BaseModel):
    name: str
    type: str
    state: StepState
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None
    message: str
    outputs: dict[str, Any]
    log: str


class RunRead(BaseModel):
    kind: Literal["PipelineRun"] = "PipelineRun"
    pipeline: str
    project: str
    number: int
    state: RunState
    trigger: TriggerKind
    trigger_detail: dict[str, Any]
    datasets: dict[str, int]
    created_at: datetime
    created_by: str
    started_at: datetime | None
    finished_at: datetime | None
    message: str
    steps: list[StepRead]
