"""IAM tables: projects (the tenancy boundary), principals, keys, bindings and the audit chain."""

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


class ProjectRow(ResourceMixin, Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("name"),)

    description: Mapped[str] = mapped_column(Text, default="")
    # every caller's requests per second into the project (each caller its own bucket)
    rate_limit_rps: Mapped[float | None] = mapped_column(Float, nullable=True)
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer, nullable=True)


class UserRow(ResourceMixin, Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("name"),)

    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    platform_role: Mapped[str | None] = mapped_column(String(32), nullable=True)


class ServiceAccountRow(ResourceMixin, Base):
    __tablename__ = "service_accounts"
    __table_args__ = (UniqueConstraint("project_uid", "name"),)

    project_uid: Mapped[str] = mapped_column(ForeignKey("projects.uid", ondelete="CASCADE"))
    description: Mapped[str] = mapped_column(Text, default="")


class ApiKeyRow(Base):
    """An API key: `stk_<key_id>_<secret>`; only SHA-256 of the secret is kept."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    secret_hash: Mapped[str] = mapped_column(String(64))
    user_uid: Mapped[str | None] = mapped_column(
        ForeignKey("users.uid", ondelete="CASCADE"), nullable=True, index=True
    )
    service_account_uid: Mapped[str | None] = mapped_column(
        ForeignKey("service_accounts.uid", ondelete="CASCADE"), nullable=True, index=True
    )
    project_uid: Mapped[str | None] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    rate_limit_rps: Mapped[float | None] = mapped_column(Float, nullable=True)
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer, nullable=True)


class RoleBindingRow(Base):
    """A principal's role in a project (one role per principal and project)."""

    __tablename__ = "role_bindings"
    __table_args__ = (
        UniqueConstraint("project_uid", "user_uid"),
        UniqueConstraint("project_uid", "service_account_uid"),
    )

    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    user_uid: Mapped[str | None] = mapped_column(
        ForeignKey("users.uid", ondelete="CASCADE"), nullable=True, index=True
    )
    service_account_uid: Mapped[str | None] = mapped_column(
        ForeignKey("service_accounts.uid", ondelete="CASCADE"), nullable=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEventRow(Base):
    """One audit entry; `hash` covers every field and the previous entry's hash."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(160), index=True)
    action: Mapped[str] = mapped_column(String(80), index=True)
    resource: Mapped[str] = mapped_column(String(1200))
    project: Mapped[str | None] = mapped_column(String(63), nullable=True, index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The chain head: the last entry's seq and hash, so a removed tail is detected too, and
    the first entry of the keyed chain (older entries carry the legacy unkeyed hash)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    keyed_from: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
