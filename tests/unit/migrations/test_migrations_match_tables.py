"""The migrations build the schema the tables declare, on SQLite and on PostgreSQL (where the
`postgres` marker runs): after `upgrade` to the head, Alembic's autogenerate finds nothing to
add, drop or change. And the newest migration goes down and up again."""

from __future__ import annotations

import importlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

import stratus.migrations
from stratus.core.database import Base, Database
from stratus.migrations.runner import alembic_config, current_revision, head_revision, upgrade


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database: a SQLite file, or a PostgreSQL database of this test's own."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'stratus.db'}")
        yield database
        database.dispose()
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(request.getfixturevalue("postgres_url"))
    name = f"migrations_{uuid.uuid4().hex[:12]}"
    server = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database = Database(url.set(database=name).render_as_string(hide_password=False))
    try:
        yield database
    finally:
        database.dispose()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def differences(db: Database) -> list[object]:
    """What autogenerate would change, against every table module the migrations' env loads
    (read from env.py, which runs only inside Alembic)."""
    env = (Path(stratus.migrations.__file__).parent / "env.py").read_text()
    for module in re.findall(r"^import (stratus\.[\w.]+)", env, flags=re.MULTILINE):
        importlib.import_module(module)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def downgrade(db: Database, revision: str) -> None:
    config = alembic_config(db.url)
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_the_migrations_build_the_tables_schema(db: Database) -> None:
    upgrade(db)
    assert current_revision(db) == head_revision()
    assert differences(db) == []


def test_the_endpoint_events_migration_goes_down_and_up(db: Database) -> None:
    upgrade(db)
    downgrade(db, "0016")
    assert "endpoint_events" not in inspect(db.engine).get_table_names()
    missing = differences(db)  # what the check above sees when a migration is missing
    assert [(d[0], d[1].name) for d in missing] == [  # type: ignore[index]
        ("add_table", "endpoint_events"),
        ("add_index", "ix_endpoint_events_endpoint_uid"),
    ]
    upgrade(db)
    events = inspect(db.engine)
    assert {c["name"] for c in events.get_columns("endpoint_events")} == {
        "id", "endpoint_uid", "time", "variant", "kind", "from_replicas", "to_replicas", "reason",
    }  # fmt: skip
    (key,) = events.get_foreign_keys("endpoint_events")
    assert (key["referred_table"], key["options"].get("ondelete")) == ("endpoints", "CASCADE")
    assert [i["column_names"] for i in events.get_indexes("endpoint_events")] == [["endpoint_uid"]]
    assert differences(db) == []
