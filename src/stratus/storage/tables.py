"""Storage tables: data keys, buckets, objects and their versions, and blob reference counts."""

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
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from stratus.core.clock import utcnow
from stratus.core.database import Base
from stratus.core.resources import ResourceMixin

# Object keys compare byte-wise on every database (PostgreSQL's locale collations would not).
KeyString = String(1024).with_variant(String(1024, collation="C"), "postgresql")


class MasterKeyCheckRow(Base):
    """A check value of the master key the data was written with (never the key itself): a
    control plane started with another master key refuses to start. It also keeps the root
    secret every other key is derived from, wrapped by that master key (`key_check.py`)."""

    __tablename__ = "master_key_check"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # the one row: 1
    check_value: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # None until the first start after the upgrade that added it (the root is the master key)
    root_secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class DataKeyRow(Base):
    """A project's data key, wrapped by the master key (envelope encryption)."""

    __tablename__ = "storage_data_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The check value of the master key that wraps it (None: written before rotations, under
    # the master key the database had then): a rotation re-wraps the rows not under its key.
    wrapped_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class MasterKeyRotationRow(Base):
    """A rotation of the master key, from its start to the key file's replacement; one that is
    not `finished` is carried on at the next start (`key_rotation.py`)."""

    __tablename__ = "master_key_rotations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # running, finished
    old_check: Mapped[str] = mapped_column(String(64))
    new_check: Mapped[str] = mapped_column(String(64))
    started_by: Mapped[str] = mapped_column(String(160))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    keys_total: Mapped[int] = mapped_column(Integer, default=0)
    keys_done: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")


class BucketRow(ResourceMixin, Base):
    __tablename__ = "buckets"
    __table_args__ = (UniqueConstraint("project_uid", "name"),)

    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    description: Mapped[str] = mapped_column(Text, default="")


class BlobRow(Base):
    """A stored blob and how many versions (of any service) refer to it."""

    __tablename__ = "blobs"

    project_uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    refcount: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ObjectRow(Base):
    """One key in a bucket; points at its current version (None once deleted)."""

    __tablename__ = "objects"
    __table_args__ = (UniqueConstraint("bucket_uid", "key"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    bucket_uid: Mapped[str] = mapped_column(ForeignKey("buckets.uid", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(KeyString)
    current_version_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ObjectVersionRow(Base):
    """An immutable version of an object, or a delete marker."""

    __tablename__ = "object_versions"

    version_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"), index=True)
    bucket_uid: Mapped[str] = mapped_column(String(32), index=True)
    key: Mapped[str] = mapped_column(KeyString)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    is_delete_marker: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(160), default="")
    user_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
