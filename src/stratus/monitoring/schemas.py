"""The monitoring API's shapes: captured records, erasure, monitors (drift and performance)
and their results, and ground truth."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stratus.core.resource_schemas import Labels, Metadata, Name


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- capture -----------------------------------------------------------------------------------


class CaptureFileRead(BaseModel):
    """One Parquet file of an endpoint's captured records (one hour, one flush)."""

    uid: str
    endpoint: str
    path: str = Field(description="endpoint=NAME/date=YYYY-MM-DD/hour=HH/part-UID.parquet")
    rows: int
    size: int
    first_time: datetime
    last_time: datetime
    expires_at: datetime


class CaptureRecords(BaseModel):
    """Captured rows, newest first: one object per row, inputs and prediction by name."""

    endpoint: str
    records: list[dict[str, Any]]
    total: int = Field(description="rows captured in the window asked for")
    pending: int = Field(description="records captured but not written yet (seconds behind)")


class EraseRequest(_Input):
    """Remove every captured record of one data subject (the value of the endpoints'
    `capture.subject` input), and its ground truth."""

    subject: str = Field(..., min_length=1, max_length=1000)
    endpoint: Name | None = Field(None, description="only this endpoint; default: all of them")


class EraseResult(BaseModel):
    files_rewritten: int
    records_removed: int
    ground_truth_removed: int


# --- monitors ----------------------------------------------------------------------------------


class Window(_Input):
    """What a monitor looks at: the last `seconds` of captures, or the last `rows` rows."""

    seconds: int | None = Field(3600, ge=10, le=90 * 86400)
    rows: int | None = Field(None, ge=10, le=5_000_000)

    @model_validator(mode="after")
    def _one(self) -> Window:
        if self.rows is not None and "seconds" not in self.model_fields_set:
            self.seconds = None  # rows alone: no time bound
        if self.seconds is None and self.rows is None:
            raise ValueError("a window needs seconds or rows")
        return self


class DriftThresholds(_Input):
    """When a feature, and the whole endpoint, counts as drifted."""

    numeric_method: Literal["wasserstein", "ks", "psi"] = "wasserstein"
    numeric_threshold: float = Field(
        0.1, gt=0, description="wasserstein: normed distance ≥; ks: p-value <; psi: ≥"
    )
    categorical_method: Literal["jensenshannon", "chi2", "psi"] = "jensenshannon"
    categorical_threshold: float = Field(
        0.1, gt=0, description="jensenshannon: distance ≥; chi2: p-value <; psi: ≥"
    )
    drift_share: float = Field(
        0.5, gt=0, le=1, description="the endpoint drifts when this share of features drifts"
    )

    @model_validator(mode="after")
    def _p_values(self) -> DriftThresholds:
        for method, value in (
            (self.numeric_method, self.numeric_threshold),
            (self.categorical_method, self.categorical_threshold),
        ):
            if method in ("ks", "chi2") and value >= 1:
                raise ValueError(f"{method} compares p-values: its threshold must be below 1")
        return self


class PerformanceBounds(_Input):
    """Lowest (or, for errors, highest) values a performance monitor accepts."""

    min: dict[str, float] = Field(default_factory=dict, description="e.g. {accuracy: 0.8, f1: 0.7}")
    max: dict[str, float] = Field(default_factory=dict, description="e.g. {rmse: 3.5}")


MonitorType = Literal["drift", "performance"]
PREDICTION_SOURCE_DEFAULT = "label"
PREDICTION_SOURCE_HELP = (
    "what the monitor takes as the prediction: 'label' (the answer's prediction), or "
    "'probability:CLASS' (the probability the answer gave CLASS; the endpoint is asked with "
    "method predict_proba). Drift compares it with the reference's column probability.CLASS; "
    "performance scores ROC AUC with it and takes the most probable class as the label"
)
Task = Literal["classification", "regression"]


