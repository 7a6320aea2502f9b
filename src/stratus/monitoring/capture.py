"""Captured requests at rest: hourly Parquet files in the object store, one row per file in
`capture_files`.

The gateway only appends records to a `CaptureBuffer`; `CaptureStore.flush` (every
`monitoring.capture_flush_seconds`, on the writer thread) drains it and has the encoder
process (`EncoderPool`) parse the records (`serving.capture.encode`), mask or drop the `pii`
inputs, add a keyed hash of the data subject, and write one Parquet file per endpoint and
hour; for an endpoint with ground truth, the file's requests are then indexed in
`capture_requests` (also by the encoder process). A file is a blob like any other
(content-addressed, encrypted with the project's key); its row names it by a Hive-style
partition path, `endpoint=NAME/date=YYYY-MM-DD/hour=HH/part-UID.parquet`, which is also the
layout `stratus monitors capture --download` writes on disk.

Retention deletes files past their endpoint's `retention_days` (fixed when written). Erasing
a data subject rewrites each file holding their records without them (a new blob, the row
repointed in one transaction) and deletes the old blob at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import logging
import multiprocessing
import operator
import os
import pickle
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.orm import Session

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.errors import NotFound
from stratus.core.events import EventBus, ProjectDeleting
from stratus.core.ids import new_id
from stratus.core.interrupts import children_ignore_ctrl_c, ignore_ctrl_c
from stratus.core.loop import BackgroundLoop
from stratus.endpoints.service import CaptureTarget, EndpointService
from stratus.monitoring import schemas as s
from stratus.monitoring.tables import CaptureFileRow, CaptureRequestRow, GroundTruthRow
from stratus.registry.references import parse_ref
from stratus.registry.service import RegistryService
from stratus.registry.signatures import Signature
from stratus.serving.capture import (
    PREDICTION_COLUMNS as PREDICTION_COLUMNS,  # where a prediction is, first found wins
)
from stratus.serving.capture import (
    RECORD_COLUMNS,
    SUBJECT,
    CaptureBuffer,
    CaptureRecord,
    Columns,
    Encoded,
    EncodedFile,
    EncodeJob,
    encode,
    label_kind,
    request_counts,
    subject_hash,
)
from stratus.storage.blobs import Blobs

log = logging.getLogger("stratus.capture")

_HIDDEN = (SUBJECT,)
_ENDPOINT_UID = operator.itemgetter(CaptureRecord._fields.index("endpoint_uid"))
#: How often an endpoint without ground truth is checked for some (by another control plane)
LABELLED_RECHECK_SECONDS = 60.0
#: Once batches of at least this many bytes of records are over, freed memory goes back to the
#: system: glibc keeps a freed heap (the records are many small objects) for reuse otherwise,
#: and the control plane would stay at its highest buffer for good (`CaptureStore._trim_after`).
TRIM_AFTER_BYTES = 8 * 2**20


def give_back_memory() -> bool:
    """Return freed heap memory to the system (glibc's `malloc_trim`; a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    return bool(trim(0))


@dataclass(frozen=True)
class Window:
    """Which captured rows to read: a time range, and/or the newest `rows`."""

    since: datetime | None = None
    until: datetime | None = None
    rows: int | None = None


class CaptureStore:
    def __init__(
        self,
        db: Database,
        blobs: Blobs,
        bus: EventBus,
        endpoints: EndpointService,
        registry: RegistryService,
        buffer: CaptureBuffer,
        subject_key: bytes,
        encoder: Callable[[EncodeJob], Encoded] = encode,
        indexer: Callable[[IndexJob], None] | None = None,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.endpoints = endpoints
        self.registry = registry
        self.buffer = buffer
        self._subject_key = subject_key
        self.encoder = encoder  # in this thread, or in a worker process (`EncoderPool`)
        # a written file's requests into `capture_requests`: in this thread, or in the worker
        self.indexer = indexer or self._index_here
        self._signatures: dict[tuple[str, str], Signature | None] = {}
        self._flushing = threading.Lock()
        self._peak_held = 0  # the biggest batch (bytes) since memory was last given back
        # (project uid, endpoint) -> True once it has ground truth, else when last checked
        self._labelled: dict[tuple[str, str], bool | float] = {}
        self.written = 0  # rows written since start
        self.writing = 0  # records taken from the buffer by the flush under way
        self.skipped = 0  # records that could not be parsed back
        bus.subscribe(ProjectDeleting, self._forget_project)

    # --- writing -----------------------------------------------------------------------------

    def flush(self) -> int:
        """Write out everything buffered; the number of rows written."""
        with self._flushing:
            records = self.buffer.drain()
            held = self.buffer.drained_bytes
            self.writing = len(records)
            try:
                return self._write(records) if records else 0
            finally:
                del records
                self.writing = 0
                self._trim_after(held)

    def _trim_after(self, held: int) -> None:
        """Give freed memory back once the load that needed it has gone: after a batch of at
        least `TRIM_AFTER_BYTES`, at the first flush that holds under a quarter of the biggest
        since the last trim. Under steady load the next batch reuses the memory, and trimming
        every flush would cost the gateway twice (`malloc_trim` holds the allocator's lock
        for milliseconds, and each trimmed page is faulted in again)."""
        if held >= TRIM_AFTER_BYTES:
            self._peak_held = max(self._peak_held, held)
        elif self._peak_held and held < self._peak_held // 4:
            self._peak_held = 0
            give_back_memory()

    def _write(self, records: list[CaptureRecord]) -> int:
        by_endpoint: dict[str, list[CaptureRecord]] = defaultdict(list)
        uids = list(map(_ENDPOINT_UID, records))
        if uids.count(uids[0]) == len(uids):  # one endpoint's (the usual): no loop in Python
            by_endpoint[uids[0]] = records
        else:
            for uid, record in zip(uids, records, strict=True):
                by_endpoint[uid].append(record)
        targets = self.endpoints.capture_targets(set(by_endpoint))
        written = 0
        for uid, batch in by_endpoint.items():
            target = targets.get(uid)
            if target is None:
                continue  # the endpoint was deleted meanwhile
            try:
                written += self._write_endpoint(target, batch)
            except Exception:  # one endpoint's failure must not lose the others' records
                log.exception(
                    "writing %d captured records of %s/%s failed; they are lost",
                    len(batch),
                    target.project,
                    target.endpoint,
                )
        self.written += written
        return written

    def _write_endpoint(self, target: CaptureTarget, records: list[CaptureRecord]) -> int:
        signatures: dict[str, dict[str, Any] | None] = {}
        for model_version in {r.model_version for r in records}:
            signature = self._signature(target.project, model_version)
            signatures[model_version] = None if signature is None else signature.model_dump()
        spec = target.capture
        index = self._wants_index(target.project_uid, target.endpoint)
        job = EncodeJob.of(
            records,
            signatures=signatures,
            pii=list(spec.pii),
            pii_action=spec.pii_action,
            subject=spec.subject,
            subject_key=self._subject_key,
            passthrough=list(target.passthrough),
            request_ids_back=index,
        )
        encoded = self.encoder(job)
        self.skipped += encoded.skipped
        if encoded.skipped:
            log.warning(
                "%d captured records of %s/%s could not be read back and were not kept",
                encoded.skipped,
                target.project,
                target.endpoint,
            )
        for part in encoded.files:
            self._write_file(target, part, index)
        return sum(part.rows for part in encoded.files)

    def _write_file(self, target: CaptureTarget, part: EncodedFile, index: bool) -> None:
        """The file's blob and row in one transaction, then, for an endpoint that has ground
        truth (`_wants_index`), its requests indexed (one row a request: thousands a second
        under load, so by the encoder process when there is one, off this process's GIL). A
        file not indexed (or whose indexing failed) stays `indexed = false` and is indexed
        when ground truth looks for one of its requests."""
        info = self.blobs.write(target.project_uid, [part.data])
        uid = new_id()
        now = utcnow()
        with self.db.transaction() as session:
            self.blobs.acquire(session, target.project_uid, info, charged=False)
            session.add(
                CaptureFileRow(
                    uid=uid,
                    project_uid=target.project_uid,
                    endpoint=target.endpoint,
                    endpoint_uid=target.endpoint_uid,
                    hour=part.hour,
                    path=partition_path(target.endpoint, part.hour, uid),
                    sha256=info.sha256,
                    size=info.size,
                    rows=part.rows,
                    first_time=part.first_time,
                    last_time=part.last_time,
                    has_subjects=part.has_subjects,
                    expires_at=now + timedelta(days=target.capture.retention_days),
                    created_at=now,
                    indexed=False,
                )
            )
        if not index:
            return  # indexed if ground truth ever looks for its requests
        job = IndexJob(
            uid,
            target.project_uid,
            target.endpoint,
            part.request_ids,
            part.request_rows,
            part.label_kind,
        )
        try:
            self.indexer(job)
        except Exception as e:  # the file is kept; its requests are indexed when looked for
            log.warning(
                "indexing the %d requests of capture file %s of %s/%s failed (%s); they are "
                "indexed when ground truth looks for them",
                len(job.request_ids),
                uid,
                target.project,
                target.endpoint,
                e,
            )

    def _wants_index(self, project_uid: str, endpoint: str) -> bool:
        """Whether an endpoint's new files are indexed as they are written: once it has had
        ground truth (labels usually follow their requests for good once they start). Until
        then, nobody looks a request up, and a row per request in the database is the
        costliest part of capture (a random key into a B-tree that outgrows the page cache);
        the first lookup indexes the files written so far (`captured`)."""
        key = (project_uid, endpoint)
        seen = self._labelled.get(key)
        if seen is True:
            return True
        now = time.monotonic()
        if seen is not None and now - float(seen) < LABELLED_RECHECK_SECONDS:
            return False
        with self.db.transaction() as session:
            labelled = (
                session.scalar(
                    select(GroundTruthRow.id)
                    .where(
                        GroundTruthRow.project_uid == project_uid,
                        GroundTruthRow.endpoint == endpoint,
                    )
                    .limit(1)
                )
                is not None
            )
        self._labelled[key] = True if labelled else now
        return labelled

    def _index_here(self, job: IndexJob) -> None:
        with self.db.transaction() as session:
            index_file(session, job)

    def _signature(self, project: str, model_version: str) -> Signature | None:
        key = (project, model_version)
        if key not in self._signatures:
            ref = parse_ref(model_version)
            signature: Signature | None = None
            try:
                read = self.registry.get_version(project, ref.model, ref.selector or "latest")
                if read.signature:
                    signature = Signature.model_validate(read.signature)
            except NotFound:
                pass
            self._signatures[key] = signature
        return self._signatures[key]

    # --- which requests were captured --------------------------------------------------------

    def captured(
        self, project_uid: str, endpoint: str, request_ids: Iterable[str]
    ) -> dict[str, CapturedRequest]:
        """What was captured of these requests of the endpoint (those never captured, or
        expired or erased since, are missing from the answer).

        A request answered a moment ago may still wait in the buffer (the writer flushes every
        `capture_flush_seconds`): when some are not found, the buffer is flushed now and they
        are looked for again, so a label posted right after its request is never refused for
        that. Files not indexed yet are indexed then too: those of an endpoint that had no
        ground truth before (the first lookup indexes them all, once; from then on its files
        are indexed as they are written, `_wants_index`), and any whose indexing failed.
        """
        wanted = sorted(set(request_ids))
        self._labelled[(project_uid, endpoint)] = True  # index its files from now on
        found = self._lookup(project_uid, endpoint, wanted)
        if len(found) < len(wanted):
            missing = [r for r in wanted if r not in found]
            # (the writer may be writing them now: `flush` waits for it, and then they are in)
            self.flush()
            self._index_unindexed_files(project_uid, endpoint)
            found.update(self._lookup(project_uid, endpoint, missing))
        return found

    def _lookup(
        self, project_uid: str, endpoint: str, request_ids: Sequence[str]
    ) -> dict[str, CapturedRequest]:
        found: dict[str, CapturedRequest] = {}
        with self.db.transaction() as session:
            for start in range(0, len(request_ids), 500):
                rows = session.execute(
                    select(
                        CaptureRequestRow.request_id,
                        CaptureRequestRow.rows,
                        CaptureRequestRow.label_kind,
                    ).where(
                        CaptureRequestRow.project_uid == project_uid,
                        CaptureRequestRow.endpoint == endpoint,
                        CaptureRequestRow.request_id.in_(request_ids[start : start + 500]),
                    )
                ).all()
                for request_id, rows_of, kind in rows:
                    seen = found.get(request_id)
                    if seen is None or rows_of > seen.rows:  # an id a caller sent twice
                        found[request_id] = CapturedRequest(rows_of, kind)
        return found

    def _index_unindexed_files(self, project_uid: str, endpoint: str) -> int:
        """Index the requests of the endpoint's files that are not yet (written before
        `capture_requests` existed, or whose indexing after writing failed); how many files
        that took."""
        with self.db.transaction() as session:
            unindexed = session.scalars(
                select(CaptureFileRow).where(
                    CaptureFileRow.project_uid == project_uid,
                    CaptureFileRow.endpoint == endpoint,
                    CaptureFileRow.indexed.is_(False),
                )
            ).all()
            session.expunge_all()
        for row in unindexed:
            table = self._open(project_uid, row)
            ids, counts = request_counts(table)
            with self.db.transaction() as session:
                index_file(
                    session,
                    IndexJob(row.uid, project_uid, endpoint, ids, counts, label_kind(table)),
                )
        return len(unindexed)

    def subject_hash(self, value: Any) -> str:
        """The keyed hash of a data subject's identifier, as the capture files hold it."""
        return subject_hash(self._subject_key, value)

    # --- reading -----------------------------------------------------------------------------

    def files(
        self, project_uid: str, endpoint: str, window: Window = Window()
    ) -> list[CaptureFileRow]:
        """The endpoint's files that may hold rows of the window, newest first."""
        with self.db.transaction() as session:
            query = select(CaptureFileRow).where(
                CaptureFileRow.project_uid == project_uid, CaptureFileRow.endpoint == endpoint
            )
            if window.since is not None:
                query = query.where(CaptureFileRow.last_time >= window.since)
            if window.until is not None:
                query = query.where(CaptureFileRow.first_time <= window.until)
            rows = session.scalars(
                query.order_by(CaptureFileRow.last_time.desc(), CaptureFileRow.uid.desc())
            ).all()
            session.expunge_all()
            return list(rows)

    def read(
        self,
        project_uid: str,
        endpoint: str,
        window: Window = Window(),
        columns: Sequence[str] | None = None,
        files: Sequence[CaptureFileRow] | None = None,
    ) -> pa.Table | None:
        """The endpoint's captured rows in the window, oldest first (None: there are none);
        `files` are the window's files when the caller has listed them already."""
        tables: list[pa.Table] = []
        count = 0
        for row in files if files is not None else self.files(project_uid, endpoint, window):
            table = self._open(project_uid, row)
            mask = None
            if window.since is not None:
                mask = pc.greater_equal(table["time"], pa.scalar(window.since, table["time"].type))
            if window.until is not None:
                before = pc.less_equal(table["time"], pa.scalar(window.until, table["time"].type))
                mask = before if mask is None else pc.and_(mask, before)
            if mask is not None:
                table = table.filter(mask)
            if columns is not None:
                table = table.select([c for c in table.column_names if c in columns])
            if table.num_rows:
                tables.append(table)
                count += table.num_rows
            if window.rows is not None and count >= window.rows:
                break
        if not tables:
            return None
        tables.reverse()
        merged = pa.concat_tables(tables, promote_options="permissive")
        merged = merged.sort_by([("time", "ascending")])
        if window.rows is not None and merged.num_rows > window.rows:
            merged = merged.slice(merged.num_rows - window.rows)
        return merged

    def open_file(self, project_uid: str, endpoint: str, uid: str) -> tuple[CaptureFileRow, bytes]:
        with self.db.transaction() as session:
            row = session.get(CaptureFileRow, uid)
            if row is None or row.project_uid != project_uid or row.endpoint != endpoint:
                raise NotFound(f"endpoint {endpoint!r} has no capture file {uid!r}")
            session.expunge(row)
        return row, b"".join(self.blobs.open(project_uid, row.sha256))

    def _open(self, project_uid: str, row: CaptureFileRow) -> pa.Table:
        data = b"".join(self.blobs.open(project_uid, row.sha256))
        return pq.read_table(pa.BufferReader(data))

    @staticmethod
    def records(table: pa.Table | None, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` rows as JSON-safe objects, newest first (the subject hash is not
        shown)."""
        if table is None or limit <= 0:
            return []
        tail = table.slice(max(0, table.num_rows - limit))
        tail = tail.drop_columns([c for c in _HIDDEN if c in tail.column_names])
        rows: list[dict[str, Any]] = tail.to_pylist()
        rows.reverse()
        for row in rows:
            row["time"] = as_utc(row["time"]).isoformat()
            for key, value in row.items():
                if isinstance(value, float) and not np.isfinite(value):
                    row[key] = None
        return rows

    # --- retention and erasure ------------------------------------------------------------

    def captured_bytes(self) -> list[tuple[str, str, int]]:
        """(project, endpoint, bytes) of the capture files each endpoint keeps (for metering:
        captured data is stored data, attributed to its endpoint)."""
        from sqlalchemy import func

        from stratus.iam.tables import ProjectRow

        with self.db.transaction() as session:
            rows = session.execute(
                select(ProjectRow.name, CaptureFileRow.endpoint, func.sum(CaptureFileRow.size))
                .join(ProjectRow, ProjectRow.uid == CaptureFileRow.project_uid)
                .group_by(ProjectRow.name, CaptureFileRow.endpoint)
            ).all()
            return [(project, endpoint, int(size or 0)) for project, endpoint, size in rows]

    def expire(self, now: datetime | None = None) -> int:
        """Delete files past their retention; the number deleted."""
        cutoff = now or utcnow()
        with self.db.transaction() as session:
            rows = session.scalars(
                select(CaptureFileRow).where(CaptureFileRow.expires_at <= cutoff).limit(1000)
            ).all()
            gone = [(row.project_uid, row.sha256) for row in rows]
            for row in rows:
                self.blobs.release(session, row.project_uid, row.sha256)
                session.delete(row)
        for project_uid, sha in gone:
            self.blobs.purge(project_uid, sha)
        if gone:
            log.info("deleted %d capture files past their retention", len(gone))
        return len(gone)

    def erase(self, project_uid: str, subject: str, endpoint: str | None) -> s.EraseResult:
        """Remove every captured record (and ground-truth label) of one data subject."""
        self.flush()  # records still in memory must not escape the erasure
        key = self.subject_hash(subject)
        rewritten = removed = 0
        with self.db.transaction() as session:
            query = select(CaptureFileRow).where(
                CaptureFileRow.project_uid == project_uid, CaptureFileRow.has_subjects.is_(True)
            )
            if endpoint is not None:
                query = query.where(CaptureFileRow.endpoint == endpoint)
            candidates = session.scalars(query).all()
            session.expunge_all()
        request_ids: set[tuple[str, str, int]] = set()
        gone_requests: list[tuple[str, set[str]]] = []  # per file: requests with no row left
        for row in candidates:
            table = self._open(project_uid, row)
            hit = pc.fill_null(pc.equal(table[SUBJECT], key), False)
            n = pc.sum(hit).as_py() or 0
            if not n:
                continue
            gone = table.filter(hit)
            for request_id, index in zip(
                gone["request_id"].to_pylist(), gone["row"].to_pylist(), strict=True
            ):
                request_ids.add((row.endpoint, request_id, index))
            kept = table.filter(pc.invert(hit))
            left = set(kept["request_id"].to_pylist())
            gone_requests.append((row.uid, set(gone["request_id"].to_pylist()) - left))
            self._replace(project_uid, row, kept)
            rewritten += 1
            removed += n
        labels = self._erase_labels(project_uid, request_ids)
        self._forget_requests(gone_requests)
        return s.EraseResult(
            files_rewritten=rewritten, records_removed=removed, ground_truth_removed=labels
        )

    def _replace(self, project_uid: str, row: CaptureFileRow, kept: pa.Table) -> None:
        old = row.sha256
        info = None
        if kept.num_rows:
            sink = io.BytesIO()
            pq.write_table(kept, sink, compression="zstd")
            info = self.blobs.write(project_uid, [sink.getvalue()])
        with self.db.transaction() as session:
            current = session.get(CaptureFileRow, row.uid)
            if current is None or current.sha256 != old:
                return  # expired or erased meanwhile
            if info is None:
                session.delete(current)
            else:
                self.blobs.acquire(session, project_uid, info, charged=False)
                current.sha256, current.size, current.rows = info.sha256, info.size, kept.num_rows
                times = kept["time"]
                current.first_time = as_utc(pc.min(times).as_py())
                current.last_time = as_utc(pc.max(times).as_py())
            self.blobs.release(session, project_uid, old)
        self.blobs.purge(project_uid, old)

    def _forget_requests(self, per_file: list[tuple[str, set[str]]]) -> None:
        """Erased requests are no longer known as captured: ground truth for them is refused."""
        with self.db.transaction() as session:
            for file_uid, request_ids in per_file:
                ordered = sorted(request_ids)
                for start in range(0, len(ordered), 500):
                    session.execute(
                        delete(CaptureRequestRow).where(
                            CaptureRequestRow.file_uid == file_uid,
                            CaptureRequestRow.request_id.in_(ordered[start : start + 500]),
                        )
                    )

    def _erase_labels(self, project_uid: str, keys: set[tuple[str, str, int]]) -> int:
        removed = 0
        ordered = sorted(keys)
        with self.db.transaction() as session:
            for start in range(0, len(ordered), 500):
                for endpoint, request_id, index in ordered[start : start + 500]:
                    removed += _rowcount(
                        session.execute(
                            delete(GroundTruthRow).where(
                                GroundTruthRow.project_uid == project_uid,
                                GroundTruthRow.endpoint == endpoint,
                                GroundTruthRow.request_id == request_id,
                                GroundTruthRow.row == index,
                            )
                        )
                    )
        return removed

    def _forget_project(self, session: Session, event: ProjectDeleting) -> None:
        """A deleted project's captures go with it (the rows cascade; release the blobs)."""
        for row in session.scalars(
            select(CaptureFileRow).where(CaptureFileRow.project_uid == event.project_id)
        ):
            self.blobs.release(session, row.project_uid, row.sha256)
            session.delete(row)


#: Where the OS has no idle class (`SCHED_IDLE`, Linux), the encoder runs at this niceness.
WORKER_NICENESS = 19


def run_when_idle() -> None:
    """Put this process below everything else: Linux's `SCHED_IDLE` class (it runs on CPU
    time no other process wants, and a waking gateway or replica takes its CPU at once),
    else the lowest niceness. Under a load that fills every core for long, capture falls
    behind (the buffer holds it, then drops and counts) rather than taking from serving."""
    idle = getattr(os, "SCHED_IDLE", None)
    if idle is not None:
        try:
            os.sched_setscheduler(0, idle, os.sched_param(0))
            return
        except OSError:
            pass
    os.nice(WORKER_NICENESS)


#: The encoder process's own connection to the metadata database (`EncoderPool.index`).
_worker_db: Database | None = None


def _worker_started(parent: int, database_url: str | None) -> None:
    """In the encoder process: the idle priority (`run_when_idle`), no Ctrl-C (the control
    plane stops it), an exit when the control plane is gone (killed, say), so that no worker
    outlives it, and its own engine on the metadata database to index requests in."""
    global _worker_db
    ignore_ctrl_c()
    run_when_idle()
    if database_url is not None:
        _worker_db = Database(database_url)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _index_in_worker(job: IndexJob) -> bool:
    if _worker_db is None:
        raise RuntimeError("the encoder process has no database to index requests in")
    with _worker_db.transaction() as session:
        return index_file(session, job)


#: Records per pickled piece of a spooled batch: pickling is one C call that keeps the GIL,
#: and the gateway's event loop should not wait for more than a millisecond or two of it.
SPOOL_PIECE_RECORDS = 2000


def spool_job(job: EncodeJob, out: BinaryIO) -> None:
    """Write a job as pickles: its settings (no records), then each of its records' lists a
    piece at a time (`SPOOL_PIECE_RECORDS`)."""
    lists = {f.name: getattr(job.records, f.name) for f in fields(Columns)}
    empty: dict[str, Any] = {name: [] for name in lists}
    out.write(pickle.dumps(replace(job, records=Columns(**empty)), pickle.HIGHEST_PROTOCOL))
    for name, values in lists.items():
        for start in range(0, len(values), SPOOL_PIECE_RECORDS):
            piece = values[start : start + SPOOL_PIECE_RECORDS]
            out.write(pickle.dumps((name, piece), pickle.HIGHEST_PROTOCOL))


def unspool_job(data: bytes) -> EncodeJob:
    """The job `spool_job` wrote."""
    stream = io.BytesIO(data)
    job: EncodeJob = pickle.load(stream)
    while stream.tell() < len(data):
        name, piece = pickle.load(stream)
        getattr(job.records, name).extend(piece)
    return job


def _encode_spooled(path: str) -> Encoded:
    """In the encoder process: the job the control plane spooled to `path`, encoded."""
    with open(path, "rb") as spooled:
        data = spooled.read()
    os.unlink(path)
    return encode(unspool_job(data))


class EncoderPool:
    """Encodes captured records, and indexes the written files' requests, in a worker process
    at the idle priority (`run_when_idle`).

    Parsing JSON and building columns is CPU work, and so is a database row per captured
    request; done on a thread of the control plane it would hold the GIL against the
    gateway's event loop (and an I/O thread waiting on a CPU thread for the GIL waits far
    longer than the CPU work takes). A batch goes to the worker as a file in `spool` (pickled
    flat lists, written in one call, read and deleted by the worker): through the pool's pipe,
    megabytes of bodies would be written 64 KiB at a time by a feeder thread that takes the
    GIL back after each piece, each time the idle-priority worker has read one. The Parquet
    bytes come back; a file's request ids go back to the worker to be indexed through its own
    engine on the metadata database (`database_url`; without one, `index` is refused and the
    store indexes in its own thread). The worker is started at the first flush (spawned: the
    control plane has threads) and stopped with the writer; if it dies, the batch it held is
    logged as lost (a file it was indexing is indexed when looked for) and a new one starts at
    the next flush.
    """

    def __init__(self, database_url: str | None = None, spool: Path | None = None) -> None:
        self.database_url = database_url
        self.spool = spool  # None: the system's temporary folder
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        if spool is not None:  # batches of a control plane that was killed mid-flush
            left = list(spool.glob("capture-*.job")) if spool.is_dir() else []
            for path in left:
                path.unlink(missing_ok=True)
            if left:
                log.warning("discarded %d captured batches a stopped control plane left", len(left))

    def __call__(self, job: EncodeJob) -> Encoded:
        if self.spool is not None:
            self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, path = tempfile.mkstemp(prefix="capture-", suffix=".job", dir=self.spool)
        try:
            with os.fdopen(handle, "wb") as spooled:  # readable by this user only
                spool_job(job, spooled)
            encoded: Encoded = self._run(_encode_spooled, path)
            return encoded
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # the worker died before reading it

    def index(self, job: IndexJob) -> None:
        if self.database_url is None:
            raise RuntimeError("this encoder pool has no database to index requests in")
        self._run(_index_in_worker, job)

    def _run(self, function: Callable[[Any], Any], job: Any) -> Any:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_worker_started,
                    initargs=(os.getpid(), self.database_url),
                )
            pool = self._pool
        try:
            with children_ignore_ctrl_c():  # the first submit starts the worker process
                future = pool.submit(function, job)
            return future.result(timeout=600)
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            raise

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class CaptureWriter:
    """The background loop that flushes the capture buffer every `interval` seconds, and
    applies retention every few minutes."""

    def __init__(self, store: CaptureStore, interval: float) -> None:
        self.store = store
        self._expire_every = max(1, int(300 / interval))  # passes
        self._passes = 0
        self._loop = BackgroundLoop(
            "writing captured requests",
            self._pass,
            interval,
            thread_name="stratus-capture",
            initial_delay_seconds=interval,
            log=log,
        )

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop(timeout=30)
        try:
            self.store.flush()  # what the gateway captured before it stopped
        except Exception:
            log.exception("writing the last captured records failed")
        close = getattr(self.store.encoder, "close", None)
        if close is not None:
            close()

    def _pass(self) -> None:
        self.store.flush()
        expire = self._passes % self._expire_every == 0  # the first pass, then every few minutes
        self._passes += 1
        if expire:
            self.store.expire()


def partition_path(endpoint: str, hour: datetime, uid: str) -> str:
    hour = as_utc(hour)
    return f"endpoint={endpoint}/date={hour:%Y-%m-%d}/hour={hour:%H}/part-{uid}.parquet"


def file_read(row: CaptureFileRow) -> s.CaptureFileRead:
    return s.CaptureFileRead(
        uid=row.uid,
        endpoint=row.endpoint,
        path=row.path,
        rows=row.rows,
        size=row.size,
        first_time=as_utc(row.first_time),
        last_time=as_utc(row.last_time),
        expires_at=as_utc(row.expires_at),
    )


@dataclass(frozen=True)
class CapturedRequest:
    """What capture kept of one request: how many rows, and the kind of its predictions."""

    rows: int
    label_kind: str


@dataclass(frozen=True)
class IndexJob:
    """A written capture file's requests, for `capture_requests` (flat: cheap to send to the
    encoder process)."""

    file_uid: str
    project_uid: str
    endpoint: str
    request_ids: list[str]
    rows: list[int]  # how many rows each request had
    label_kind: str  # what the file's predictions are (`label_kind`)


def index_file(session: Session, job: IndexJob) -> bool:
    """Index a file's requests, in the caller's transaction; False when the file is gone
    (expired, erased) or was indexed already. The flag is claimed first, so two indexers of
    one file never both add its requests."""
    claimed = session.execute(
        update(CaptureFileRow)
        .where(CaptureFileRow.uid == job.file_uid, CaptureFileRow.indexed.is_(False))
        .values(indexed=True)
    )
    if _rowcount(claimed) != 1:
        return False
    if job.request_ids:
        # Core's executemany, not the ORM's bulk insert: a row per captured request, at half
        # the ORM's cost per row
        session.connection().execute(
            insert(cast(Table, CaptureRequestRow.__table__)),
            [
                {
                    "file_uid": job.file_uid,
                    "project_uid": job.project_uid,
                    "endpoint": job.endpoint,
                    "request_id": request_id,
                    "rows": count,
                    "label_kind": job.label_kind,
                }
                for request_id, count in zip(job.request_ids, job.rows, strict=True)
            ],
        )
    return True


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def iter_columns(table: pa.Table) -> Iterator[str]:
    """The columns of a capture table that hold inputs or predictions."""
    for name in table.column_names:
        if name not in RECORD_COLUMNS and name not in _HIDDEN:
            yield name
