"""Monitoring tables: the capture files of each endpoint (the Parquet bytes are blobs in the
object store; a row says where, what hour, how many records), the monitors with their latest
status, every result a monitor produced (its history), and ground truth posted by request id.
"""

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
    Index,
    Integer,
    String,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from stratus.core.clock import utcnow
from stratus.core.database import Base
from stratus.core.resources import ResourceMixin

_ID = BigInteger().with_variant(Integer, "sqlite")


class CaptureFileRow(Base):
    """One Parquet file of captured requests: an endpoint's records of one hour, written in
    one flush. Files outlive their endpoint until they expire."""

    __tablename__ = "capture_files"
    __table_args__ = (Index("ix_capture_files_endpoint_time", "project_uid", "endpoint", "hour"),)

    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    endpoint: Mapped[str] = mapped_column(String(63))
    endpoint_uid: Mapped[str] = mapped_column(String(32))
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # the partition
    path: Mapped[str] = mapped_column(String(300))  # endpoint=…/date=…/hour=…/part-….parquet
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(Integer)
    first_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    has_subjects: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # its requests are in `capture_requests` once true: a file of an endpoint with ground truth
    # is indexed by the encoder process right after it is written; any other (no ground truth
    # then, a failed indexing, written before that table existed) when ground truth looks for
    # a request it does not find
    indexed: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class CaptureRequestRow(Base):
    """One captured request: the file holding its rows, how many it had, and what kind of
    value its prediction is, so ground truth is checked against what was captured without
    reading any file. Goes with its file (expiry, erasure, a deleted project)."""

    __tablename__ = "capture_requests"
    __table_args__ = (
        Index("ix_capture_requests_request", "project_uid", "endpoint", "request_id"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    file_uid: Mapped[str] = mapped_column(
        ForeignKey("capture_files.uid", ondelete="CASCADE"), index=True
    )
    project_uid: Mapped[str] = mapped_column(String(32))
    endpoint: Mapped[str] = mapped_column(String(63))
    request_id: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    # the prediction's kind: integer, number, bool, string, or "" (several outputs, say)
    label_kind: Mapped[str] = mapped_column(String(16), default="")


class MonitorRow(ResourceMixin, Base):
    __tablename__ = "monitors"
    __table_args__ = (UniqueConstraint("project_uid", "name"),)

    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    endpoint: Mapped[str] = mapped_column(String(63))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)


class MonitorStateRow(Base):
    """What the controller last observed of a monitor, and when it runs next (apart from the
    spec, so runs never bump the monitor's `resource_version`)."""

    __tablename__ = "monitor_state"

    monitor_uid: Mapped[str] = mapped_column(
        ForeignKey("monitors.uid", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    next_run_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True
    )


class MonitorResultRow(Base):
    """One evaluation of a monitor over a window: the whole report, and its headline."""

    __tablename__ = "monitor_results"
    __table_args__ = (Index("ix_monitor_results_monitor_time", "monitor_uid", "time"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    monitor_uid: Mapped[str] = mapped_column(ForeignKey("monitors.uid", ondelete="CASCADE"))
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    alarm: Mapped[bool] = mapped_column(Boolean, default=False)  # drifted / below a bound
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    reference: Mapped[str] = mapped_column(String(200), default="")
    report: Mapped[dict[str, Any]] = mapped_column(JSON)


class GroundTruthRow(Base):
    """The true outcome of one captured row, posted later by request id (and row)."""

    __tablename__ = "ground_truth"
    __table_args__ = (UniqueConstraint("project_uid", "endpoint", "request_id", "row"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    endpoint: Mapped[str] = mapped_column(String(63))
    request_id: Mapped[str] = mapped_column(String(64))
    row: Mapped[int] = mapped_column(Integer, default=0)
    label: Mapped[Any] = mapped_column(JSON)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
