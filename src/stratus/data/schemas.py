"""The datasets API's shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stratus.core.resource_schemas import Labels, Metadata, Name
from stratus.data.reports import ValidationReport
from stratus.data.rules import RuleSet

COLUMN_TAGS = ("pii", "label", "id", "timestamp")
_SHA256 = r"^[0-9a-f]{64}$"


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_tags(tags: dict[str, list[str]]) -> dict[str, list[str]]:
    for column, names in tags.items():
        if not column or len(column) > 256:
            raise ValueError(f"column name {column!r} must have 1 to 256 characters")
        unknown = [t for t in names if t not in COLUMN_TAGS]
        if unknown:
            raise ValueError(
                f"column {column!r}: unknown tag {unknown[0]!r}; tags are {', '.join(COLUMN_TAGS)}"
            )
    return {column: sorted(set(names)) for column, names in tags.items() if names}


class DatasetCreate(_Input):
    name: Name
    description: str = Field("", max_length=5000)
    labels: Labels = Field(default_factory=dict)
    column_tags: dict[str, list[str]] = Field(
        default_factory=dict, description="column -> tags (pii, label, id, timestamp)"
    )

    _tags = field_validator("column_tags")(_check_tags)


class DatasetUpdate(_Input):
    description: str | None = Field(None, max_length=5000)
    labels: Labels | None = None
    column_tags: dict[str, list[str]] | None = Field(
        None, description="replaces the column tags (pii, label, id, timestamp)"
    )
    resource_version: int | None = None

    @field_validator("column_tags")
    @classmethod
    def _tags(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        return None if value is None else _check_tags(value)


class DatasetSpec(BaseModel):
    description: str
    column_tags: dict[str, list[str]]


class DatasetStatus(BaseModel):
    versions: int
    latest_version: int | None


class DatasetRead(BaseModel):
    kind: Literal["Dataset"] = "Dataset"
    metadata: Metadata
    spec: DatasetSpec
    status: DatasetStatus


class FileEntry(_Input):
    path: str = Field(min_length=1, max_length=512)
    sha256: str = Field(pattern=_SHA256)
    size: int = Field(ge=0)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        from stratus.core.errors import InvalidInput
        from stratus.data.formats import format_of

        if (
            value.startswith("/")
            or "\\" in value
            or any(part in ("", ".", "..") for part in value.split("/"))
        ):
            raise ValueError(f"file path {value!r} must be a relative posix path")
        try:
            format_of(value)  # a clear error for a file Stratus cannot read
        except InvalidInput as exc:
            raise ValueError(exc.detail) from None
        return value


class Lineage(_Input):
    """Where a version's rows came from: a batch prediction's model version and input."""

    model_version: str | None = Field(
        None, max_length=200, description="NAME:VERSION of the model that predicted the rows"
    )
    dataset_version: str | None = Field(
        None, max_length=200, description="NAME:VERSION of the dataset the rows were read from"
    )
    job: str | None = Field(None, max_length=63, description="the job that wrote them")


class VersionCreate(_Input):
    files: list[FileEntry] = Field(min_length=1, max_length=10_000)
    description: str = Field("", max_length=5000)
    lineage: Lineage | None = None


class VersionFile(BaseModel):
    path: str
    sha256: str
    size: int
    stored: bool


class ColumnRead(BaseModel):
    name: str
    type: str
    nullable: bool
    tags: list[str] = Field(default_factory=list)


class VersionRead(BaseModel):
    kind: Literal["DatasetVersion"] = "DatasetVersion"
    dataset: str
    project: str
    version: int
    state: Literal["pending", "ready"]
    existing: bool = Field(False, description="the same content was pushed before: this is it")
    content_sha256: str
    files: list[VersionFile]
    size: int
    rows: int | None
    columns: list[ColumnRead]
    description: str
    lineage: Lineage | None = None
    created_at: datetime
    created_by: str
    committed_at: datetime | None
    validation: ValidationSummary | None = Field(
        None, description="the newest validation of this version"
    )


class ProfileRead(BaseModel):
    dataset: str
    version: int
    profile: dict[str, Any]


class ValidationCreate(_Input):
    rules: RuleSet


class ValidationSummary(BaseModel):
    id: str
    passed: bool
    created_at: datetime


class ValidationRead(BaseModel):
    kind: Literal["DatasetValidation"] = "DatasetValidation"
    id: str
    dataset: str
    version: int
    passed: bool
    reference: str | None
    rules: RuleSet
    report: ValidationReport
    created_at: datetime
    created_by: str
