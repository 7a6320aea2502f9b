"""The master key's check value: remembered at the first start, compared at every other, and
for a database from before the check, a data key unwraps only under the right master key."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

import stratus.iam.tables  # noqa: F401  (the projects table data keys refer to)
from stratus.core.database import Base, Database
from stratus.core.errors import InvalidInput
from stratus.iam.tables import ProjectRow
from stratus.storage.encryption import wrap_key
from stratus.storage.key_check import check_value, verify_master_key
from stratus.storage.tables import DataKeyRow, MasterKeyCheckRow

KEY, OTHER = os.urandom(32), os.urandom(32)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'keys.db'}")
    Base.metadata.create_all(database.engine)
    yield database
    database.dispose()


def test_the_first_key_is_remembered_and_another_refused(db: Database) -> None:
    verify_master_key(db, KEY)
    verify_master_key(db, KEY)
    with pytest.raises(InvalidInput, match="the master key does not match"):
        verify_master_key(db, OTHER)
    with db.reading() as session:
        stored = session.scalars(select(MasterKeyCheckRow.check_value)).all()
    assert stored == [check_value(KEY)]
    assert KEY.hex() not in stored[0] and check_value(KEY) != check_value(OTHER)


def test_a_database_from_before_the_check_is_checked_by_its_data_keys(db: Database) -> None:
    with db.transaction() as session:
        project = ProjectRow(name="p", description="", labels={})
        session.add(project)
        session.flush()
        session.add(
            DataKeyRow(
                key_id="dk_1",
                project_uid=project.uid,
                wrapped=wrap_key(KEY, os.urandom(32), "dk_1"),
            )
        )
    with pytest.raises(InvalidInput, match="the master key does not match"):
        verify_master_key(db, OTHER)
    verify_master_key(db, KEY)  # the right one: its check value is remembered from now on
    with pytest.raises(InvalidInput):
        verify_master_key(db, OTHER)
