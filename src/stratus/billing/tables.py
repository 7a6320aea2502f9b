"""Billing tables: price catalog versions, hourly usage, raw usage records, and each meter's
position (what it has metered up to), written in one transaction per metering pass so that a
crash or restart neither loses nor double-counts usage."""

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
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from stratus.core.clock import utcnow
from stratus.core.database import Base


class PriceCatalogRow(Base):
    """One version of the price catalog; the newest prices what is metered from now on."""

    __tablename__ = "price_catalogs"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(160), default="")


class _Quantities:
    """What a usage line measures, and what it cost at its catalog's prices."""

    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # instance-seconds
    vcpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    gib_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # memory
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    request_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # model busy time
    gib_hours: Mapped[float] = mapped_column(Float, default=0.0)  # storage
    # of `seconds`, a job's in attempts a preemption cut short (paid for, then resumed)
    preempted_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)


class _Dimensions:
    project: Mapped[str] = mapped_column(String(63), index=True)
    meter: Mapped[str] = mapped_column(String(16))  # replica | job | storage
    subject_kind: Mapped[str] = mapped_column(String(16))  # endpoint | job | bucket
    subject: Mapped[str] = mapped_column(String(200))  # its name ("" for a project's own data)
    variant: Mapped[str] = mapped_column(String(63), default="")
    model_version: Mapped[str] = mapped_column(String(200), default="")
    instance_type: Mapped[str] = mapped_column(String(63), default="")
    # on_demand | spot | reserved (instances), per_request (functions), storage
    pricing: Mapped[str] = mapped_column(String(16))
    idle: Mapped[bool] = mapped_column(Boolean, default=False)  # capacity that served nothing
    catalog_version: Mapped[int] = mapped_column(Integer)


class UsageRow(_Quantities, _Dimensions, Base):
    """An hour of one line of usage (its dimensions hashed into `key`), summed over passes."""

    __tablename__ = "usage_hourly"
    __table_args__ = (UniqueConstraint("key", "hour"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    key: Mapped[str] = mapped_column(String(64))
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    day: Mapped[str] = mapped_column(String(10), index=True)  # YYYY-MM-DD, to group by


class UsageDailyRow(_Quantities, _Dimensions, Base):
    """The same lines summed by UTC day: what day and total reports and the forecast read (a
    month of 1,000 endpoints is 30,000 of these against 720,000 hourly ones)."""

    __tablename__ = "usage_daily"
    __table_args__ = (UniqueConstraint("key", "day"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    key: Mapped[str] = mapped_column(String(64))
    day: Mapped[str] = mapped_column(String(10), index=True)  # YYYY-MM-DD


class UsageRecordRow(_Quantities, _Dimensions, Base):
    """A raw record: what one metering pass added to one line, over [start, end). Kept for
    `billing.raw_retention_days`; the hourly lines are kept for good."""

    __tablename__ = "usage_records"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    key: Mapped[str] = mapped_column(String(64))
    start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    end: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class MeterStateRow(Base):
    """How far one meter has counted one source: a replica (`replica:ID`), a job (`job:UID`),
    a bucket (`bucket:PROJECT/NAME`). Written in the same transaction as the usage it adds."""

    __tablename__ = "meter_states"

    source: Mapped[str] = mapped_column(String(300), primary_key=True)
    metered_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # a job's run time so far
    requests: Mapped[int] = mapped_column(BigInteger, default=0)  # a replica's own counters
    busy_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    preempted_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # a job's, so far
    ended: Mapped[bool] = mapped_column(Boolean, default=False)


class QuotaRow(Base):
    """A project's quotas (`billing/quotas.py`): resource name -> limit."""

    __tablename__ = "project_quotas"

    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), primary_key=True
    )
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(160), default="")


class BudgetRow(Base):
    """A project's monthly budget: its spec (amount, thresholds, channels, action) and its
    status this month (spent, forecast, thresholds crossed, whether its action holds)."""

    __tablename__ = "budgets"
    __table_args__ = (UniqueConstraint("project_uid", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(63))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(160), default="")


class ReservationRow(Base):
    """Capacity a project has committed to (a one-year reservation): `count` instances of a
    type, priced at the catalog's reserved rate for the usage within them."""

    __tablename__ = "reservations"

    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), primary_key=True
    )
    instance_type: Mapped[str] = mapped_column(String(63), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(160), default="")
