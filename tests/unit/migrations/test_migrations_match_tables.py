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
from sqlalchemy import inspect, text

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


def additions(found: list[object]) -> set[tuple[str, ...]]:
    """The tables and columns among autogenerate's differences, as (kind, table[, column])."""
    out: set[tuple[str, ...]] = set()
    for d in found:
        if d[0] == "add_table":  # type: ignore[index]
            out.add(("add_table", d[1].name))  # type: ignore[index]
        elif d[0] == "add_column":  # type: ignore[index]
            out.add(("add_column", d[2], d[3].name))  # type: ignore[index]
    return out


def added_by(db: Database, revision: str, previous: str) -> set[tuple[str, ...]]:
    """What the migration `revision` adds (and no later one): the differences seen below it,
    less those seen at it. Leaves the database at `previous`."""
    downgrade(db, revision)
    later = additions(differences(db))
    downgrade(db, previous)
    return additions(differences(db)) - later


def test_the_batch_predictions_migration_goes_down_and_up(db: Database) -> None:
    upgrade(db)
    assert sorted(added_by(db, "0018", "0017")) == [
        ("add_column", "dataset_versions", "lineage"),
        ("add_column", "training_job_status", "dataset_version"),
        ("add_column", "training_job_status", "progress"),
    ]
    upgrade(db)
    columns = inspect(db.engine)
    assert "lineage" in {c["name"] for c in columns.get_columns("dataset_versions")}
    job_status = {c["name"] for c in columns.get_columns("training_job_status")}
    assert {"progress", "dataset_version"} <= job_status
    assert differences(db) == []


def test_the_billing_migration_goes_down_and_up(db: Database) -> None:
    upgrade(db)
    added = added_by(db, "0019", "0018")
    assert sorted(name for kind, *name in added if kind == "add_column") == [
        ["training_job_status", "preempted_seconds"]
    ]
    assert sorted(name for kind, name, *_ in added if kind == "add_table") == [
        "budgets",
        "meter_states",
        "price_catalogs",
        "project_quotas",
        "reservations",
        "usage_daily",
        "usage_hourly",
        "usage_records",
    ]
    upgrade(db)
    assert differences(db) == []


def test_the_network_security_migrations_go_down_and_up(db: Database) -> None:
    upgrade(db)
    assert sorted(added_by(db, "0020", "0019")) == [
        ("add_column", "api_keys", "rate_limit_burst"),
        ("add_column", "api_keys", "rate_limit_rps"),
        ("add_column", "endpoints", "access"),
        ("add_column", "endpoints", "secrets"),
        ("add_column", "projects", "rate_limit_burst"),
        ("add_column", "projects", "rate_limit_rps"),
        ("add_column", "users", "platform_role"),
        ("add_table", "secrets"),
    ]
    upgrade(db)
    assert sorted(added_by(db, "0022", "0021")) == [("add_table", "platform_secrets")]
    upgrade(db)
    assert differences(db) == []


def test_the_master_key_rotation_migration_goes_down_and_up(db: Database) -> None:
    upgrade(db)
    assert sorted(added_by(db, "0021", "0020")) == [
        ("add_column", "master_key_check", "root_secret"),
        ("add_column", "storage_data_keys", "wrapped_by"),
        ("add_table", "master_key_rotations"),
    ]
    upgrade(db)
    assert differences(db) == []


def test_the_master_key_rotation_migration_stays_up_after_a_rotation(db: Database) -> None:
    """An older release would derive every key from the wrong secret."""
    upgrade(db)
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO master_key_rotations (id, state, old_check, new_check, started_by,"
                " started_at, keys_total, keys_done, error) VALUES ('mkr1', 'finished', 'a',"
                " 'b', 'user:admin', CURRENT_TIMESTAMP, 0, 0, '')"
            )
        )
    with pytest.raises(RuntimeError, match="the master key was rotated"):
        downgrade(db, "0020")
    assert current_revision(db) == head_revision()
