"""Envelope encryption keys: one data key per project, wrapped by the master key.

Unwrapped keys are cached for the life of the process; a project's newest key encrypts new
blobs, and every key stays readable so old blobs decrypt after a rotation.
"""

from __future__ import annotations

import threading

from sqlalchemy import select

from stratus.core.database import Database
from stratus.core.errors import DataCorrupted
from stratus.core.ids import new_id
from stratus.storage.encryption import new_data_key, unwrap_key, wrap_key
from stratus.storage.tables import DataKeyRow


class Keyring:
    def __init__(self, db: Database, master_key: bytes) -> None:
        self.db = db
        self._master = master_key
        self._keys: dict[str, bytes] = {}
        self._current: dict[str, str] = {}
        self._lock = threading.Lock()

    def current(self, project_uid: str) -> tuple[str, bytes]:
        """The data key that encrypts the project's new blobs (created on first use)."""
        key_id = self._current.get(project_uid)
        if key_id is not None:
            return key_id, self._keys[key_id]
        with self._lock, self.db.transaction() as session:
            row = session.scalar(
                select(DataKeyRow)
                .where(DataKeyRow.project_uid == project_uid)
                .order_by(DataKeyRow.created_at.desc())
                .limit(1)
            )
            if row is None:
                key_id = new_id("dk")
                key = new_data_key()
                session.add(
                    DataKeyRow(
                        key_id=key_id,
                        project_uid=project_uid,
                        wrapped=wrap_key(self._master, key, key_id),
                    )
                )
            else:
                key_id, key = row.key_id, unwrap_key(self._master, row.wrapped, row.key_id)
            self._keys[key_id] = key
            self._current[project_uid] = key_id
            return key_id, key

    def get(self, key_id: str) -> bytes:
        """Any data key by id (to read blobs written under an older key)."""
        key = self._keys.get(key_id)
        if key is not None:
            return key
        with self.db.transaction() as session:
            row = session.get(DataKeyRow, key_id)
            if row is None:
                raise DataCorrupted(f"data key {key_id} is missing: the blob cannot be decrypted")
            key = unwrap_key(self._master, row.wrapped, row.key_id)
        self._keys[key_id] = key
        return key
