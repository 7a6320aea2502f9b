"""The tracking API's shapes: experiments, runs, batches of params/metrics/tags, metric
series, artifacts and comparisons.

Metric values are JSON numbers; NaN and ±infinity (training produces them) travel as the
strings "NaN", "Infinity" and "-Infinity", both ways, so every body is valid JSON.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
)

from stratus.core.clock import as_utc
from stratus.core.resource_schemas import Labels, Metadata, Name

RunState = Literal["running", "finished", "failed", "killed"]
EndState = Literal["finished", "failed", "killed"]
NonFinite = Literal["NaN", "Infinity", "-Infinity"]

MAX_PARAMS_PER_CALL = 100
MAX_METRICS_PER_CALL = 1000
MAX_TAGS_PER_CALL = 100
MAX_COMPARED_RUNS = 100
MAX_STEP = 2**63 - 1
PARAM_CHARS = 6000
TAG_CHARS = 5000

_KEY = re.compile(r"^[A-Za-z0-9_.\-/:]{1,250}$")
_SHA256 = r"^[0-9a-f]{64}$"


def _key(value: str) -> str:
    if not _KEY.fullmatch(value):
        raise ValueError(
            f"key {value[:80]!r} must be 1 to 250 letters, digits or _ - . / : characters"
        )
    return value


Key = Annotated[
    str,
    AfterValidator(_key),
    WithJsonSchema({"type": "string", "pattern": _KEY.pattern, "maxLength": 250}),
]
"""A param, metric or tag key: `lr`, `train/loss`, `model:churn`."""


def _param(value: object) -> bool | int | float | str | None:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        if len(value) > PARAM_CHARS:
            raise ValueError(f"a param value must have at most {PARAM_CHARS} characters")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("a param value must be finite: log NaN and infinity as metrics")
        return value
    raise ValueError(
        f"a param value must be a string, a number, a boolean or null, not {type(value).__name__}"
    )


def _metric_value(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value)
    raise ValueError('a metric value must be a number, or "NaN", "Infinity" or "-Infinity"')


ParamValue = Annotated[
    bool | int | float | str | None,
    PlainValidator(_param),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": PARAM_CHARS},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"},
            ]
        }
    ),
]
"""A param: a string, a finite number, a boolean or null."""

TagValue = Annotated[str, Field(max_length=TAG_CHARS)]
MetricInput = Annotated[
    float,
    PlainValidator(_metric_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number"},
                {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]},
            ]
        }
    ),
]
MetricValue = float | NonFinite
"""A metric value as the API shows it: a number, or "NaN", "Infinity", "-Infinity"."""


def to_api(value: float | None) -> MetricValue:
    """A stored metric value as the API shows it (NULL is NaN)."""
    if value is None or math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- experiments -----------------------------------------------------------------------------


class ExperimentCreate(_Input):
    name: Name
    description: str = Field("", max_length=5000)
    labels: Labels = Field(default_factory=dict)


class ExperimentUpdate(_Input):
    description: str | None = Field(None, max_length=5000)
    labels: Labels | None = None
    resource_version: int | None = None


class ExperimentSpec(BaseModel):
    description: str


class ExperimentStatus(BaseModel):
    runs: int
    running: int
    last_run_at: datetime | None


class ExperimentRead(BaseModel):
    kind: Literal["Experiment"] = "Experiment"
    metadata: Metadata
    spec: ExperimentSpec
    status: ExperimentStatus


# --- runs ------------------------------------------------------------------------------------


class RunCreate(_Input):
    name: str = Field("", max_length=200, description="a name for people; need not be unique")
    params: dict[Key, ParamValue] = Field(default_factory=dict, max_length=MAX_PARAMS_PER_CALL)
    tags: dict[Key, TagValue] = Field(default_factory=dict, max_length=MAX_TAGS_PER_CALL)


class RunUpdate(_Input):
    state: EndState | None = Field(None, description="end the run: finished, failed or killed")
    name: str | None = Field(None, max_length=200)
    tags: dict[Key, TagValue | None] | None = Field(
        None, max_length=MAX_TAGS_PER_CALL, description="set tags; a null value removes one"
    )


class RunRead(BaseModel):
    kind: Literal["Run"] = "Run"
    id: str
    experiment: str
    project: str
    name: str
    state: RunState
    created_by: str
    started_at: datetime
    ended_at: datetime | None
    params: dict[str, bool | int | float | str | None]
    tags: dict[str, str]
    metrics: dict[str, MetricValue] = Field(description="the latest value of each metric")


def _utc(value: datetime) -> datetime:
    try:
        return as_utc(value)
    except OverflowError:  # e.g. 9999-12-31T23:59-05:00 is past the last datetime in UTC
        raise ValueError(f"timestamp {value.isoformat()} is out of range") from None


class MetricPoint(_Input):
    key: Key
    value: MetricInput
    step: int = Field(0, ge=0, le=MAX_STEP)
    timestamp: Annotated[datetime, AfterValidator(_utc)] | None = Field(
        None, description="default: when the server receives it"
    )


class RunLog(_Input):
    """One batch, written in one transaction: params (write-once per key), metric points and
    tags."""

    params: dict[Key, ParamValue] = Field(default_factory=dict, max_length=MAX_PARAMS_PER_CALL)
    metrics: list[MetricPoint] = Field(default_factory=list, max_length=MAX_METRICS_PER_CALL)
    tags: dict[Key, TagValue] = Field(default_factory=dict, max_length=MAX_TAGS_PER_CALL)


class MetricSummary(BaseModel):
    key: str
    value: MetricValue = Field(description="the value at the highest step")
    step: int
    timestamp: datetime
    count: int = Field(description="how many points the series has")
    min: float | None = Field(description="the smallest finite value")
    max: float | None = Field(description="the largest finite value")


class MetricPointRead(BaseModel):
    key: str
    value: MetricValue
    step: int
    timestamp: datetime


# --- artifacts -------------------------------------------------------------------------------


def _artifact_path(value: str) -> str:
    if value.startswith("/") or "\\" in value:
        raise ValueError(f"artifact path {value!r} must be a relative posix path")
    if any(part in ("", ".", "..") for part in value.split("/")):
        raise ValueError(f"artifact path {value!r} must not contain empty, '.' or '..' segments")
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError(f"artifact path {value!r} contains a control character")
    return value


ArtifactPath = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_artifact_path)]


class ArtifactFile(_Input):
    path: ArtifactPath
    sha256: str = Field(pattern=_SHA256)
    size: int = Field(ge=0)


class ArtifactsDeclare(_Input):
    """Files to add to a run; upload those the answer does not mark `stored`. A path logged
    before is replaced."""

    files: list[ArtifactFile] = Field(min_length=1, max_length=10_000)


class ArtifactRead(BaseModel):
    path: str
    sha256: str
    size: int
    stored: bool
    created_at: datetime


# --- comparing -------------------------------------------------------------------------------


class ComparedKey(BaseModel):
    key: str
    values: list[bool | int | float | str | None] = Field(
        description="one per run, in the order of `runs`; null where a run has none"
    )
    differs: bool


class RunComparison(BaseModel):
    runs: list[RunRead]
    params: list[ComparedKey]
    metrics: list[ComparedKey] = Field(description="the latest value of each metric")