class MonitorApply(_Input):
    """Create a monitor, or replace its spec (by name)."""

    name: Name
    endpoint: Name
    type: MonitorType = "drift"
    labels: Labels = Field(default_factory=dict)
    description: str = Field("", max_length=5000)
    reference: str | None = Field(
        None,
        max_length=200,
        description="a dataset version, NAME:V (or NAME: its latest at each run); default: "
        "the dataset the served model version was trained on (its lineage)",
    )
    features: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="columns to compare; default: every column both sides have, but labels, ids, "
        "timestamps and pii",
    )
    prediction: bool = Field(True, description="also compare the predictions (prediction drift)")
    prediction_source: str = Field(
        PREDICTION_SOURCE_DEFAULT, max_length=300, description=PREDICTION_SOURCE_HELP
    )
    window: Window = Field(default_factory=lambda: Window(seconds=3600, rows=None))
    interval_seconds: int = Field(300, ge=5, le=7 * 86400, description="how often it runs")
    min_rows: int = Field(50, ge=1, le=1_000_000, description="fewer rows: no verdict yet")
    drift: DriftThresholds = Field(default_factory=DriftThresholds)
    task: Task | None = Field(None, description="performance: default from the labels")
    positive: Any = Field(None, description="performance: the positive class (default 1/true)")
    bounds: PerformanceBounds = Field(default_factory=PerformanceBounds)
    per_version: bool = Field(
        True,
        description="performance: also hold each served model version to the bounds on its own "
        "(once it has min_rows labelled rows), so a failing canary alarms while the whole holds",
    )
    enabled: bool = True

    @field_validator("features")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        if any(not name or len(name) > 200 for name in value):
            raise ValueError("feature names are 1 to 200 characters")
        if len(set(value)) != len(value):
            raise ValueError("feature names must be unique")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> MonitorApply:
        known = set(PERFORMANCE_METRICS)
        for name, value in (*self.bounds.min.items(), *self.bounds.max.items()):
            if name not in known:
                raise ValueError(
                    f"bounds: unknown metric {name!r}; known: {', '.join(PERFORMANCE_METRICS)}"
                )
            if not math.isfinite(value):
                raise ValueError(f"bounds: {name} must be a finite number")
        return self


PERFORMANCE_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "rmse", "mae", "r2")


class MonitorSpec(BaseModel):
    endpoint: str
    type: MonitorType
    description: str = ""
    reference: str | None = None
    features: list[str] = Field(default_factory=list)
    prediction: bool = True
    prediction_source: str = PREDICTION_SOURCE_DEFAULT
    window: Window
    interval_seconds: int
    min_rows: int
    drift: DriftThresholds
    task: Task | None = None
    positive: Any = None
    bounds: PerformanceBounds = Field(default_factory=PerformanceBounds)
    per_version: bool = True
    enabled: bool = True


class MonitorStatus(BaseModel):
    state: Literal["pending", "ok", "alarm", "insufficient-data", "error"] = "pending"
    message: str = ""
    last_run_at: datetime | None = None
    next_run_at: datetime | None = None
    rows: int = 0
    score: float | None = Field(
        None, description="drift: the share of features that drifted; performance: the first metric"
    )
    reference: str = ""


class MonitorRead(BaseModel):
    kind: Literal["Monitor"] = "Monitor"
    metadata: Metadata
    spec: MonitorSpec
    status: MonitorStatus


class MonitorResultRead(BaseModel):
    """One run of a monitor: the window it read, its verdict, and the whole report."""

    id: int
    monitor: str
    endpoint: str
    type: MonitorType
    time: datetime
    window_start: datetime | None
    window_end: datetime | None
    rows: int
    alarm: bool
    score: float | None
    reference: str
    report: dict[str, Any]


class DriftRequest(_Input):
    """A drift report of an endpoint now, without a monitor (nothing is kept)."""

    reference: str | None = Field(None, max_length=200, description="as a monitor's")
    features: list[str] = Field(default_factory=list, max_length=1000)
    prediction: bool = True
    prediction_source: str = Field(
        PREDICTION_SOURCE_DEFAULT, max_length=300, description=PREDICTION_SOURCE_HELP
    )
    window: Window = Field(default_factory=lambda: Window(seconds=3600, rows=None))
    min_rows: int = Field(10, ge=1, le=1_000_000)
    drift: DriftThresholds = Field(default_factory=DriftThresholds)


class MonitorRunRequest(_Input):
    """Run a monitor now (optionally over another window); the result is kept in its history."""

    window: Window | None = None


# --- ground truth ------------------------------------------------------------------------------

Label = bool | int | float | str


class GroundTruthLabel(_Input):
    request_id: str = Field(..., min_length=1, max_length=64)
    row: int = Field(0, ge=0, le=10_000_000)
    label: Label

    @field_validator("label")
    @classmethod
    def _finite(cls, value: Label) -> Label:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("a label must be a finite number, a string or a boolean")
        return value


class GroundTruthPost(_Input):
    labels: list[GroundTruthLabel] = Field(..., min_length=1, max_length=100_000)


class GroundTruthResult(BaseModel):
    received: int
    stored: int = Field(description="distinct (request id, row) pairs")
    replaced: int = Field(description="of which had a label before (the new one wins)")
