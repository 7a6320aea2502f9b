"""Console sessions: what a browser's cookie stands for.

Signing in with a password or an API key makes a session: a random id (the cookie's value,
never stored) whose SHA-256 keys a row holding the credential sealed with AES-GCM under a
key of the root secret, the subject, and when it ends. Each request opens the row and
authenticates the credential as the API would (so a key's project restriction, a disabled
user, an expired or revoked key all hold), and signing out deletes the row: a copied cookie
is dead from then on. A password sign-in's credential is a login token
(`security.token_ttl_seconds`); the session lasts as long as the credential, at most
`SESSION_SECONDS`. The CSRF token of a session is an HMAC of its id: forms and script
requests carry it, and every change checks it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import DateTime, LargeBinary, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Base, Database

SESSION_SECONDS = 12 * 3600
CONSOLE_SESSIONS = "stratus console sessions"  # the key's HKDF purpose
_NONCE = 12


class ConsoleSessionRow(Base):
    __tablename__ = "console_sessions"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(300))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ConsoleSessions:
    def __init__(self, db: Database, key: bytes, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self._aead = AESGCM(key)
        self._csrf_key = hashlib.sha256(b"csrf\0" + key).digest()
        self.clock = clock

    def open(self, credential: str, subject: str, expires_at: datetime | None = None) -> str:
        """A new session for `credential` (already verified); its id, for the cookie."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        ends = now + timedelta(seconds=SESSION_SECONDS)
        if expires_at is not None:
            ends = min(ends, expires_at)
        digest = _digest(session_id)
        nonce = os.urandom(_NONCE)
        sealed = nonce + self._aead.encrypt(nonce, credential.encode(), digest.encode())
        with self.db.transaction() as session:
            session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.expires_at <= now))
            session.add(
                ConsoleSessionRow(
                    id_sha256=digest,
                    subject=subject,
                    sealed=sealed,
                    created_at=now,
                    expires_at=ends,
                )
            )
        return session_id

    def credential(self, session_id: str) -> str | None:
        """The credential of a live session, else None (unknown, ended, or not ours)."""
        if not session_id or len(session_id) > 200:
            return None
        digest = _digest(session_id)
        with self.db.transaction() as session:
            row = session.get(ConsoleSessionRow, digest)
            if row is None or as_utc(row.expires_at) <= self.clock():
                return None
            sealed = row.sealed
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], digest.encode()).decode()
        except (InvalidTag, ValueError):
            return None

    def close(self, session_id: str) -> None:
        with self.db.transaction() as session:
            session.execute(
                delete(ConsoleSessionRow).where(ConsoleSessionRow.id_sha256 == _digest(session_id))
            )

    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session_id: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session_id), token or "")

    def count(self) -> int:
        with self.db.transaction() as session:
            return len(session.scalars(select(ConsoleSessionRow.id_sha256)).all())


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
