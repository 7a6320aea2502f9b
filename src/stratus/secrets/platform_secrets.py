"""Secrets of the platform itself, set by admins: today, the object store's credentials
(`store.s3_access_key_id = "secret:NAME"`), so they live sealed in the database instead of in
the control plane's environment or `stratus.toml`.

They are sealed with AES-256-GCM under a key derived (HKDF) from the root secret, bound to their
name and version. The root secret is what a master-key rotation leaves unchanged, so they
need no re-wrapping. `read_platform_secret` is for `Platform.build`, before any service exists:
it reads one value with nothing but the database and the root secret.
"""

from __future__ import annotations

import builtins
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, func, inspect, select
from sqlalchemy.orm import Session

from stratus.core.database import Database
from stratus.core.errors import DataCorrupted, InvalidInput, NotFound
from stratus.core.ids import new_id
from stratus.iam.credentials import derive_key
from stratus.secrets import schemas as s
from stratus.secrets.tables import PlatformSecretRow

PLATFORM_SECRETS = "stratus platform secrets"
NONCE_BYTES = 12
REFERENCE = "secret:"


def _aad(name: str, version: int) -> bytes:
    return f"stratus platform secret\0{name}\0{version}".encode()


class PlatformSecrets:
    def __init__(self, db: Database, root: bytes) -> None:
        self.db = db
        self._aead = AESGCM(derive_key(root, PLATFORM_SECRETS))

    def set(self, name: str, data: s.SecretSet, *, actor: str) -> s.SecretRead:
        try:
            s.check_secret_name(name)
            value = data.data()
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        with self.db.transaction() as session:
            newest = session.scalar(
                select(func.max(PlatformSecretRow.version)).where(PlatformSecretRow.name == name)
            )
            version = (newest or 0) + 1
            nonce = os.urandom(NONCE_BYTES)
            session.add(
                PlatformSecretRow(
                    uid=new_id("psec"),
                    name=name,
                    version=version,
                    sealed=nonce + self._aead.encrypt(nonce, value, _aad(name, version)),
                    description=data.description,
                    created_by=actor,
                )
            )
            session.flush()
            return _read(session, name, with_versions=False)

    def list(self) -> builtins.list[s.SecretRead]:
        with self.db.transaction() as session:
            names = sorted(set(session.scalars(select(PlatformSecretRow.name))))
            return [_read(session, n, with_versions=False) for n in names]

    def get(self, name: str) -> s.SecretRead:
        with self.db.transaction() as session:
            return _read(session, name, with_versions=True)

    def delete(self, name: str) -> None:
        with self.db.transaction() as session:
            gone = session.execute(delete(PlatformSecretRow).where(PlatformSecretRow.name == name))
            if not gone.rowcount:  # type: ignore[attr-defined]
                raise _missing(name)

    def value(self, name: str) -> str:
        """The newest value (NotFound when it is not set)."""
        with self.db.transaction() as session:
            row = _newest(session, name)
            if row is None:
                raise _missing(name)
            return self._open(row)

    def _open(self, row: PlatformSecretRow) -> str:
        try:
            plain = self._aead.decrypt(
                row.sealed[:NONCE_BYTES], row.sealed[NONCE_BYTES:], _aad(row.name, row.version)
            )
        except InvalidTag:
            raise DataCorrupted(
                f"platform secret {row.name!r} version {row.version} does not open: it was "
                "altered, or sealed under another root secret"
            ) from None
        return plain.decode()


def read_platform_secret(db: Database, root: bytes, reference: str) -> str:
    """The value a setting names: itself, or with `secret:NAME` the newest value of the
    platform secret NAME. Raises InvalidInput saying what to do when it cannot be read."""
    if not reference.startswith(REFERENCE):
        return reference
    name = reference.removeprefix(REFERENCE)
    if not inspect(db.engine).has_table(PlatformSecretRow.__tablename__):
        raise InvalidInput(
            f"{reference}: this database has no platform secrets yet: run `stratus db upgrade`, "
            f"start once with the credentials in the environment, `stratus secrets set {name} "
            "--platform`, then name it"
        )
    try:
        return PlatformSecrets(db, root).value(name)
    except NotFound:
        raise InvalidInput(
            f"{reference}: no platform secret {name!r}; set it with `stratus secrets set {name} "
            "--platform` (on a platform started with the credentials in the environment)"
        ) from None


def _newest(session: Session, name: str) -> PlatformSecretRow | None:
    return session.scalar(
        select(PlatformSecretRow)
        .where(PlatformSecretRow.name == name)
        .order_by(PlatformSecretRow.version.desc())
        .limit(1)
    )


def _read(session: Session, name: str, with_versions: bool) -> s.SecretRead:
    rows = list(
        session.scalars(
            select(PlatformSecretRow)
            .where(PlatformSecretRow.name == name)
            .order_by(PlatformSecretRow.version.desc())
        )
    )
    if not rows:
        raise _missing(name)
    return s.SecretRead.of(name, None, rows, with_versions)


def _missing(name: str) -> NotFound:
    return NotFound(f"platform secret {name!r} not found")
