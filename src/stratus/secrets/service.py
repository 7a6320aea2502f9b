"""Secrets of a project: set (a new version each time), list, read the metadata, delete, and
resolve for the platform's own use.

A value is sealed with AES-256-GCM under the project's current data key (`Keyring`), bound to
its project, name and version (the associated data), so a sealed value moved to another row
does not open. Nothing here returns a value to a caller: `resolve` is for the controllers
that hand secrets to jobs and replicas (as environment variables) and to alert channels.
Values are never logged, and the audit log records that a secret was set, never its value.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Collection, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from stratus.core.database import Database
from stratus.core.errors import DataCorrupted, InvalidInput, NotFound
from stratus.core.ids import new_id
from stratus.core.resources import paginate_list
from stratus.secrets import schemas as s
from stratus.secrets.tables import SecretRow
from stratus.storage.keyring import Keyring

NONCE_BYTES = 12


def _aad(project_uid: str, name: str, version: int) -> bytes:
    return f"stratus secret\0{project_uid}\0{name}\0{version}".encode()


class SecretService:
    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        *,
        project_uid: Callable[[Session, str], str],
    ) -> None:
        self.db = db
        self.keyring = keyring
        self._project_uid = project_uid

    def set(self, project: str, name: str, data: s.SecretSet, *, actor: str) -> s.SecretRead:
        """A new version of `name` (the first one creates it)."""
        try:
            s.check_secret_name(name)
            value = data.data()
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            newest = session.scalar(
                select(func.max(SecretRow.version)).where(
                    SecretRow.project_uid == project_uid, SecretRow.name == name
                )
            )
            version = (newest or 0) + 1
            key_id, key = self.keyring.current(project_uid)
            nonce = os.urandom(NONCE_BYTES)
            sealed = nonce + AESGCM(key).encrypt(nonce, value, _aad(project_uid, name, version))
            session.add(
                SecretRow(
                    uid=new_id("sec"),
                    project_uid=project_uid,
                    name=name,
                    version=version,
                    key_id=key_id,
                    sealed=sealed,
                    description=data.description,
                    created_by=actor,
                )
            )
            session.flush()
            return self._read(session, project, project_uid, name, with_versions=False)

    def list(
        self, project: str, limit: int | None, page_token: str | None
    ) -> tuple[builtins.list[s.SecretRead], str | None]:
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            names = sorted(
                set(
                    session.scalars(
                        select(SecretRow.name).where(SecretRow.project_uid == project_uid)
                    )
                )
            )
            page, token = paginate_list(names, lambda n: n, limit, page_token)
            rows = session.scalars(  # the page's versions in one read, newest first
                select(SecretRow)
                .where(SecretRow.project_uid == project_uid, SecretRow.name.in_(page))
                .order_by(SecretRow.name, SecretRow.version.desc())
            ).all()
            versions: dict[str, list[SecretRow]] = {}
            for row in rows:
                versions.setdefault(row.name, []).append(row)
            return [
                s.SecretRead.of(n, project, versions[n], with_versions=False) for n in page
            ], token

    def get(self, project: str, name: str) -> s.SecretRead:
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            return self._read(session, project, project_uid, name, with_versions=True)

    def delete(self, project: str, name: str) -> None:
        """Delete every version of a secret."""
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            gone = session.execute(
                delete(SecretRow).where(
                    SecretRow.project_uid == project_uid, SecretRow.name == name
                )
            )
            if not gone.rowcount:  # type: ignore[attr-defined]
                raise _missing(project, name)

    def check(self, project: str, names: Collection[str]) -> None:
        """Refuse (400) references to secrets the project does not have, at submission
        rather than when a job starts."""
        if not names:
            return
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            have = set(
                session.scalars(
                    select(SecretRow.name).where(
                        SecretRow.project_uid == project_uid, SecretRow.name.in_(set(names))
                    )
                )
            )
        missing = sorted(set(names) - have)
        if missing:
            raise InvalidInput(
                f"project {project!r} has no secret {', '.join(missing)}: set it first with "
                f"`stratus secrets set {missing[0]} -p {project}`"
            )

    def resolve(self, project: str, wanted: Mapping[str, str]) -> dict[str, str]:
        """{variable: the newest value of its secret}, for the platform's own hands (jobs,
        replicas, channels). Raises NotFound naming a secret that is not set."""
        if not wanted:
            return {}
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            rows = session.scalars(
                select(SecretRow)
                .where(
                    SecretRow.project_uid == project_uid,
                    SecretRow.name.in_(set(wanted.values())),
                )
                .order_by(SecretRow.name, SecretRow.version.desc())
            )
            newest: dict[str, SecretRow] = {}
            for row in rows:
                newest.setdefault(row.name, row)  # the first of each name is its newest
        missing = sorted(set(wanted.values()) - set(newest))
        if missing:
            raise _missing(project, missing[0])
        return {variable: self._open(newest[name]).decode() for variable, name in wanted.items()}

    def _open(self, row: SecretRow) -> bytes:
        key = self.keyring.get(row.key_id)
        sealed = row.sealed
        try:
            return AESGCM(key).decrypt(
                sealed[:NONCE_BYTES],
                sealed[NONCE_BYTES:],
                _aad(row.project_uid, row.name, row.version),
            )
        except InvalidTag:
            raise DataCorrupted(
                f"secret {row.name!r} version {row.version} does not open under its key: "
                "it was altered"
            ) from None

    def _read(
        self, session: Session, project: str, project_uid: str, name: str, with_versions: bool
    ) -> s.SecretRead:
        rows = list(
            session.scalars(
                select(SecretRow)
                .where(SecretRow.project_uid == project_uid, SecretRow.name == name)
                .order_by(SecretRow.version.desc())
            )
        )
        if not rows:
            raise _missing(project, name)
        return s.SecretRead.of(name, project, rows, with_versions)


def _missing(project: str, name: str) -> NotFound:
    return NotFound(f"secret {name!r} not found in project {project!r}")
