"""Dataset and alert triggers go through the outbox: a row per watching pipeline in the
transaction of the cause (none if it rolls back), delivered at least once, and a redelivery —
after a control plane died between starting the run and clearing the row — starts no second
run (the run keeps the row's uid as its trigger key)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from stratus.core.database import Database
from stratus.core.errors import NotFound
from stratus.core.events import AlertFired, DatasetVersionCommitted, EventBus
from stratus.core.outbox import Outbox
from stratus.data.service import DataService
from stratus.iam.principals import Principal
from stratus.iam.tables import ProjectRow
from stratus.migrations.runner import upgrade
from stratus.pipelines import schemas as s
from stratus.pipelines.controller import (
    ALERT_TRIGGER,
    DATASET_TRIGGER,
    TRIGGERS,
    PipelineController,
)
from stratus.pipelines.service import PipelineService
from stratus.storage.blobs import Blobs
from stratus.storage.blobstore import open_store
from stratus.storage.keyring import Keyring

OWNER = Principal(kind="user", uid="u1", name="alice", is_admin=True)


def project_uid(session: Session, name: str) -> str:
    uid = session.scalar(select(ProjectRow.uid).where(ProjectRow.name == name))
    if uid is None:
        raise NotFound(f"project {name!r} not found")
    return uid


def project_name(session: Session, uid: str) -> str:
    row = session.get(ProjectRow, uid)
    return row.name if row is not None else ""


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.db = Database(f"sqlite:///{tmp_path / 'stratus.db'}")
        upgrade(self.db)
        with self.db.transaction() as session:
            session.add(ProjectRow(name="p"))
        store = open_store(str(tmp_path / "store"))
        store.ensure_ready()
        blobs = Blobs(self.db, store, Keyring(self.db, os.urandom(32)), encrypt=True)
        self.bus = EventBus()
        data = DataService(self.db, blobs, self.bus, project_uid)
        self.pipelines = PipelineService(
            self.db, blobs, self.bus, data, cast(Any, None), project_uid, project_name
        )
        self.outbox = Outbox(self.db)
        none = cast(Any, None)
        self.controller = PipelineController(
            self.pipelines, data, none, none, none, none, self.outbox
        )
        self.controller.watch(self.bus)

    def apply(self, name: str, **triggers: Any) -> None:
        spec = {
            "name": name,
            "triggers": triggers,
            "steps": [{"name": "check", "type": "validate", "dataset": "feed:1",
                       "rules": {"rows": {"min": 1}}}],
        }  # fmt: skip
        self.pipelines.apply("p", s.PipelineApply.model_validate(spec), OWNER)

    def publish(self, event: Any) -> None:
        with self.db.transaction() as session:
            self.bus.publish(session, event)

    def runs(self, name: str) -> list[s.RunRead]:
        return self.pipelines.list_runs("p", name, None, None)[0]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    try:
        yield world
    finally:
        world.db.dispose()


def test_a_dataset_trigger_is_a_row_with_its_cause_and_starts_one_run(world: World) -> None:
    world.apply("on-data", datasets=["feed"])
    world.apply("other", datasets=["elsewhere"])
    with pytest.raises(RuntimeError):  # the cause rolls back: so does its trigger
        with world.db.transaction() as session:
            world.bus.publish(session, DatasetVersionCommitted("p", "feed", 1))
            raise RuntimeError("the commit failed")
    assert world.outbox.pending(TRIGGERS) == []

    world.publish(DatasetVersionCommitted("p", "feed", 2))
    (row,) = world.outbox.pending(TRIGGERS)
    assert (row.topic, row.payload["pipeline"], row.payload["version"]) == (
        DATASET_TRIGGER, "on-data", 2,
    )  # fmt: skip

    # A control plane claims it, starts the run, and dies before clearing the row...
    (claimed,) = world.outbox.claim(TRIGGERS)
    world.pipelines.start_dataset_run("p", "on-data", "feed", 2, f"outbox:{claimed.uid}")
    assert world.outbox.claim(TRIGGERS) == []  # leased
    # ...the next one releases and delivers it again: the run is found, not started twice.
    assert world.outbox.release(TRIGGERS) == 1
    (again,) = world.outbox.claim(TRIGGERS)
    assert (again.id, again.attempts) == (claimed.id, 2)
    world.controller._trigger(again)
    assert world.outbox.pending(TRIGGERS) == []
    (run,) = world.runs("on-data")
    assert (run.trigger, run.trigger_detail) == ("dataset", {"dataset": "feed:2"})
    assert world.runs("other") == []

    # The next version is another trigger (SQLite hands the deleted row's id out again: the
    # key is the row's uid, so it is not mistaken for the one delivered).
    world.publish(DatasetVersionCommitted("p", "feed", 3))
    (third,) = world.outbox.claim(TRIGGERS)
    assert third.id == again.id and third.uid != again.uid
    world.controller._trigger(third)
    assert [r.trigger_detail["dataset"] for r in world.runs("on-data")] == ["feed:3", "feed:2"]


def test_an_alert_trigger_is_delivered_once_and_a_gone_pipeline_drops_it(world: World) -> None:
    world.apply("on-alert", alerts=["disk-full"])
    with world.db.transaction() as session:
        uid = project_uid(session, "p")
    fired = AlertFired(project_uid=uid, project="p", rule="disk-full",
                       labels=(("instance", "db-1"),), value=0.97)  # fmt: skip
    world.publish(fired)
    (message,) = world.outbox.claim(TRIGGERS)
    assert message.topic == ALERT_TRIGGER
    world.controller._trigger(message)
    world.controller._trigger(message)  # delivered twice: still one run
    (run,) = world.runs("on-alert")
    assert run.trigger_detail == {"alert": "disk-full", "labels": {"instance": "db-1"},
                                  "value": 0.97}  # fmt: skip
    assert world.outbox.pending(TRIGGERS) == []

    world.apply("gone", alerts=["disk-slow"])
    world.publish(AlertFired(project_uid=uid, project="p", rule="disk-slow", labels=(),
                             value=None))  # fmt: skip
    world.pipelines.delete("p", "gone")  # before the trigger is delivered
    (message,) = world.outbox.claim(TRIGGERS)
    world.controller._trigger(message)  # NotFound: dropped, not retried for ever
    assert world.outbox.pending(TRIGGERS) == []
