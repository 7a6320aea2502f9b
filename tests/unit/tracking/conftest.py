"""A tracking service per test, on its own database (SQLite, and PostgreSQL where the
`postgres` marker runs) and blob store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tracking_world import World, make_world


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    if request.param == "sqlite":
        world = make_world(tmp_path)
        try:
            yield world
        finally:
            world.db.dispose()
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(request.getfixturevalue("postgres_url"))
    name = f"tracking_{uuid.uuid4().hex[:12]}"
    server = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    world = make_world(tmp_path, url.set(database=name).render_as_string(hide_password=False))
    try:
        yield world
    finally:
        world.db.dispose()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
