"""What the tracking unit tests share: a tracking service on a throwaway database (SQLite by
default, migrated) and a local blob store."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from stratus.core.database import Database
from stratus.core.errors import NotFound
from stratus.core.events import EventBus
from stratus.iam.tables import ProjectRow
from stratus.migrations.runner import upgrade
from stratus.storage.blobs import Blobs
from stratus.storage.blobstore import open_store
from stratus.storage.keyring import Keyring
from stratus.storage.tables import BlobRow
from stratus.tracking.service import TrackingService


def project_uid(session: Session, name: str) -> str:
    uid = session.scalar(select(ProjectRow.uid).where(ProjectRow.name == name))
    if uid is None:
        raise NotFound(f"project {name!r} not found")
    return uid


@dataclass
class World:
    db: Database
    blobs: Blobs
    bus: EventBus
    tracking: TrackingService

    def add_project(self, name: str) -> str:
        with self.db.transaction() as session:
            row = ProjectRow(name=name)
            session.add(row)
            session.flush()
            return row.uid

    def refcounts(self) -> dict[str, int]:
        with self.db.transaction() as session:
            return {r.sha256: r.refcount for r in session.scalars(select(BlobRow))}


def make_world(tmp_path: Path, url: str | None = None) -> World:
    db = Database(url or f"sqlite:///{tmp_path / 'stratus.db'}")
    upgrade(db)
    store = open_store(str(tmp_path / "store"))
    store.ensure_ready()
    blobs = Blobs(db, store, Keyring(db, os.urandom(32)), encrypt=True)
    bus = EventBus()
    world = World(db, blobs, bus, TrackingService(db, blobs, bus, project_uid=project_uid))
    world.add_project("p")
    world.add_project("q")
    return world
