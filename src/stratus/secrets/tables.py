"""The secrets table: every version of every secret, its value sealed (AES-256-GCM) under a
data key of its project (`storage.keyring`), so a master-key rotation re-wraps it with the
rest and a database dump shows no value."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from stratus.core.clock import utcnow
from stratus.core.database import Base


class SecretRow(Base):
    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("project_uid", "name", "version"),)

    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_uid: Mapped[str] = mapped_column(
        ForeignKey("projects.uid", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[str] = mapped_column(String(32))  # the data key that sealed it
    sealed: Mapped[bytes] = mapped_column(LargeBinary)  # nonce + AES-GCM ciphertext and tag
    description: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PlatformSecretRow(Base):
    """A secret of the platform rather than of a project (an admin's: the object store's
    credentials), sealed under a key derived from the root secret, which a master-key rotation
    leaves as it is."""

    __tablename__ = "platform_secrets"
    __table_args__ = (UniqueConstraint("name", "version"),)

    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)  # nonce + AES-GCM ciphertext and tag
    description: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
