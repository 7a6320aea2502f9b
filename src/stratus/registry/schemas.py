"""The registry API's shapes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from stratus.core.errors import InvalidInput
from stratus.core.resource_schemas import Labels, Metadata, Name, validate_name

_SHA256 = r"^[0-9a-f]{64}$"
RESERVED_ALIASES = {"latest"}


def check_alias(value: str) -> str:
    validate_name(value, "alias")
    if value.isdigit() or value in RESERVED_ALIASES:
        raise InvalidInput(f"alias {value!r} is reserved: aliases cannot be numbers or 'latest'")
    return value


def _alias(value: str) -> str:
    try:
        return check_alias(value)
    except InvalidInput as exc:
        raise ValueError(exc.detail) from None


AliasName = Annotated[str, AfterValidator(_alias)]


def _file_path(value: str) -> str:
    if not value or value.startswith("/") or "\\" in value or len(value) > 512:
        raise ValueError(f"file path {value!r} must be a relative posix path of ≤ 512 characters")
    if any(part in ("", ".", "..") for part in value.split("/")):
        raise ValueError(f"file path {value!r} must not contain empty, '.' or '..' segments")
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError(f"file path {value!r} contains a control character")
    return value


FilePath = Annotated[str, AfterValidator(_file_path)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelCreate(_Input):
    name: Name
    description: str = Field("", max_length=5000)
    labels: Labels = Field(default_factory=dict)


class ModelUpdate(_Input):
    description: str | None = Field(None, max_length=5000)
    labels: Labels | None = None
    resource_version: int | None = None


class ModelStatus(BaseModel):
    versions: int
    latest_version: int | None
    aliases: dict[str, int]


class ModelSpec(BaseModel):
    description: str


class ModelRead(BaseModel):
    kind: Literal["Model"] = "Model"
    metadata: Metadata
    spec: ModelSpec
    status: ModelStatus


class FileEntry(_Input):
    path: FilePath
    sha256: str = Field(pattern=_SHA256)
    size: int = Field(ge=0)


class Lineage(_Input):
    dataset_version: str | None = Field(None, max_length=200)
    training_run: str | None = Field(None, max_length=200)
    source_commit: str | None = Field(None, max_length=200)


class VersionCreate(_Input):
    files: list[FileEntry] = Field(min_length=1, max_length=10_000)
    flavor: str | None = Field(None, max_length=32, description="default: detected from files")
    trusted: bool = Field(False, description="allow pickle-like formats (owners only)")
    signature: dict[str, Any] | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)
    description: str = Field("", max_length=5000)
    card: str = Field("", max_length=200_000, description="the model card, in markdown")


class VersionUpdate(_Input):
    trusted: bool | None = Field(None, description="owners only")
    tags: dict[str, str] | None = None
    description: str | None = Field(None, max_length=5000)
    card: str | None = Field(None, max_length=200_000)


class VersionFile(BaseModel):
    path: str
    sha256: str
    size: int
    stored: bool


class Verdict(BaseModel):
    """A gate's judgement of a version: `rejected` keeps it from aliases and new deployments
    until an owner accepts it anyway (`overridden`, with who, when and why)."""

    status: Literal["passed", "rejected", "overridden"]
    reason: str
    checks: list[dict[str, Any]] = Field(
        default_factory=list, description="each check: passed, text, and the figures it used"
    )
    source: str = Field(description="who judged, e.g. 'pipeline churn-retrain run 3, step gate'")
    time: datetime
    override_reason: str | None = None
    overridden_by: str | None = None
    overridden_at: datetime | None = None


class VersionAccept(_Input):
    reason: str = Field(min_length=1, max_length=2000, description="why, kept with the verdict")


class VersionRead(BaseModel):
    kind: Literal["ModelVersion"] = "ModelVersion"
    model: str
    project: str
    version: int
    state: Literal["pending", "ready", "rejected"] = Field(
        description="pending until committed; rejected: committed, but a gate refused it"
    )
    flavor: str | None
    trusted: bool
    needs_trust: list[str] = Field(description="files that load only when the version is trusted")
    files: list[VersionFile]
    size: int
    signature: dict[str, Any] | None
    metrics: dict[str, float]
    params: dict[str, Any]
    tags: dict[str, str]
    lineage: Lineage
    description: str
    aliases: list[str]
    created_at: datetime
    created_by: str
    committed_at: datetime | None
    verdict: Verdict | None = Field(None, description="the last gate's judgement, if any")


class CardRead(BaseModel):
    model: str
    version: int
    card: str


class AliasSet(_Input):
    version: int = Field(ge=1)
    reason: str = Field("", max_length=2000)


class AliasRead(BaseModel):
    alias: str
    version: int
    updated_at: datetime
    updated_by: str


class AliasEvent(BaseModel):
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    time: datetime
