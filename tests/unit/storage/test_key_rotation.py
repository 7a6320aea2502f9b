"""Master key rotation on a database of its own: every data key and the root secret move to
the new key, reads never fail on the way, a rotation stopped at any step is carried on by the
next start, and afterwards only the new key opens the database."""

from __future__ import annotations

import base64
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

import stratus.iam.tables  # noqa: F401  (the projects table data keys refer to)
from stratus.core.database import Base, Database
from stratus.core.errors import Conflict, DataCorrupted, InvalidInput
from stratus.iam.audit import AuditLog
from stratus.iam.tables import AuditEventRow, ProjectRow
from stratus.storage.encryption import load_or_create_master_key, read_key_file
from stratus.storage.key_check import check_value, root_secret, verify_master_key
from stratus.storage.key_rotation import MasterKeyRotation
from stratus.storage.keyring import Keyring
from stratus.storage.master_keys import KeyFiles, MasterKeys
from stratus.storage.schemas import MasterKeyRotationRead
from stratus.storage.tables import DataKeyRow, MasterKeyRotationRow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The tables in a SQLite file, or in a PostgreSQL database of this test's own (where the
    rotation's row locks are real)."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'keys.db'}")
        Base.metadata.create_all(database.engine)
        yield database
        database.dispose()
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(request.getfixturevalue("postgres_url"))
    name = f"keys_{uuid.uuid4().hex[:12]}"
    server = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database = Database(url.set(database=name).render_as_string(hide_password=False))
    try:
        Base.metadata.create_all(database.engine)
        yield database
    finally:
        database.dispose()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Plane:
    """What one start of a control plane holds of the master key."""

    files: KeyFiles
    keys: MasterKeys
    rotation: MasterKeyRotation
    keyring: Keyring
    root: bytes


def start(db: Database, home: Path, *, from_variable: bytes | None = None) -> Plane:
    """As `Platform.build` then `stratus up` do: the key file (or the variable), the next key
    file if there is one, the root secret, the check; then carry on an unfinished rotation."""
    files = KeyFiles(home / "master.key")
    key = from_variable or load_or_create_master_key(None, files.current)
    upcoming = files.read_next()
    keys = MasterKeys(key, *([upcoming] if upcoming is not None else []))
    root = root_secret(db, keys.by_check(), key)
    verify_master_key(db, key)
    rotation = MasterKeyRotation(
        db, keys, files, AuditLog(db), from_variable=from_variable is not None, batch_size=2
    )
    rotation.resume()
    rotation.wait(30)
    return Plane(files, keys, rotation, Keyring(db, keys), root)


def projects(db: Database, count: int) -> list[str]:
    with db.transaction() as session:
        rows = [ProjectRow(name=f"p{i}", description="", labels={}) for i in range(count)]
        session.add_all(rows)
        session.flush()
        return [row.uid for row in rows]


def data_keys(plane: Plane, project_uids: list[str]) -> dict[str, bytes]:
    """Each project's current data key, by id (created on first use)."""
    return dict(plane.keyring.current(uid) for uid in project_uids)


def rotate(plane: Plane) -> MasterKeyRotationRead:
    started = plane.rotation.start("user:admin")
    plane.rotation.wait(30)
    return plane.rotation.get(started.id)


def wrapped_by(db: Database) -> set[str | None]:
    with db.reading() as session:
        return set(session.scalars(select(DataKeyRow.wrapped_by)))


def test_a_rotation_rewraps_every_data_key_and_replaces_the_key_file(
    db: Database, tmp_path: Path
) -> None:
    plane = start(db, tmp_path)
    old = read_key_file(plane.files.current)
    keys = data_keys(plane, projects(db, 5))
    done = rotate(plane)
    assert done.state == "finished" and done.keys_total == done.keys_done == 5
    assert done.started_by == "user:admin" and done.error == "" and done.finished_at
    new = read_key_file(plane.files.current)
    assert new != old and not plane.files.next.exists()
    assert stat.S_IMODE(plane.files.current.stat().st_mode) == 0o600
    assert wrapped_by(db) == {check_value(new)}
    # A restart reads every data key under the new key alone; the root secret did not move.
    again = start(db, tmp_path)
    assert again.root == plane.root == old
    assert {key_id: again.keyring.get(key_id) for key_id in keys} == keys
    with db.reading() as session:
        entry = session.scalars(select(AuditEventRow)).one()
    assert entry.action == "master_key.rotation.finished" and entry.actor == "system:storage"
    assert entry.details["rotation"] == done.id and entry.details["keys_rewrapped"] == 5


def test_the_old_key_is_refused_after_a_rotation(db: Database, tmp_path: Path) -> None:
    plane = start(db, tmp_path)
    old = read_key_file(plane.files.current)
    rotate(plane)
    with pytest.raises(InvalidInput, match="the master key does not match"):
        verify_master_key(db, old)
    with pytest.raises(InvalidInput, match="the master key does not match"):
        root_secret(db, MasterKeys(old).by_check(), old)


def test_reads_go_on_during_a_rotation_and_new_keys_are_wrapped_under_the_new_key(
    db: Database, tmp_path: Path
) -> None:
    plane = start(db, tmp_path)
    uids = projects(db, 6)
    keys = data_keys(plane, uids[:4])
    seen: list[dict[str, bytes]] = []
    later: dict[str, bytes] = {}
    rewrap = MasterKeyRotation._rewrap_batch

    def batch(self: MasterKeyRotation, rotation_id: str, new_check: str) -> int:
        done = rewrap(self, rotation_id, new_check)
        # between two batches: rows under both keys; a cold keyring reads them all
        plane.keyring.clear_cache()
        seen.append({key_id: plane.keyring.get(key_id) for key_id in keys})
        if not later:
            later.update(data_keys(plane, uids[4:]))  # new projects' first keys, mid-way
        return done

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MasterKeyRotation, "_rewrap_batch", batch)
        done = rotate(plane)
    assert done.state == "finished" and len(seen) >= 3 and all(s == keys for s in seen)
    new_check = check_value(read_key_file(plane.files.current))
    assert wrapped_by(db) == {new_check}
    again = start(db, tmp_path)
    assert {k: again.keyring.get(k) for k in [*keys, *later]} == {**keys, **later}


