"""Dataset tables: datasets (with their column tags) and immutable versions (a manifest of
content-addressed files, the inferred schema and the profile)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from stratus.core.clock import utcnow
from stratus.core.database import Base
from stratus.core.resources import ResourceMixin


class DatasetRow(ResourceMixin, Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("project_uid", "name"),)

    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    description: Mapped[str] = mapped_column(Text, default="")
    next_version: Mapped[int] = mapped_column(Integer, default=1)
    column_tags: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)


class DatasetVersionRow(Base):
    """One version: `files` is the manifest [{path, sha256, size, stored}]; `content_sha256`
    names the whole content, so the same files pushed again make no new version."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_uid", "version"),)

    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset_uid: Mapped[str] = mapped_column(
        ForeignKey("datasets.uid", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    content_sha256: Mapped[str] = mapped_column(String(64), index=True)
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    rows: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    schema: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    profile: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # Where the rows came from: {model_version, dataset_version, job} (a batch prediction's).
    lineage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(160), default="")
    committed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ValidationRow(Base):
    """One validation of a version against a rule set: the rules as given, and the report."""

    __tablename__ = "dataset_validations"

    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    version_uid: Mapped[str] = mapped_column(
        ForeignKey("dataset_versions.uid", ondelete="CASCADE"), index=True
    )
    passed: Mapped[bool] = mapped_column(Boolean)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    rules_sha256: Mapped[str] = mapped_column(String(64))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(160), default="")
