"""Endpoint tables: the spec (with its variants), every revision of it, the status the
controller last observed (apart from the spec, so status writes never bump its
`resource_version`), and what the controller did by itself (its scaling steps)."""

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
from stratus.core.resources import NAME_MAX, ResourceMixin


class EndpointRow(ResourceMixin, Base):
    __tablename__ = "endpoints"
    __table_args__ = (UniqueConstraint("project_uid", "name"),)

    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    description: Mapped[str] = mapped_column(Text, default="")
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    capture: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    passthrough: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    access: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    secrets: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")


class EndpointRevisionRow(Base):
    """Every change of an endpoint's spec: the whole spec after it, who, what, why."""

    __tablename__ = "endpoint_revisions"
    __table_args__ = (UniqueConstraint("endpoint_uid", "revision"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    endpoint_uid: Mapped[str] = mapped_column(
        ForeignKey("endpoints.uid", ondelete="CASCADE"), index=True
    )
    revision: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(160))
    reason: Mapped[str] = mapped_column(Text, default="")
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)


class EndpointStatusRow(Base):
    """What the controller last observed of an endpoint."""

    __tablename__ = "endpoint_status"

    endpoint_uid: Mapped[str] = mapped_column(
        ForeignKey("endpoints.uid", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EndpointEventRow(Base):
    """Something the controller did to an endpoint by itself (a scaling step), and why; the
    newest `MAX_EVENTS` of each endpoint are kept (`EndpointService.record_event`)."""

    __tablename__ = "endpoint_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    endpoint_uid: Mapped[str] = mapped_column(
        ForeignKey("endpoints.uid", ondelete="CASCADE"), index=True
    )
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    variant: Mapped[str] = mapped_column(String(NAME_MAX))
    kind: Mapped[str] = mapped_column(String(32))
    from_replicas: Mapped[int] = mapped_column(Integer)
    to_replicas: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(1000), default="")
