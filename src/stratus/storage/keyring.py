"""Envelope encryption keys: one data key per project, wrapped by the master key.

Unwrapped keys are cached for the life of the process; a project's newest key encrypts new
blobs, and every key stays readable so old blobs decrypt after a rotation.

Blobs are written and read inside other services' transactions (a job's log is kept in the
transaction that records how the job ended), so the keyring never opens a transaction of that
thread's kind: it reads key rows on a connection of its own, and a new key is committed in a
short transaction of its own before any blob is encrypted under it — a blob outlives a rolled
back transaction, and its key must too. SQLite has one writer: when this thread already holds
it, the new key joins the open transaction and, should that roll back, is written again right
after, before it is used for anything else.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.orm import Session

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
        self._lock = threading.RLock()

    def current(self, project_uid: str) -> tuple[str, bytes]:
        """The data key that encrypts the project's new blobs (created on first use)."""
        key_id = self._current.get(project_uid)
        if key_id is not None:
            return key_id, self._keys[key_id]
        with self._lock:
            key_id = self._current.get(project_uid)
            if key_id is not None:
                return key_id, self._keys[key_id]
            with self._reading() as session:
                row = session.scalar(
                    select(DataKeyRow)
                    .where(DataKeyRow.project_uid == project_uid)
                    .order_by(DataKeyRow.created_at.desc())
                    .limit(1)
                )
                found = (
                    None
                    if row is None
                    else (row.key_id, unwrap_key(self._master, row.wrapped, row.key_id))
                )
            new_key_id, key = found or self._create(project_uid)
            self._keys[new_key_id] = key
            self._current[project_uid] = new_key_id
            return new_key_id, key

    def get(self, key_id: str) -> bytes:
        """Any data key by id (to read blobs written under an older key)."""
        key = self._keys.get(key_id)
        if key is not None:
            return key
        with self._reading() as session:
            row = session.get(DataKeyRow, key_id)
            if row is None:
                raise DataCorrupted(f"data key {key_id} is missing: the blob cannot be decrypted")
            key = unwrap_key(self._master, row.wrapped, row.key_id)
        self._keys[key_id] = key
        return key

    # --- the database, beside the caller's transaction ----------------------------------------

    def _joined(self) -> Session | None:
        """This thread's open SQLite transaction (which holds the one write lock), if any."""
        return self.db.open_session() if self.db.dialect == "sqlite" else None

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        # A row this thread's SQLite transaction wrote (a key it created) is seen through it.
        joined = self._joined()
        if joined is not None:
            yield joined
            return
        with self.db.reading() as session:
            yield session

    def _create(self, project_uid: str) -> tuple[str, bytes]:
        key_id, key = new_id("dk"), new_data_key()
        wrapped = wrap_key(self._master, key, key_id)

        def row() -> DataKeyRow:
            return DataKeyRow(key_id=key_id, project_uid=project_uid, wrapped=wrapped)

        joined = self._joined()
        if joined is None:
            if self.db.open_session() is None:
                with self.db.transaction() as session:
                    session.add(row())
            else:
                with self.db.side_transaction() as session:
                    session.add(row())
            return key_id, key

        def keep(committed: bool) -> None:
            if committed:
                return
            try:  # blobs may already be encrypted under it: write it again
                with self.db.transaction() as session:
                    if session.get(DataKeyRow, key_id) is None:
                        session.add(row())
            except BaseException:
                with self._lock:  # never encrypt under a key the database does not hold
                    self._keys.pop(key_id, None)
                    if self._current.get(project_uid) == key_id:
                        del self._current[project_uid]
                raise

        joined.add(row())
        joined.flush()
        self.db.after_transaction(keep)
        return key_id, key
