"""The master key's check value: a control plane refuses a master key the data was not
written with, before it reads or writes anything under it.

The database keeps HMAC-SHA256 of a fixed text under a key derived from the master key — it
tells whether two master keys are the same, and nothing about the key. A database written
before the check existed is checked by unwrapping one of its data keys.
"""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy import select

from stratus.core.database import Database
from stratus.core.errors import DataCorrupted, InvalidInput
from stratus.iam.credentials import derive_key
from stratus.storage.encryption import unwrap_key
from stratus.storage.tables import DataKeyRow, MasterKeyCheckRow

KEY_CHECK = "stratus key check"
CHECK_ID = 1


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


def verify_master_key(db: Database, master_key: bytes) -> None:
    """Refuse a master key the data was not written with; remember the key's check value at
    the first start."""
    value = check_value(master_key)
    with db.transaction() as session:
        row = session.get(MasterKeyCheckRow, CHECK_ID, with_for_update=True)
        if row is not None:
            if not hmac.compare_digest(row.check_value, value):
                raise wrong_master_key()
            return
        written = session.scalar(select(DataKeyRow).limit(1))
        if written is not None:
            try:
                unwrap_key(master_key, written.wrapped, written.key_id)
            except DataCorrupted:
                raise wrong_master_key() from None
        session.add(MasterKeyCheckRow(id=CHECK_ID, check_value=value))
