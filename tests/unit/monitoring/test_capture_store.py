"""The capture store on a real (SQLite) database and blob store: hourly Parquet files, masked
and dropped personal data, windows, erasure of a data subject, retention."""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from sqlalchemy import delete, func, select

from stratus.core.database import Database
from stratus.core.errors import NotFound
from stratus.core.events import EventBus, ProjectDeleting
from stratus.endpoints.schemas import CaptureSpec
from stratus.endpoints.service import CaptureTarget
from stratus.iam.tables import ProjectRow
from stratus.migrations.runner import upgrade
from stratus.monitoring import capture as capture_module
from stratus.monitoring.capture import (
    CapturedRequest,
    CaptureStore,
    EncoderPool,
    IndexJob,
    Window,
    give_back_memory,
    index_file,
)
from stratus.monitoring.tables import CaptureFileRow, CaptureRequestRow, GroundTruthRow
from stratus.serving.capture import (
    MASK,
    SUBJECT,
    CaptureBuffer,
    CaptureRecord,
    Encoded,
    EncodeJob,
    encode,
)
from stratus.storage.blobs import Blobs
from stratus.storage.blobstore import open_store
from stratus.storage.keyring import Keyring
from stratus.storage.tables import BlobRow

HOUR = datetime(2026, 11, 27, 10, tzinfo=UTC)


@dataclass
class FakeEndpoints:
    targets: dict[str, CaptureTarget]

    def capture_targets(self, uids: set[str]) -> dict[str, CaptureTarget]:
        return {u: t for u, t in self.targets.items() if u in uids}


class NoRegistry:
    def get_version(self, project: str, model: str, selector: str) -> Any:
        raise NotFound("no such model")


@dataclass
class World:
    db: Database
    blobs: Blobs
    bus: EventBus
    store: CaptureStore
    project_uid: str
    endpoints: FakeEndpoints

    def send(
        self, when: datetime, customer: Any, email: str, x: float, rid: str, endpoint: str = "e1"
    ) -> None:
        body = {"instances": [{"customer_id": customer, "email": email, "x": x}]}
        self.store.buffer.add(
            CaptureRecord(
                time=when.timestamp(),
                request_id=rid,
                endpoint_uid=endpoint,
                variant="main",
                model_version="m:1",
                protocol="plain",
                content_type="application/json",
                body=orjson.dumps(body),
                response=orjson.dumps({"predictions": [x > 0]}),
                latency_ms=2.0,
            )
        )

    def blob_count(self) -> int:
        with self.db.transaction() as session:
            return int(session.scalar(select(func.count()).select_from(BlobRow)) or 0)

    def files(self) -> list[CaptureFileRow]:
        return self.store.files(self.project_uid, "churn-api")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    db = Database(f"sqlite:///{tmp_path / 'stratus.db'}")
    upgrade(db)
    store = open_store(str(tmp_path / "store"))
    store.ensure_ready()
    blobs = Blobs(db, store, Keyring(db, os.urandom(32)), encrypt=True)
    with db.transaction() as session:
        project = ProjectRow(name="p")
        session.add(project)
        session.flush()
        project_uid = project.uid
    spec = CaptureSpec(sample=1.0, pii=["email"], subject="customer_id", retention_days=7)
    endpoints = FakeEndpoints({"e1": CaptureTarget("e1", project_uid, "p", "churn-api", spec)})
    bus = EventBus()
    capture = CaptureStore(
        db,
        blobs,
        bus,
        endpoints,
        NoRegistry(),
        CaptureBuffer(1000),
        subject_key=b"k" * 32,  # type: ignore[arg-type]
    )
    yield World(db, blobs, bus, capture, project_uid, endpoints)
    db.dispose()


