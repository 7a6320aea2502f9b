"""Autogenerate an Alembic revision from the tables (run by `make migration MESSAGE=...`)."""

from __future__ import annotations

import sys
import tempfile

from alembic import command

from stratus.core.database import Database
from stratus.migrations.runner import alembic_config, head_revision, upgrade


def main() -> None:
    message = " ".join(sys.argv[1:]).strip()
    if not message:
        sys.exit('usage: make migration MESSAGE="what changed"')
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/schema.db"
        db = Database(url)
        upgrade(db)
        db.dispose()
        head = head_revision()
        rev_id = f"{int(head) + 1:04d}" if head and head.isdigit() else None  # 0001, 0002, ...
        command.revision(alembic_config(url), message=message, autogenerate=True, rev_id=rev_id)


if __name__ == "__main__":
    main()
