"""Pipeline tables: the pipeline (its spec, owner, webhook secret hash, next scheduled time),
its runs (the spec they started with, pinned dataset versions) and each run's steps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from stratus.core.clock import utcnow
from stratus.core.database import Base
from stratus.core.resources import ResourceMixin


class PipelineRow(ResourceMixin, Base):
    __tablename__ = "pipelines"
    __table_args__ = (UniqueConstraint("project_uid", "name"),)

    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Runs act as whoever applied the spec last, in this project.
    principal_kind: Mapped[str] = mapped_column(String(16))
    principal_uid: Mapped[str] = mapped_column(String(32))
    applied_by: Mapped[str] = mapped_column(String(160), default="")
    webhook_secret_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    next_number: Mapped[int] = mapped_column(Integer, default=1)
    code: Mapped[list[str]] = mapped_column(JSON, default=list)  # code archives it holds


class PipelineRunRow(Base):
    __tablename__ = "pipeline_runs"
    __table_args__ = (
        UniqueConstraint("pipeline_uid", "number"),
        UniqueConstraint("pipeline_uid", "trigger_key"),
    )

    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    pipeline_uid: Mapped[str] = mapped_column(
        ForeignKey("pipelines.uid", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    trigger: Mapped[str] = mapped_column(String(16))
    trigger_detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What started it, once: the outbox row of a dataset or alert trigger (a redelivery
    # finds this run instead of starting another).
    trigger_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    datasets: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(160), default="")
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PipelineStepRow(Base):
    __tablename__ = "pipeline_steps"
    __table_args__ = (UniqueConstraint("run_uid", "position"),)

    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_uid: Mapped[str] = mapped_column(
        ForeignKey("pipeline_runs.uid", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(63))
    type: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    log: Mapped[str] = mapped_column(Text, default="")