def test_records_are_written_per_hour_with_personal_data_masked(world: World) -> None:
    world.send(HOUR + timedelta(minutes=5), 42, "a@example.com", 1.0, "r1")
    world.send(HOUR + timedelta(minutes=50), 7, "b@example.com", -1.0, "r2")
    world.send(HOUR + timedelta(hours=1, minutes=1), 42, "a@example.com", 2.0, "r3")
    assert world.store.flush() == 3
    files = world.files()
    assert [f.rows for f in files] == [1, 2]  # newest first
    assert files[0].path.startswith("endpoint=churn-api/date=2026-11-27/hour=11/part-")
    assert files[1].path.startswith("endpoint=churn-api/date=2026-11-27/hour=10/part-")
    table = world.store.read(world.project_uid, "churn-api")
    assert table is not None
    assert table["request_id"].to_pylist() == ["r1", "r2", "r3"]
    assert set(table["email"].to_pylist()) == {MASK}
    assert table["customer_id"].to_pylist() == [42, 7, 42]
    assert table["prediction"].to_pylist() == [True, False, True]
    hashes = table[SUBJECT].to_pylist()
    assert hashes[0] == hashes[2] != hashes[1]
    assert "42" not in hashes[0]
    records = world.store.records(table, 2)
    assert [r["request_id"] for r in records] == ["r3", "r2"]
    assert SUBJECT not in records[0]


