"""A job fetches a ready dataset version with the data service's grant alone; the folder it
gets is named by the version's content hash, and a pending version has no grant."""

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
from stratus.data import schemas as s
from stratus.data.service import DataService
from stratus.iam.tables import ProjectRow
from stratus.migrations.runner import upgrade
from stratus.storage.blobs import Blobs
from stratus.storage.blobstore import open_store
from stratus.storage.grants import fetch
from stratus.storage.keyring import Keyring

FILES = {
    "train/part-0.csv": b"x,y\n1,2\n3,4\n",
    "train/part-1.csv": b"x,y\n5,6\n",
}


def project_uid(session: Session, name: str) -> str:
    uid = session.scalar(select(ProjectRow.uid).where(ProjectRow.name == name))
    if uid is None:
        raise NotFound(f"project {name!r} not found")
    return uid


@pytest.fixture
def data(tmp_path: Path) -> Iterator[DataService]:
    db = Database(f"sqlite:///{tmp_path / 'stratus.db'}")
    upgrade(db)
    with db.transaction() as session:
        session.add(ProjectRow(name="p"))
    store = open_store(str(tmp_path / "store"), name_key=b"n" * 32)
    store.ensure_ready()
    blobs = Blobs(db, store, Keyring(db, os.urandom(32)), encrypt=True)
    try:
        yield DataService(db, blobs, EventBus(), project_uid)
    finally:
        db.dispose()


def push(data: DataService, commit: bool = True) -> int:
    data.create("p", s.DatasetCreate(name="feed"))
    entries = [
        s.FileEntry(path=path, sha256=hashlib.sha256(body).hexdigest(), size=len(body))
        for path, body in FILES.items()
    ]
    version, _ = data.create_version("p", "feed", s.VersionCreate(files=entries), actor="alice")
    for path, body in FILES.items():
        upload = data.begin_upload("p", "feed", version.version, path)
        upload.write(body)
        data.finish_upload(upload)
    if commit:
        data.commit_version("p", "feed", version.version)
    return version.version


def test_a_granted_dataset_version_fetches_whole(data: DataService, tmp_path: Path) -> None:
    number = push(data)
    read, grant = data.grant("p", "feed", str(number), ttl_seconds=60)
    assert read.version == number and read.rows == 3
    folder = fetch(grant, tmp_path / "cache")
    assert folder.name == grant.digest == read.content_sha256
    assert {p: (folder / p).read_bytes() for p in FILES} == FILES
    assert data.grant("p", "feed", "latest")[1].digest == grant.digest


def test_a_pending_dataset_version_has_no_grant(data: DataService) -> None:
    number = push(data, commit=False)
    with pytest.raises(Conflict, match="feed:1 is not committed yet"):
        data.grant("p", "feed", str(number))
