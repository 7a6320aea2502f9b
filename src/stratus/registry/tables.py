"""Registry tables: models, their versions (a manifest of content-addressed files), aliases
and the history of every alias move."""

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


class ModelRow(ResourceMixin, Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("project_uid", "name"),)

    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    description: Mapped[str] = mapped_column(Text, default="")
    next_version: Mapped[int] = mapped_column(Integer, default=1)


class ModelVersionRow(Base):
    """One version: `files` is the manifest [{path, sha256, size, stored}], immutable once
    committed (`ready`, or `rejected` by a gate)."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_uid", "version"),)

    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    model_uid: Mapped[str] = mapped_column(ForeignKey("models.uid", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    flavor: Mapped[str | None] = mapped_column(String(32), nullable=True)
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    card: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(160), default="")
    committed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the last gate's judgement (schemas.Verdict); state "rejected" while it stands
    verdict: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class AliasRow(Base):
    """Where an alias (`production`, `staging`, any name) points now."""

    __tablename__ = "model_aliases"

    model_uid: Mapped[str] = mapped_column(
        ForeignKey("models.uid", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(160), default="")


class AliasEventRow(Base):
    """Every alias move, kept: who, when, from, to, why."""

    __tablename__ = "model_alias_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    model_uid: Mapped[str] = mapped_column(ForeignKey("models.uid", ondelete="CASCADE"), index=True)
    alias: Mapped[str] = mapped_column(String(63))
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(160))
    reason: Mapped[str] = mapped_column(Text, default="")
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