class Crash(Exception):
    """Stands for the process dying at that point: every step before it is committed."""


@pytest.mark.parametrize("step", ["_rewrap_batch", "_switch", "_replace_file", "_finish"])
def test_a_rotation_stopped_at_any_step_is_carried_on_by_the_next_start(
    db: Database, tmp_path: Path, step: str
) -> None:
    plane = start(db, tmp_path)
    old = read_key_file(plane.files.current)
    keys = data_keys(plane, projects(db, 5))
    real = getattr(MasterKeyRotation, step)
    calls: list[tuple[object, ...]] = []

    def crash_on_second_call(self: MasterKeyRotation, *args: object) -> object:
        calls.append(args)
        if len(calls) == (2 if step == "_rewrap_batch" else 1):
            raise Crash(f"killed at {step}")
        return real(self, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MasterKeyRotation, step, crash_on_second_call)
        stopped = rotate(plane)
    assert stopped.state == "interrupted" and f"killed at {step}" in stopped.error
    if step == "_rewrap_batch":
        assert stopped.keys_done == 2 and len(wrapped_by(db)) == 2  # one batch, under each key
    new = read_key_file(plane.files.next) if plane.files.next.exists() else None
    if step in ("_replace_file", "_finish"):
        # the database names the new key; the old key file still opens it (the next start
        # finishes the rotation) and a control plane started meanwhile reads everything
        assert (new or read_key_file(plane.files.current)) != old

    restarted = start(db, tmp_path)
    assert restarted.root == old
    finished = restarted.rotation.get(stopped.id)
    assert finished.state == "finished" and finished.keys_done == 5 and not finished.error
    current = read_key_file(plane.files.current)
    assert current != old and not plane.files.next.exists()
    assert new is None or current == new
    assert wrapped_by(db) == {check_value(current)}
    assert {k: restarted.keyring.get(k) for k in keys} == keys
    assert {k: start(db, tmp_path).keyring.get(k) for k in keys} == keys
    with pytest.raises(InvalidInput, match="the master key does not match"):
        verify_master_key(db, old)


def test_a_stopped_rotation_is_carried_on_by_the_next_rotate(db: Database, tmp_path: Path) -> None:
    plane = start(db, tmp_path)
    keys = data_keys(plane, projects(db, 3))
    real = MasterKeyRotation._rewrap_batch

    def crash(self: MasterKeyRotation, *args: str) -> int:
        raise Crash("the database went away")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MasterKeyRotation, "_rewrap_batch", crash)
        stopped = rotate(plane)
    assert stopped.state == "interrupted"
    assert MasterKeyRotation._rewrap_batch is real
    again = rotate(plane)
    assert again.id == stopped.id and again.state == "finished"
    with db.reading() as session:
        assert session.scalar(select(MasterKeyRotationRow.state)) == "finished"
    assert {k: start(db, tmp_path).keyring.get(k) for k in keys} == keys


def test_a_lost_next_key_file_is_said_at_the_start(db: Database, tmp_path: Path) -> None:
    plane = start(db, tmp_path)
    data_keys(plane, projects(db, 3))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MasterKeyRotation, "_switch", lambda *_: (_ for _ in ()).throw(Crash()))
        stopped = rotate(plane)
    plane.files.next.unlink()
    restarted = start(db, tmp_path)
    status = restarted.rotation.get(stopped.id)
    assert status.state == "interrupted"
    assert "its new master key is not in" in status.error and "master.key.next" in status.error


def test_a_master_key_from_the_variable_is_not_rotated(db: Database, tmp_path: Path) -> None:
    key = os.urandom(32)
    plane = start(db, tmp_path, from_variable=key)
    with pytest.raises(Conflict, match="STRATUS_MASTER_KEY") as refused:
        plane.rotation.start("user:admin")
    assert "master.key" in str(refused.value) and base64.b64encode(key).decode() not in str(
        refused.value
    )
    assert not plane.files.current.exists() and not plane.files.next.exists()


def test_a_database_from_before_root_secrets_keeps_its_derived_keys(
    db: Database, tmp_path: Path
) -> None:
    """Its root secret is the master key it has: everything derived stays the same."""
    key = load_or_create_master_key(None, tmp_path / "master.key")
    assert root_secret(db, MasterKeys(key).by_check(), key) == key  # nothing written yet
    plane = start(db, tmp_path)
    assert plane.root == key
    rotate(plane)
    assert start(db, tmp_path).root == key


def test_master_keys_unwrap_under_either_key() -> None:
    old, new = os.urandom(32), os.urandom(32)
    keys = MasterKeys(old, new)
    data_key = os.urandom(32)
    wrapped, by = keys.wrap(data_key, "dk_1")
    assert by == check_value(old)
    keys.wrap_with(check_value(new))
    rewrapped, by_new = keys.wrap(data_key, "dk_1")
    assert by_new == check_value(new)
    assert keys.unwrap(wrapped, "dk_1", None) == keys.unwrap(rewrapped, "dk_1", by_new)
    assert keys.unwrap(rewrapped, "dk_1", by) == data_key  # a wrong name: the other key tries
    keys.promote(check_value(new))
    with pytest.raises(DataCorrupted):
        keys.unwrap(wrapped, "dk_1", by)
