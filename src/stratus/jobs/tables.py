"""Training job tables: the job (its spec, who submitted it) and its status, kept apart so
the scheduler's frequent status writes never bump the job's `resource_version`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
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


class JobRow(ResourceMixin, Base):
    __tablename__ = "training_jobs"
    __table_args__ = (UniqueConstraint("project_uid", "name"),)

    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Who submitted it: the job acts as them, within this project only.
    principal_kind: Mapped[str] = mapped_column(String(16))
    principal_uid: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(160), default="")


class JobStatusRow(Base):
    __tablename__ = "training_job_status"

    job_uid: Mapped[str] = mapped_column(
        ForeignKey("training_jobs.uid", ondelete="CASCADE"), primary_key=True
    )
    phase: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    preemptions: Mapped[int] = mapped_column(Integer, default=0)
    enforced_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    code_stored: Mapped[bool] = mapped_column(Boolean, default=False)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seconds_run: Mapped[float] = mapped_column(Float, default=0.0)  # over every attempt
    # of which in attempts a preemption (or a lost node) cut short
    preempted_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # The running attempt, as the backend's handle (to re-adopt it after a restart).
    handle: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    stop_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    completed: Mapped[bool] = mapped_column(Boolean, default=False)
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    checkpoint_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    checkpoint_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    checkpoint_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    log_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    log_size: Mapped[int] = mapped_column(BigInteger, default=0)
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(200), nullable=True)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    # An evaluation job's results: NAME:VERSION → metric → value.
    evaluations: Mapped[dict[str, dict[str, float]]] = mapped_column(
        JSON, default=dict, server_default="{}"
    )
    # How far the work is ({done, total, unit}), and the dataset version the job committed.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    dataset_version: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