def test_freed_memory_goes_back_once_a_big_load_is_over(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []

    def trimmed() -> bool:
        calls.append(True)
        return True

    monkeypatch.setattr(capture_module, "give_back_memory", trimmed)
    monkeypatch.setattr(capture_module, "TRIM_AFTER_BYTES", 10**9)
    world.send(HOUR, 1, "a@example.com", 1.0, "r1")
    world.store.flush()
    assert calls == []  # a small flush leaves the allocator alone
    monkeypatch.setattr(capture_module, "TRIM_AFTER_BYTES", 1)
    for i in range(8):
        world.send(HOUR, 2, "b@example.com", 1.0, f"r{i}")
    world.store.flush()
    world.send(HOUR, 2, "b@example.com", 1.0, "r8")
    world.store.flush()
    assert calls == []  # a big batch, then a steady load: the next batch reuses the memory
    world.store.flush()  # the load is gone
    assert calls == [True]
    world.store.flush()
    assert calls == [True]  # once
    assert isinstance(give_back_memory(), bool)  # the real one runs (False off glibc)


def test_one_flush_writes_each_endpoints_records_to_its_own_files(world: World) -> None:
    first = world.endpoints.targets["e1"]
    world.endpoints.targets["e2"] = CaptureTarget(
        "e2", first.project_uid, "p", "other-api", first.capture
    )
    world.send(HOUR, 1, "a", 1.0, "r1")
    world.send(HOUR, 2, "b", 1.0, "r2", endpoint="e2")
    world.send(HOUR, 3, "c", 1.0, "r3")
    world.send(HOUR, 4, "d", 1.0, "r4", endpoint="gone")  # deleted meanwhile: dropped
    assert world.store.flush() == 3
    ours = world.store.read(world.project_uid, "churn-api")
    theirs = world.store.read(world.project_uid, "other-api")
    assert ours is not None and ours["request_id"].to_pylist() == ["r1", "r3"]
    assert theirs is not None and theirs["request_id"].to_pylist() == ["r2"]


def test_dropped_personal_data_is_not_written_at_all(world: World) -> None:
    target = world.endpoints.targets["e1"]
    spec = target.capture.model_copy(update={"pii_action": "drop"})
    world.endpoints.targets["e1"] = CaptureTarget("e1", target.project_uid, "p", "churn-api", spec)
    world.send(HOUR, 1, "secret@example.com", 1.0, "r1")
    world.store.flush()
    row, data = world.store.open_file(world.project_uid, "churn-api", world.files()[0].uid)
    assert b"secret@example.com" not in data
    table = pq.read_table(__import__("pyarrow").BufferReader(data))
    assert "email" not in table.column_names
    assert row.has_subjects


def test_windows_by_time_and_by_rows(world: World) -> None:
    for i in range(10):
        world.send(HOUR + timedelta(minutes=i), i, "x", float(i), f"r{i}")
    world.store.flush()
    since = world.store.read(
        world.project_uid, "churn-api", Window(since=HOUR + timedelta(minutes=7))
    )
    assert since is not None and since["request_id"].to_pylist() == ["r7", "r8", "r9"]
    newest = world.store.read(world.project_uid, "churn-api", Window(rows=4))
    assert newest is not None and newest["request_id"].to_pylist() == ["r6", "r7", "r8", "r9"]
    assert world.store.read(world.project_uid, "other") is None


def test_erasing_a_subject_rewrites_its_files_and_removes_its_labels(world: World) -> None:
    world.send(HOUR, 42, "a", 1.0, "r1")
    world.send(HOUR + timedelta(minutes=1), 7, "b", 1.0, "r2")
    world.send(HOUR + timedelta(hours=2), 42, "a", 1.0, "r3")  # a file of its own
    world.store.flush()
    with world.db.transaction() as session:
        for rid in ("r1", "r2"):
            session.add(
                GroundTruthRow(
                    project_uid=world.project_uid,
                    endpoint="churn-api",
                    request_id=rid,
                    row=0,
                    label=1,
                )
            )
    assert world.blob_count() == 2
    result = world.store.erase(world.project_uid, "42", None)
    assert (result.records_removed, result.files_rewritten, result.ground_truth_removed) == (
        2,
        2,
        1,
    )
    table = world.store.read(world.project_uid, "churn-api")
    assert table is not None and table["customer_id"].to_pylist() == [7]
    assert len(world.files()) == 1  # the file that held only subject 42 is gone
    assert world.blob_count() == 1  # old blobs deleted at once, not at the next sweep
    again = world.store.erase(world.project_uid, "42", None)
    assert again.records_removed == 0


def test_subject_ids_compare_by_value(world: World) -> None:
    assert world.store.subject_hash(42) == world.store.subject_hash(42.0)
    assert world.store.subject_hash(42) == world.store.subject_hash("42")
    assert world.store.subject_hash(42) != world.store.subject_hash(43)


def test_retention_deletes_expired_files_and_their_blobs(world: World) -> None:
    world.send(HOUR, 1, "a", 1.0, "r1")
    world.store.flush()
    assert world.store.expire(datetime.now(UTC) + timedelta(days=6)) == 0
    assert world.store.expire(datetime.now(UTC) + timedelta(days=8)) == 1
    assert world.files() == []
    assert world.blob_count() == 0


def test_a_deleted_project_takes_its_captures_along(world: World) -> None:
    world.send(HOUR, 1, "a", 1.0, "r1")
    world.store.flush()
    with world.db.transaction() as session:
        world.bus.publish(session, ProjectDeleting(world.project_uid, "p"))
        assert session.scalar(select(func.count()).select_from(CaptureFileRow)) == 0
        refs = session.scalars(select(BlobRow.refcount)).all()
    assert refs == [0]


def test_records_of_a_deleted_endpoint_are_dropped(world: World) -> None:
    world.send(HOUR, 1, "a", 1.0, "r1")
    world.endpoints.targets.clear()
    assert world.store.flush() == 0
    assert len(world.store.buffer) == 0


def big_bytes_in_thread_frames(at_least: int) -> list[int]:
    """Sizes of the bytes (or views of bytes) any running thread's frames hold in locals."""
    sizes = []
    for frame in sys._current_frames().values():
        walked: FrameType | None = frame
        while walked is not None:
            for value in walked.f_locals.values():
                if isinstance(value, bytes | bytearray | memoryview):
                    size = memoryview(value).nbytes
                    if size >= at_least:
                        sizes.append(size)
            walked = walked.f_back
    return sizes


def test_the_encoder_process_keeps_no_copy_of_a_batch_between_flushes(world: World) -> None:
    pool = EncoderPool()
    world.store.encoder = pool
    try:
        for i in range(4):
            world.send(HOUR, i, "x" * 2**20, 1.0, f"r{i}")  # 4 MiB of bodies
        assert world.store.flush() == 4
        # multiprocessing's feeder thread would hold the pickled batch until the next flush
        assert big_bytes_in_thread_frames(2**20) == []
    finally:
        pool.close()


def test_records_are_encoded_and_indexed_in_a_worker_process(world: World) -> None:
    pool = EncoderPool(world.db.url)
    world.store.encoder, world.store.indexer = pool, pool.index
    world.store.captured(world.project_uid, "churn-api", [])  # ground truth looks: it indexes
    try:
        world.send(HOUR, 42, "a@example.com", 1.0, "r1")
        world.send(HOUR + timedelta(minutes=1), 7, "b@example.com", -1.0, "r2")
        assert world.store.flush() == 2
        table = world.store.read(world.project_uid, "churn-api")
        assert table is not None and table["request_id"].to_pylist() == ["r1", "r2"]
        assert set(table["email"].to_pylist()) == {MASK}
        assert table[SUBJECT].to_pylist()[0] == world.store.subject_hash(42)
        # the worker indexed the file's requests through its own engine, before flush returned
        assert all(f.indexed for f in world.files())
        with world.db.transaction() as session:
            indexed = session.scalars(select(CaptureRequestRow.request_id)).all()
        assert sorted(indexed) == ["r1", "r2"]
    finally:
        pool.close()


def test_a_batch_goes_to_the_worker_through_a_private_spool_file(
    world: World, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    pool = EncoderPool(world.db.url, spool=spool)
    world.store.encoder = pool
    try:
        world.send(HOUR, 42, "a@example.com", 1.0, "r1")
        assert world.store.flush() == 1
        assert stat.S_IMODE(spool.stat().st_mode) == 0o700
        assert list(spool.iterdir()) == []  # read and deleted by the worker
        (spool / "capture-x.job").write_bytes(b"a batch a killed control plane left")
        EncoderPool(world.db.url, spool=spool)  # at start, before any flush
        assert list(spool.iterdir()) == []
        if hasattr(os, "SCHED_IDLE"):  # the worker runs on CPU time nothing else wants
            assert pool._run(os.sched_getscheduler, 0) == os.SCHED_IDLE
    finally:
        pool.close()


def test_records_being_written_count_as_pending(world: World) -> None:
    seen: list[int] = []

    def encoder(job: EncodeJob) -> Encoded:
        seen.append(world.store.writing)  # the buffer is empty by now
        return encode(job)

    world.store.encoder = encoder
    world.send(HOUR, 1, "a", 1.0, "r1")
    world.send(HOUR, 2, "b", 1.0, "r2")
    assert world.store.flush() == 2
    assert seen == [2] and world.store.writing == 0 and len(world.store.buffer) == 0


def test_request_ids_come_back_only_for_an_endpoint_that_indexes(world: World) -> None:
    world.send(HOUR, 42, "a", 1.0, "r1")
    records = world.store.buffer.drain()
    job = EncodeJob.of(records, signatures={}, request_ids_back=False)
    (part,) = encode(job).files
    assert (part.rows, part.request_ids, part.request_rows) == (1, [], [])
    (part,) = encode(EncodeJob.of(records, signatures={})).files
    assert (part.request_ids, part.request_rows) == (["r1"], [1])


def test_a_spooled_batch_is_read_back_whole(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture_module, "SPOOL_PIECE_RECORDS", 2)
    for i in range(5):
        world.send(HOUR, i, "a", float(i), f"r{i}")
    job = EncodeJob.of(world.store.buffer.drain(), signatures={}, pii=["email"], subject="x")
    spooled = io.BytesIO()
    capture_module.spool_job(job, spooled)
    assert capture_module.unspool_job(spooled.getvalue()) == job  # pieces of 2, 2 and 1


def test_a_pool_without_a_database_refuses_to_index() -> None:
    with pytest.raises(RuntimeError, match="no database"):
        EncoderPool().index(IndexJob("f", "p", "e", ["r1"], [1], ""))


def test_a_file_whose_indexing_failed_is_indexed_when_looked_for(world: World) -> None:
    def broken(job: IndexJob) -> None:
        raise RuntimeError("the encoder process went away")

    world.store.indexer = broken
    world.store.captured(world.project_uid, "churn-api", [])
    world.send(HOUR, 42, "a", 1.0, "r1")
    assert world.store.flush() == 1  # the file is kept
    assert [f.indexed for f in world.files()] == [False]
    found = world.store.captured(world.project_uid, "churn-api", ["r1"])
    assert found == {"r1": CapturedRequest(rows=1, label_kind="bool")}
    assert [f.indexed for f in world.files()] == [True]


def test_files_are_indexed_as_written_once_the_endpoint_has_ground_truth(world: World) -> None:
    def indexed_ids() -> list[str]:
        with world.db.transaction() as session:
            return sorted(session.scalars(select(CaptureRequestRow.request_id)))

    world.send(HOUR, 42, "a", 1.0, "r1")
    world.send(HOUR, 7, "b", 1.0, "r2")
    world.store.flush()
    # no ground truth yet: no row per request (the costliest part of capture)
    assert indexed_ids() == [] and [f.indexed for f in world.files()] == [False]
    found = world.store.captured(world.project_uid, "churn-api", ["r2"])  # the first lookup
    assert found == {"r2": CapturedRequest(rows=1, label_kind="bool")}
    assert indexed_ids() == ["r1", "r2"]  # the files written so far, all indexed once
    world.send(HOUR, 1, "c", 1.0, "r3")
    world.store.flush()
    assert indexed_ids() == ["r1", "r2", "r3"]  # from then on, as they are written


def test_ground_truth_posted_elsewhere_turns_indexing_on(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.send(HOUR, 42, "a", 1.0, "r1")
    world.store.flush()
    assert [f.indexed for f in world.files()] == [False]
    with world.db.transaction() as session:  # by another control plane, say
        session.add(GroundTruthRow(project_uid=world.project_uid, endpoint="churn-api",
                                   request_id="r1", row=0, label=True))  # fmt: skip
    world.send(HOUR, 7, "b", 1.0, "r2")
    world.store.flush()  # checked less than a minute ago: not yet
    assert sorted(f.indexed for f in world.files()) == [False, False]
    monkeypatch.setattr(capture_module, "LABELLED_RECHECK_SECONDS", 0.0)
    world.send(HOUR, 1, "c", 1.0, "r3")
    world.store.flush()
    assert sorted(f.indexed for f in world.files()) == [False, False, True]


def test_a_file_is_indexed_once(world: World) -> None:
    world.store.captured(world.project_uid, "churn-api", [])
    world.send(HOUR, 42, "a", 1.0, "r1")
    world.store.flush()
    (file,) = world.files()
    again = IndexJob(file.uid, world.project_uid, "churn-api", ["r1"], [1], "bool")
    with world.db.transaction() as session:
        assert index_file(session, again) is False  # indexed when written
    with world.db.transaction() as session:
        assert session.scalars(select(CaptureRequestRow.request_id)).all() == ["r1"]


def test_captured_requests_are_found_even_while_still_buffered(world: World) -> None:
    world.send(HOUR, 42, "a", 1.0, "r1")
    world.store.flush()
    world.send(HOUR, 7, "b", -1.0, "r2")  # answered a moment ago: not written yet
    found = world.store.captured(world.project_uid, "churn-api", ["r1", "r2", "never"])
    assert found == {
        "r1": CapturedRequest(rows=1, label_kind="bool"),
        "r2": CapturedRequest(rows=1, label_kind="bool"),
    }
    assert len(world.store.buffer) == 0  # written out to answer
    assert world.store.captured(world.project_uid, "other-endpoint", ["r1"]) == {}


def test_expired_and_erased_requests_are_no_longer_captured(world: World) -> None:
    world.send(HOUR, 42, "a", 1.0, "r1")
    world.send(HOUR + timedelta(hours=3), 7, "b", 1.0, "r2")
    world.store.flush()
    world.store.erase(world.project_uid, "42", None)
    assert set(world.store.captured(world.project_uid, "churn-api", ["r1", "r2"])) == {"r2"}
    world.store.expire(datetime.now(UTC) + timedelta(days=8))
    assert world.store.captured(world.project_uid, "churn-api", ["r2"]) == {}


def test_files_written_before_the_index_are_indexed_when_looked_for(world: World) -> None:
    world.send(HOUR, 42, "a", 1.0, "r1")
    world.store.flush()
    with world.db.transaction() as session:  # as migration 0016 leaves an older file
        session.execute(delete(CaptureRequestRow))
        for row in session.scalars(select(CaptureFileRow)):
            row.indexed = False
    found = world.store.captured(world.project_uid, "churn-api", ["r1"])
    assert found == {"r1": CapturedRequest(rows=1, label_kind="bool")}
    assert all(f.indexed for f in world.files())
