"""Captured requests at rest: hourly Parquet files in the object store, one row per file in
`capture_files`.

The gateway only appends records to a `CaptureBuffer`; `CaptureStore.flush` (every
`monitoring.capture_flush_seconds`, on the writer thread) drains it, parses the records
(`serving.capture.to_table`), masks or drops the `pii` inputs, adds a keyed hash of the data
subject, and writes one Parquet file per endpoint and hour. A file is a blob like any other
(content-addressed, encrypted with the project's key); its row names it by a Hive-style
partition path, `endpoint=NAME/date=YYYY-MM-DD/hour=HH/part-UID.parquet`, which is also the
layout `stratus monitors capture --download` writes on disk.

Retention deletes files past their endpoint's `retention_days` (fixed when written). Erasing
a data subject rewrites each file holding their records without them (a new blob, the row
repointed in one transaction) and deletes the old blob at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import logging
import multiprocessing
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Table, delete, insert, select
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
    RECORD_OVERHEAD,
    SUBJECT,
    CaptureBuffer,
    CaptureRecord,
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
#: After writing at least this many bytes of records, freed memory goes back to the system:
#: glibc keeps a freed heap (the records are many small objects) for reuse otherwise, and the
#: control plane would stay at its highest buffer for good.
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
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.endpoints = endpoints
        self.registry = registry
        self.buffer = buffer
        self._subject_key = subject_key
        self.encoder = encoder  # in this thread, or in a worker process (`EncoderPool`)
        self._signatures: dict[tuple[str, str], Signature | None] = {}
        self._flushing = threading.Lock()
        self.written = 0  # rows written since start
        self.skipped = 0  # records that could not be parsed back
        bus.subscribe(ProjectDeleting, self._forget_project)

    # --- writing -----------------------------------------------------------------------------

    def flush(self) -> int:
        """Write out everything buffered; the number of rows written."""
        with self._flushing:
            records = self.buffer.drain()
            if not records:
                return 0
            held = sum(len(r.body) + len(r.response) + RECORD_OVERHEAD for r in records)
            try:
                return self._write(records)
            finally:
                del records
                if held >= TRIM_AFTER_BYTES:
                    give_back_memory()

    def _write(self, records: list[CaptureRecord]) -> int:
        by_endpoint: dict[str, list[CaptureRecord]] = defaultdict(list)
        for record in records:
            by_endpoint[record.endpoint_uid].append(record)
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
        job = EncodeJob.of(
            records,
            signatures=signatures,
            pii=list(spec.pii),
            pii_action=spec.pii_action,
            subject=spec.subject,
            subject_key=self._subject_key,
            passthrough=list(target.passthrough),
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
            self._write_file(target, part)
        return sum(part.rows for part in encoded.files)

    def _write_file(self, target: CaptureTarget, part: EncodedFile) -> None:
        info = self.blobs.write(target.project_uid, [part.data])
        uid = new_id()
        now = utcnow()
        with self.db.transaction() as session:
            self.blobs.acquire(session, target.project_uid, info)
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
                )
            )
            session.flush()  # the file's row first: its requests refer to it
            _add_requests(
                session,
                uid,
                target.project_uid,
                target.endpoint,
                part.request_ids,
                part.request_rows,
                part.label_kind,
            )

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
        that. Files written before requests were indexed are indexed then too.
        """
        wanted = sorted(set(request_ids))
        found = self._lookup(project_uid, endpoint, wanted)
        if len(found) < len(wanted):
            missing = [r for r in wanted if r not in found]
            # (the writer may be writing them now: `flush` waits for it, and then they are in)
            self.flush()
            self._index_legacy_files(project_uid, endpoint)
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

    def _index_legacy_files(self, project_uid: str, endpoint: str) -> int:
        """Index the requests of the endpoint's files written before `capture_requests`
        existed; how many files that took."""
        with self.db.transaction() as session:
            legacy = session.scalars(
                select(CaptureFileRow).where(
                    CaptureFileRow.project_uid == project_uid,
                    CaptureFileRow.endpoint == endpoint,
                    CaptureFileRow.indexed.is_(False),
                )
            ).all()
            session.expunge_all()
        for row in legacy:
            table = self._open(project_uid, row)
            ids, counts = request_counts(table)
            with self.db.transaction() as session:
                current = session.get(CaptureFileRow, row.uid)
                if current is None or current.indexed:
                    continue  # expired, or indexed by another call meanwhile
                _add_requests(
                    session, row.uid, project_uid, endpoint, ids, counts, label_kind(table)
                )
                current.indexed = True
        return len(legacy)

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
                self.blobs.acquire(session, project_uid, info)
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


#: The encoder runs below the gateway and the replicas: under a load that fills every core,
#: capture falls behind (the buffer holds it, then drops and counts) rather than serving.
WORKER_NICENESS = 10


def _worker_started(parent: int) -> None:
    """In the encoder process: a lower priority, no Ctrl-C (the control plane stops it), and
    an exit when the control plane is gone (killed, say), so that no worker outlives it."""
    ignore_ctrl_c()
    os.nice(WORKER_NICENESS)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class EncoderPool:
    """Encodes captured records in a worker process, at a lower CPU priority.

    Parsing JSON and building columns is CPU work; done on a thread of the control plane it
    would hold the GIL against the gateway's event loop (and an I/O thread waiting on a CPU
    thread for the GIL waits far longer than the CPU work takes). The records go to the
    worker as a few flat lists; the Parquet bytes come back. The worker is started at the
    first flush (spawned: the control plane has threads) and stopped with the writer; if it
    dies, the batch it held is logged as lost and a new one starts at the next flush.
    """

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def __call__(self, job: EncodeJob) -> Encoded:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_worker_started,
                    initargs=(os.getpid(),),
                )
            pool = self._pool
        try:
            with children_ignore_ctrl_c():  # the first submit starts the worker process
                future = pool.submit(encode, job)
            encoded = future.result(timeout=600)
            # multiprocessing's queue feeder thread keeps the last object it pickled until it
            # sends the next: an empty call lets this batch's pickled bodies go now, not at
            # the next flush (with a full buffer, tens of MB held between flushes)
            pool.submit(int).result(timeout=60)
            return encoded
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


def _add_requests(
    session: Session,
    file_uid: str,
    project_uid: str,
    endpoint: str,
    request_ids: Sequence[str],
    rows: Sequence[int],
    kind: str,
) -> None:
    if not request_ids:
        return
    # Core's executemany, not the ORM's bulk insert: a row per captured request (thousands a
    # second under load) on the control plane's GIL, at half the ORM's cost per row
    session.connection().execute(
        insert(cast(Table, CaptureRequestRow.__table__)),
        [
            {
                "file_uid": file_uid,
                "project_uid": project_uid,
                "endpoint": endpoint,
                "request_id": request_id,
                "rows": count,
                "label_kind": kind,
            }
            for request_id, count in zip(request_ids, rows, strict=True)
        ],
    )


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def iter_columns(table: pa.Table) -> Iterator[str]:
    """The columns of a capture table that hold inputs or predictions."""
    for name in table.column_names:
        if name not in RECORD_COLUMNS and name not in _HIDDEN:
            yield name
