"""What the database keeps about the master key: its check value, and the root secret.

The check value is HMAC-SHA256 of a fixed text under a key derived from the master key — it
tells whether two master keys are the same, and nothing about the key; a control plane refuses
a master key the data was not written with, before it reads or writes anything under it. A
database written before the check existed is checked by unwrapping one of its data keys.

The root secret is what every other key of the platform is derived from (blob names, the audit
chain, login tokens, replica and channel secrets): it stays the same when the master key is
rotated, so none of them changes. It is the first master key the database was written with
(a database from before root secrets keeps deriving what it always derived), kept wrapped by
the current master key in the same row as that key's check value.
"""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from stratus.core.database import Database
from stratus.core.errors import DataCorrupted, InvalidInput
from stratus.iam.credentials import derive_key
from stratus.storage.encryption import unwrap_key, wrap_key
from stratus.storage.tables import DataKeyRow, MasterKeyCheckRow, MasterKeyRotationRow

KEY_CHECK = "stratus key check"
CHECK_ID = 1
ROOT_SECRET = "stratus root secret"  # what its wrapping is bound to (as a data key to its id)


def check_value(master_key: bytes) -> str:
    return hmac.new(
        derive_key(master_key, KEY_CHECK), KEY_CHECK.encode(), hashlib.sha256
    ).hexdigest()


def wrong_master_key() -> InvalidInput:
    return InvalidInput(
        "the master key does not match the one this database's data was written with: start "
        "with that key (STRATUS_MASTER_KEY, or master.key in the home of the control plane "
        "that wrote it)"
    )


def wrap_root_secret(master_key: bytes, root: bytes) -> bytes:
    return wrap_key(master_key, root, ROOT_SECRET)


def unwrap_root_secret(master_key: bytes, wrapped: bytes) -> bytes:
    return unwrap_key(master_key, wrapped, ROOT_SECRET)


def unfinished_rotation(session: Session) -> MasterKeyRotationRow | None:
    return session.scalar(
        select(MasterKeyRotationRow).where(MasterKeyRotationRow.state != "finished").limit(1)
    )


def verify_master_key(db: Database, master_key: bytes) -> None:
    """Refuse a master key the data was not written with; remember the key's check value (and
    the root secret) at the first start.

    One case of another key is let through: a rotation that switched the database to its new
    key and stopped before it replaced the key file, started again with the old file; the
    start carries the rotation on (the new key is in `master.key.next`, `key_rotation.py`)."""
    value = check_value(master_key)
    with db.transaction() as session:
        row = session.get(MasterKeyCheckRow, CHECK_ID, with_for_update=True)
        if row is not None and not hmac.compare_digest(row.check_value, value):
            rotation = unfinished_rotation(session)
            if not (
                rotation is not None
                and rotation.old_check == value
                and rotation.new_check == row.check_value
            ):
                raise wrong_master_key()
            return
        if row is None:
            written = session.scalar(select(DataKeyRow).limit(1))
            if written is not None:
                try:
                    unwrap_key(master_key, written.wrapped, written.key_id)
                except DataCorrupted:
                    raise wrong_master_key() from None
        remember_master_key(session, master_key)


def remember_master_key(session: Session, master_key: bytes) -> MasterKeyCheckRow:
    """The check row (locked), written for `master_key` if there is none yet, with the root
    secret if it has none: the master key itself, which is what every key was derived from
    before root secrets."""
    row = session.get(MasterKeyCheckRow, CHECK_ID, with_for_update=True)
    if row is None:
        row = MasterKeyCheckRow(id=CHECK_ID, check_value=check_value(master_key))
        session.add(row)
    if row.root_secret is None:
        row.root_secret = wrap_root_secret(master_key, master_key)
    session.flush()
    return row


def _root_secret_kept(db: Database) -> bool:
    """Whether the database has the root secret's column (not before its migration, which
    `stratus up` runs after building the platform)."""
    inspector = inspect(db.engine)
    if not inspector.has_table(MasterKeyCheckRow.__tablename__):
        return False
    columns = inspector.get_columns(MasterKeyCheckRow.__tablename__)
    return any(column["name"] == "root_secret" for column in columns)


def root_secret(db: Database, keys: dict[str, bytes], current: bytes) -> bytes:
    """The root secret, unwrapped with whichever of `keys` (by check value) the database names;
    `current` itself while the database keeps none (a new database, or one from before root
    secrets: either way every key so far was derived from it)."""
    if not _root_secret_kept(db):
        return current
    with db.reading() as session:
        row = session.get(MasterKeyCheckRow, CHECK_ID)
        if row is None or row.root_secret is None:
            return current
        key = keys.get(row.check_value)
        if key is None:
            raise wrong_master_key()
        return unwrap_root_secret(key, row.root_secret)
