"""Autogenerate an Alembic revision from the tables (run by `make migration MESSAGE=...`)."""

from __future__ import annotations

import sys
import tempfile

from alembic import command

from stratus.core.database import Database
from stratus.migrations.runner import alembic_config, upgrade


def main() -> None:
    message = " ".join(sys.argv[1:]).strip()
    if not message:
        sys.exit('usage: make migration MESSAGE="what changed"')
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/schema.db"
        db = Database(url)
        upgrade(db)
        db.dispose()
        command.revision(alembic_config(url), message=message, autogenerate=True)


if __name__ == "__main__":
    main()
