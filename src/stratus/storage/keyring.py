"""Envelope encryption keys: one data key per project, wrapped by the master key.

Unwrapped keys are cached for the life of the process; a project's newest key encrypts new
blobs, and every key stays readable so old blobs decrypt after a rotation. While the master
key is rotated, a key row is unwrapped under whichever master key wraps it (`MasterKeys`), and
a new one is wrapped under the newest, taking a share of the lock the rotation's last step
takes, so none is written under the old key after that step looked for them.

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
from stratus.storage.encryption import new_data_key
from stratus.storage.key_check import CHECK_ID
from stratus.storage.master_keys import MasterKeys
from stratus.storage.tables import DataKeyRow, MasterKeyCheckRow


class Keyring:
    def __init__(self, db: Database, master_keys: MasterKeys | bytes) -> None:
        self.db = db
        self.master_keys = (
            master_keys if isinstance(master_keys, MasterKeys) else MasterKeys(master_keys)
        )
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
                found = None if row is None else (row.key_id, self._unwrap(row))
            new_key_id, key = found or self._create(project_uid)
            self._keys[new_key_id] = key
            self._current[project_uid] = new_key_id
            return new_key_id, key

    def get(self, key_id: str) -> bytes:
        """Any data key by id (to read blobs written under an older key)."""
        key = self._keys.get(key_id)
        if key is not None:
            return key
        try:
            key = self._load(key_id)
        except DataCorrupted:
            # read just before a rotation re-wrapped it and forgot the old master key: once more
            key = self._load(key_id)
        self._keys[key_id] = key
        return key

    def _load(self, key_id: str) -> bytes:
        with self._reading() as session:
            row = session.get(DataKeyRow, key_id, populate_existing=True)
            if row is None:
                raise DataCorrupted(f"data key {key_id} is missing: the blob cannot be decrypted")
            return self._unwrap(row)

    def clear_cache(self) -> None:
        """Forget the unwrapped keys: the next use of each reads its row again."""
        with self._lock:
            self._keys.clear()
            self._current.clear()

    def _unwrap(self, row: DataKeyRow) -> bytes:
        return self.master_keys.unwrap(row.wrapped, row.key_id, row.wrapped_by)

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

        def row(session: Session) -> DataKeyRow:
            # Shares the lock a rotation's last step takes (PostgreSQL; SQLite has one writer
            # anyway), and only then picks the master key: a row written under the old key is
            # committed before that step looks, and none is written under it after.
            session.execute(
                select(MasterKeyCheckRow.id)
                .where(MasterKeyCheckRow.id == CHECK_ID)
                .with_for_update(read=True)
            )
            wrapped, wrapped_by = self.master_keys.wrap(key, key_id)
            return DataKeyRow(
                key_id=key_id, project_uid=project_uid, wrapped=wrapped, wrapped_by=wrapped_by
            )

        joined = self._joined()
        if joined is None:
            if self.db.open_session() is None:
                with self.db.transaction() as session:
                    session.add(row(session))
            else:
                with self.db.side_transaction() as session:
                    session.add(row(session))
            return key_id, key

        def keep(committed: bool) -> None:
            if committed:
                return
            try:  # blobs may already be encrypted under it: write it again
                with self.db.transaction() as session:
                    if session.get(DataKeyRow, key_id) is None:
                        session.add(row(session))
            except BaseException:
                with self._lock:  # never encrypt under a key the database does not hold
                    self._keys.pop(key_id, None)
                    if self._current.get(project_uid) == key_id:
                        del self._current[project_uid]
                raise

        joined.add(row(joined))
        joined.flush()
        self.db.after_transaction(keep)
        return key_id, key
