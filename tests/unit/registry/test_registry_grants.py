"""A worker fetches a committed model version with the registry's grant alone, into the same
files `materialize` writes; a pending version has no grant."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from stratus.core.database import Database
from stratus.core.errors import Conflict, NotFound
from stratus.core.events import EventBus
from stratus.iam.tables import ProjectRow
from stratus.migrations.runner import upgrade
from stratus.registry import schemas as s
from stratus.registry.service import RegistryService
from stratus.storage.blobs import Blobs
from stratus.storage.blobstore import open_store
from stratus.storage.grants import COMPLETE_MARKER, fetch
from stratus.storage.keyring import Keyring

FILES = {
    "model.skops": os.urandom(300_000),
    "extra/vocabulary.txt": b"alpha\nbeta\n",
    "extra/empty": b"",
}


def project_uid(session: Session, name: str) -> str:
    uid = session.scalar(select(ProjectRow.uid).where(ProjectRow.name == name))
    if uid is None:
        raise NotFound(f"project {name!r} not found")
    return uid


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryService]:
    db = Database(f"sqlite:///{tmp_path / 'stratus.db'}")
    upgrade(db)
    with db.transaction() as session:
        session.add(ProjectRow(name="p"))
    store = open_store(str(tmp_path / "store"), name_key=b"n" * 32)
    store.ensure_ready()
    blobs = Blobs(db, store, Keyring(db, os.urandom(32)), encrypt=True)
    try:
        yield RegistryService(db, blobs, EventBus(), project_uid)
    finally:
        db.dispose()


def push(registry: RegistryService, files: dict[str, bytes], commit: bool = True) -> int:
    entries = [
        s.FileEntry(path=path, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        for path, data in files.items()
    ]
    version = registry.create_version(
        "p", "m", s.VersionCreate(files=entries), actor="alice", can_trust=False
    )
    for f in version.files:
        if not f.stored:
            upload = registry.begin_upload("p", "m", version.version, f.path)
            upload.write(files[f.path])
            registry.finish_upload(upload)
    if commit:
        registry.commit_version("p", "m", version.version)
    return version.version


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".stratus-")
    }


def test_a_granted_version_fetches_into_what_materialize_writes(
    registry: RegistryService, tmp_path: Path
) -> None:
    registry.create_model("p", s.ModelCreate(name="m"))
    number = push(registry, FILES)
    read, grant = registry.grant("p", "m", "latest", ttl_seconds=300)
    assert read.version == number and read.state == "ready"
    assert sorted(f.path for f in grant.files) == sorted(FILES)
    fetched = fetch(grant, tmp_path / "node-cache")
    _, materialized = registry.materialize("p", "m", str(number), tmp_path / "model-cache")
    assert tree(fetched) == tree(materialized) == FILES
    assert (fetched / COMPLETE_MARKER).is_file()

    # A second version sharing the weights: from the cache, only the changed file is fetched.
    changed = {**FILES, "extra/vocabulary.txt": b"alpha\nbeta\ngamma\n"}
    push(registry, changed)
    _, second = registry.grant("p", "m", "2")
    with registry.db.transaction() as session:
        uid = project_uid(session, "p")
    for f in grant.files:  # the store no longer holds any of version 1's blobs
        registry.blobs.store.delete(uid, f.sha256)
    assert tree(fetch(second, tmp_path / "node-cache")) == changed


def test_a_pending_version_has_no_grant(registry: RegistryService) -> None:
    registry.create_model("p", s.ModelCreate(name="m"))
    number = push(registry, FILES, commit=False)
    with pytest.raises(Conflict, match="m:1 is not committed yet"):
        registry.grant("p", "m", str(number))
