"""Alerting tables: the rules (spec and the evaluator's status), their history (one row per
firing or resolved change, with what each notification channel answered), and notification
channels (their settings, and their secrets sealed with AES-GCM)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from stratus.core.clock import utcnow
from stratus.core.database import Base
from stratus.core.resources import ResourceMixin

_ID = BigInteger().with_variant(Integer, "sqlite")


class AlertRuleRow(ResourceMixin, Base):
    """A rule. The evaluator writes `status` with a plain UPDATE, so its writes never bump
    `resource_version` or `updated_at`."""

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("project_uid", "name"),)

    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AlertEventRow(Base):
    """One firing or resolved change of a rule's series, or an alert Alertmanager sent
    (`source`); `dedup_key` makes a redelivered Alertmanager alert a no-op."""

    __tablename__ = "alert_events"
    __table_args__ = (
        Index("ix_alert_events_project_rule_time", "project_uid", "rule", "time"),
        UniqueConstraint("project_uid", "dedup_key"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    rule: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    source: Mapped[str] = mapped_column(String(16), default="stratus")
    notifications: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    dedup_key: Mapped[str | None] = mapped_column(String(300), nullable=True)


class ChannelRow(ResourceMixin, Base):
    """A notification channel: `config` holds its settings without secrets; `secrets` is
    the sealed JSON of its header values, password and (for Slack) URL."""

    __tablename__ = "notification_channels"
    __table_args__ = (UniqueConstraint("project_uid", "name"),)

    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    secrets: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
