"""The storage API's shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stratus.core.resource_schemas import Labels, Metadata, Name


class BucketCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: str = Field("", max_length=2000)
    labels: Labels = Field(default_factory=dict)


class BucketUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(None, max_length=2000)
    labels: Labels | None = None
    resource_version: int | None = None


class BucketSpec(BaseModel):
    description: str


class BucketStatus(BaseModel):
    objects: int = Field(description="objects whose latest version is not deleted")
    size_bytes: int = Field(description="total size of those latest versions")


class BucketRead(BaseModel):
    kind: Literal["Bucket"] = "Bucket"
    metadata: Metadata
    spec: BucketSpec
    status: BucketStatus


class ObjectVersionRead(BaseModel):
    kind: Literal["ObjectVersion"] = "ObjectVersion"
    bucket: str
    key: str
    version_id: str
    size: int
    sha256: str | None
    content_type: str
    is_latest: bool
    is_delete_marker: bool
    created_at: datetime
    created_by: str


class ObjectInfo(BaseModel):
    key: str
    version_id: str
    size: int
    sha256: str | None
    content_type: str
    updated_at: datetime


class ObjectListing(BaseModel):
    objects: list[ObjectInfo]
    prefixes: list[str] = Field(description="common prefixes up to the delimiter")
    next_page_token: str | None = None


class MasterKeyRotationRead(BaseModel):
    """A rotation of the master key and how far it got."""

    kind: Literal["MasterKeyRotation"] = "MasterKeyRotation"
    id: str
    state: Literal["running", "interrupted", "finished"] = Field(
        description="interrupted: stopped before it finished (a crash, a shutdown or an "
        "error); the next start of the control plane, or the next rotate, carries it on"
    )
    started_by: str
    started_at: datetime
    finished_at: datetime | None
    keys_total: int = Field(description="data keys to re-wrap when it started")
    keys_done: int = Field(description="data keys re-wrapped under the new master key")
    error: str = Field("", description="why it stopped, when it did")
