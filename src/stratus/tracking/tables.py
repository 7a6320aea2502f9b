"""Tracking tables: experiments, their runs (params and tags inline), metric points (a step
series per key, in their own table), the latest point of each metric (for listings) and the
artifacts uploaded into a run (content-addressed blobs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from stratus.core.clock import utcnow
from stratus.core.database import Base
from stratus.core.resources import ResourceMixin


class ExperimentRow(ResourceMixin, Base):
    __tablename__ = "experiments"
    __table_args__ = (UniqueConstraint("project_uid", "name"),)

    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    description: Mapped[str] = mapped_column(Text, default="")


class RunRow(Base):
    """One run. `params` are write-once per key; `tags` change freely. The project is kept
    beside the experiment so a run found by id is checked against the caller's project."""

    __tablename__ = "runs"

    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    experiment_uid: Mapped[str] = mapped_column(
        ForeignKey("experiments.uid", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(16), default="running")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(160), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class MetricRow(Base):
    """One point of a metric's step series. NaN is stored as NULL (SQLite cannot hold NaN);
    ±infinity is stored as is."""

    __tablename__ = "run_metrics"
    __table_args__ = (Index("ix_run_metrics_run_key_step", "run_uid", "key", "step"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    run_uid: Mapped[str] = mapped_column(ForeignKey("runs.uid", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(250))
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Double, nullable=True)
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LatestMetricRow(Base):
    """Per run and key: the point with the highest step (the later one on a tie), how many
    points there are, and the smallest and largest finite values."""

    __tablename__ = "run_latest_metrics"

    run_uid: Mapped[str] = mapped_column(
        ForeignKey("runs.uid", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Double, nullable=True)
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    min: Mapped[float | None] = mapped_column(Double, nullable=True)
    max: Mapped[float | None] = mapped_column(Double, nullable=True)


class ArtifactRow(Base):
    """A file of a run: declared with its SHA-256 and size, `stored` once its blob is held."""

    __tablename__ = "run_artifacts"

    run_uid: Mapped[str] = mapped_column(
        ForeignKey("runs.uid", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(512), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    stored: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
