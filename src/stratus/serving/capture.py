"""Data capture on the request path: what the gateway keeps of an answered request, and how
the kept requests become rows.

The gateway must not pay for capture: per captured request it builds one `CaptureRecord`
(references to the bodies it already holds, no copy, no parsing) and appends it to a bounded
`CaptureBuffer`. Everything else happens off the event loop: the monitoring service's writer
thread drains the buffer into an `EncodeJob`, and `encode` (in the encoder process) lays the
records out as an Arrow table and writes Parquet.

The usual requests (plain or MLflow JSON rows, for a model with a table-like signature or
none) are read a whole batch at a time: by Arrow's JSON reader when every body has the same
shape (`_arrow_table`, no Python object per value), else with one orjson parse of all the
bodies and one of all the answers (`_object_table`). Anything else (v2 tensors, CSV, rows of
mixed shapes, parameters) goes through `to_rows`, which parses each body with the protocol's
own parser and the version's signature, the same code the replica ran, so a row is exactly
what the model saw.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from stratus.core.errors import StratusError
from stratus.registry.signatures import PROBABILITIES_OUTPUT, Signature, class_name
from stratus.serving.binary_tensors import answer_document
from stratus.serving.passthrough import FIELD as PASSTHROUGH_FIELD
from stratus.serving.passthrough import carried_by
from stratus.serving.protocols import ProtocolName, parse_request

#: The column names a capture file always has, ahead of the request's inputs.
RECORD_COLUMNS = ("time", "request_id", "row", "variant", "model_version", "latency_ms")
PREDICTION = "prediction"
#: A `predict_proba` answer is kept as one column per class, `probability.CLASS` (the class's
#: `class_name`): what a monitor's `prediction: probability:CLASS` reads.
PROBABILITY = "probability"
#: Where a captured answer's prediction is, first found wins (dict answers: `prediction.KEY`).
PREDICTION_COLUMNS = ("prediction", "prediction.label", "prediction.class", "prediction.predict")
SUBJECT = "_subject"  # the keyed hash of the data subject, when the endpoint names one
MASK = "***"
# Requests that made it through the gateway's size limit, parsed again: no row limit here.
_NO_LIMIT = 1 << 31


class CaptureRecord(NamedTuple):
    """One answered request, as the gateway saw it.

    A tuple of strings, numbers and bytes: the garbage collector stops tracking such a tuple
    the first time it sees it, so a buffer of many thousands costs it nothing (a class
    instance would be scanned at every collection it survives, which the gateway would pay
    for under load).
    """

    time: float  # seconds since the epoch, when the answer went out
    request_id: str
    endpoint_uid: str
    variant: str
    model_version: str  # "model:N"
    protocol: ProtocolName
    content_type: str
    body: bytes
    response: bytes
    latency_ms: float


#: What a buffered record costs beside its two bodies: the tuple, its strings and floats.
RECORD_OVERHEAD = 400
#: The most the buffer holds, in bytes of bodies and records, whatever `capacity` says.
BUFFER_BYTES = 64 * 2**20


class CaptureBuffer:
    """Captured requests waiting for the writer: appended by the gateway, drained by a thread.

    Bounded twice: when the writer falls behind by `capacity` records, or by `max_bytes` of
    request and answer bodies (plus `RECORD_OVERHEAD` a record), new ones are dropped and
    counted rather than letting memory grow (the gateway never waits for capture). The byte
    bound is the one that matters: 200,000 records of 1 KiB bodies are ~300 MB of Python
    objects, which the process keeps from the allocator after the writer has let them go.
    """

    def __init__(self, capacity: int, max_bytes: int = BUFFER_BYTES) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.accepted = 0
        self.dropped = 0
        self.bytes = 0  # held now
        self.drained_bytes = 0  # held by the records the last `drain` took
        self._records: deque[CaptureRecord] = deque()
        self._lock = threading.Lock()

    def add(self, record: CaptureRecord) -> None:
        size = len(record.body) + len(record.response) + RECORD_OVERHEAD
        with self._lock:  # uncontended but for a drain's swap: tens of nanoseconds
            if len(self._records) >= self.capacity or self.bytes + size > self.max_bytes:
                self.dropped += 1
                return
            self._records.append(record)
            self.bytes += size
            self.accepted += 1

    def drain(self) -> list[CaptureRecord]:
        """Everything buffered so far, oldest first (`drained_bytes`: what they held)."""
        with self._lock:
            records, self._records = self._records, deque()
            self.drained_bytes, self.bytes = self.bytes, 0
        return list(records)

    def __len__(self) -> int:
        return len(self._records)


SignatureOf = Callable[[str], Signature | None]  # "model:N" -> its signature, if any


# --- encoding: records to Parquet files, a pure job (it may run in a worker process) -----------


@dataclass(frozen=True)
class Columns:
    """Records as one list per field (what an `EncodeJob` carries, flat: cheap to send to a
    worker process): the readers below work on these, so a job's lists are read as they
    came, without a tuple per record."""

    protocols: list[str]
    model_versions: list[str]
    content_types: list[str]
    bodies: list[bytes]
    responses: list[bytes]
    times: list[float]
    request_ids: list[str]
    variants: list[str]
    latencies: list[float]

    @classmethod
    def of(cls, records: Sequence[CaptureRecord]) -> Columns:
        return cls(
            [r.protocol for r in records], [r.model_version for r in records],
            [r.content_type for r in records], [r.body for r in records],
            [r.response for r in records], [r.time for r in records],
            [r.request_id for r in records], [r.variant for r in records],
            [r.latency_ms for r in records],
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.bodies)

    def take(self, indices: Sequence[int]) -> Columns:
        def pick(values: list[Any]) -> list[Any]:
            return [values[i] for i in indices]

        return Columns(
            pick(self.protocols), pick(self.model_versions), pick(self.content_types),
            pick(self.bodies), pick(self.responses), pick(self.times),
            pick(self.request_ids), pick(self.variants), pick(self.latencies),
        )  # fmt: skip

    def records(self) -> list[CaptureRecord]:
        return [
            CaptureRecord(t, rid, "", var, mv, proto, ctype, body, resp, lat)
            for t, rid, var, mv, proto, ctype, body, resp, lat in zip(
                self.times, self.request_ids, self.variants, self.model_versions,
                self.protocols, self.content_types, self.bodies, self.responses,
                self.latencies, strict=True,
            )
        ]  # fmt: skip


@dataclass
class EncodeJob:
    """One endpoint's captured records, flat (cheap to send to a worker process), and what the
    endpoint's capture settings ask for."""

    records: Columns
    signatures: dict[str, dict[str, Any] | None]  # model version -> its signature's JSON
    pii: list[str] = field(default_factory=list)
    pii_action: str = "mask"
    subject: str | None = None
    subject_key: bytes = b""
    passthrough: list[str] = field(default_factory=list)
    request_ids_back: bool = True  # each file's request ids and rows, for the index

    @classmethod
    def of(cls, records: Sequence[CaptureRecord], **settings: Any) -> EncodeJob:
        return cls(Columns.of(records), **settings)


@dataclass(frozen=True)
class EncodedFile:
    """One hour's Parquet file of an endpoint's records."""

    hour: datetime
    data: bytes
    rows: int
    first_time: datetime
    last_time: datetime
    has_subjects: bool
    request_ids: list[str] = field(default_factory=list)  # its requests, each once
    request_rows: list[int] = field(default_factory=list)  # and how many rows each had
    label_kind: str = ""  # what its predictions are (`label_kind`)


@dataclass(frozen=True)
class Encoded:
    files: list[EncodedFile]
    skipped: int  # records that could not be read back


def encode(job: EncodeJob) -> Encoded:
    """Parse the records, protect personal data, and write one Parquet file per hour."""
    signatures = {
        mv: None if sig is None else Signature.model_validate(sig)
        for mv, sig in job.signatures.items()
    }
    table, skipped = _table(job.records, lambda mv: signatures.get(mv), job.passthrough)
    if table is None or not table.num_rows:
        return Encoded([], skipped)
    table = protect(table, job.pii, job.pii_action, job.subject, job.subject_key)
    hours = pc.floor_temporal(table["time"], unit="hour")
    files = []
    for hour in pc.unique(hours).to_pylist():
        part = table.filter(pc.equal(hours, pa.scalar(hour, hours.type)))
        sink = io.BytesIO()
        pq.write_table(part, sink, compression="zstd")
        times = part["time"]
        ids, rows = request_counts(part) if job.request_ids_back else ([], [])
        files.append(
            EncodedFile(
                hour=_utc(hour),
                data=sink.getvalue(),
                rows=part.num_rows,
                first_time=_utc(pc.min(times).as_py()),
                last_time=_utc(pc.max(times).as_py()),
                has_subjects=SUBJECT in part.column_names,
                request_ids=ids,
                request_rows=rows,
                label_kind=label_kind(part),
            )
        )
    return Encoded(files, skipped)


def request_counts(table: pa.Table) -> tuple[list[str], list[int]]:
    """Each request id of a capture table once, with how many rows it had (its highest row
    index plus one)."""
    if not table.num_rows:
        return [], []
    pairs = table.select(["request_id", "row"])
    counted = pairs.group_by("request_id").aggregate([("row", "max")])
    return counted["request_id"].to_pylist(), [n + 1 for n in counted["row_max"].to_pylist()]


def label_kind(table: pa.Table) -> str:
    """What a capture table's predictions are: `integer`, `number`, `bool` or `string`
    (class labels or values, for telling a label of the wrong kind), else ""."""
    name = next((c for c in PREDICTION_COLUMNS if c in table.column_names), None)
    if name is None:
        return ""
    kind = table[name].type
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind):
        return "number"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    return ""


def protect(
    table: pa.Table, pii: Sequence[str], action: str, subject: str | None, key: bytes
) -> pa.Table:
    """The subject's keyed hash added (`_subject`); personal data masked or dropped."""
    if subject is not None and subject in table.column_names:
        memo: dict[tuple[type, Any], str] = {}
        hashes: list[str | None] = []
        for value in table[subject].to_pylist():
            if value is None:
                hashes.append(None)
                continue
            seen = (type(value), value)
            if seen not in memo:
                memo[seen] = subject_hash(key, value)
            hashes.append(memo[seen])
        table = table.append_column(SUBJECT, pa.array(hashes, pa.string()))
    for name in pii:
        if name not in table.column_names:
            continue
        index = table.column_names.index(name)
        if action == "drop":
            table = table.remove_column(index)
        else:
            present = pc.is_valid(table[name])
            masked = pc.if_else(present, pa.scalar(MASK), pa.scalar(None, pa.string()))
            table = table.set_column(index, name, masked)
    return table


def subject_hash(key: bytes, value: Any) -> str:
    """The keyed hash of a data subject's identifier (integral floats read as integers, so
    42, 42.0 and "42" are the same subject)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class Rows:
    """Captured records laid out as columns (one entry per input row), ready for Parquet."""

    columns: dict[str, list[Any]]
    skipped: int  # records that could not be read back (and so were not kept)

    @property
    def n_rows(self) -> int:
        return len(self.columns["time"]) if self.columns else 0


def to_table(
    records: Sequence[CaptureRecord], signature_of: SignatureOf, passthrough: Sequence[str] = ()
) -> tuple[pa.Table | None, int]:
    """The records as one table (None when no row could be read), and how many records could
    not be read back. The endpoint's `passthrough` columns are kept like inputs."""
    return _table(Columns.of(records), signature_of, passthrough)


def _table(
    records: Columns, signature_of: SignatureOf, passthrough: Sequence[str] = ()
) -> tuple[pa.Table | None, int]:
    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(records.protocols, records.model_versions, strict=True)):
        groups.setdefault(key, []).append(i)
    tables: list[pa.Table] = []
    skipped = 0
    for (protocol, model_version), indices in groups.items():
        group = records if len(groups) == 1 else records.take(indices)
        signature = signature_of(model_version)
        table = None
        if protocol in ("plain", "mlflow") and (signature is None or signature.is_tabular):
            try:
                table = _fast_table(group, signature, bool(passthrough))
            except (ValueError, TypeError, KeyError, IndexError, pa.ArrowException):
                table = None  # the careful way below names nothing: it only reads
        if table is None:
            rows = to_rows(group.records(), signature_of, passthrough)
            skipped += rows.skipped
            table = columns_table(rows.columns) if rows.n_rows else None
        if table is not None:
            tables.append(table)
    if not tables:
        return None, skipped
    if len(tables) == 1:
        return tables[0], skipped
    return pa.concat_tables(tables, promote_options="permissive"), skipped


def columns_table(columns: dict[str, list[Any]]) -> pa.Table:
    """`to_rows`' columns as a table (the time as UTC microseconds)."""
    arrays = {
        name: _times(values) if name == "time" else json_safe_array(values)
        for name, values in columns.items()
    }
    return pa.table(arrays)


def json_safe_array(values: Sequence[Any]) -> pa.Array:
    """An Arrow array of the values; values of mixed types are kept as their JSON text."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array(
            [None if v is None else v if isinstance(v, str) else orjson.dumps(v).decode()
             for v in values],
            pa.string(),
        )  # fmt: skip


def _times(seconds: Sequence[float] | np.ndarray) -> pa.Array:
    micros = (np.asarray(seconds, dtype=np.float64) * 1e6).astype(np.int64)
    return pa.array(micros, pa.timestamp("us", tz="UTC"))


_ARROW_TYPES = {
    "float64": pa.float64(),
    "float32": pa.float32(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "bool": pa.bool_(),
    "string": pa.string(),
}


def _fast_table(
    records: Columns, signature: Signature | None, carrying: bool = False
) -> pa.Table | None:
    """A batch of plain or MLflow JSON requests as one table, or None when a record is not one
    of the shapes read here (the caller then reads them one by one): by Arrow's JSON reader
    when every body has the same shape (the usual traffic: no Python object per value), else
    a document at a time."""
    table = _arrow_table(records, signature)
    if table is None:
        table = _object_table(records, signature, carrying)
    return table


#: The keys of a plain or MLflow JSON body that hold its rows.
_ROW_KEYS = ("instances", "dataframe_records", "inputs")
_JSON_READ = pajson.ReadOptions(use_threads=False, block_size=1 << 30)


def _arrow_table(records: Columns, signature: Signature | None) -> pa.Table | None:
    """The batch read by Arrow's JSON reader: every body one object with a single key that
    holds its rows (`instances`, `inputs`, `dataframe_records`, or a `dataframe_split` whose
    columns are the signature's), every answer `{"predictions": [...]}` with a prediction per
    row; else None. Anything else in a body (parameters, pass-through columns) is read by
    `_object_table`. Rows as lists have one type for all their values: without a signature
    to cast to, integer columns are widened to floats when any value of the rows is one."""
    n = len(records)
    bodies = b"\n".join(records.bodies)
    answers = b"\n".join(records.responses)
    if bodies.count(b"\n") != n - 1 or answers.count(b"\n") != n - 1:
        return None  # a document over several lines
    try:
        docs = pajson.read_json(pa.BufferReader(bodies), read_options=_JSON_READ)
        said = pajson.read_json(pa.BufferReader(answers), read_options=_JSON_READ)
    except pa.ArrowInvalid:  # not one shape: a row of numbers and strings, say
        return None
    if docs.num_rows != n or said.num_rows != n or said.column_names != ["predictions"]:
        return None
    if docs.num_columns != 1:
        return None
    key = docs.column_names[0]
    body = docs.column(0).combine_chunks()
    names = signature.input_names if signature is not None else None
    if key == "dataframe_split":
        body = _split_rows(body, names)
    elif key not in _ROW_KEYS:
        return None
    if body is None or body.null_count or not pa.types.is_list(body.type):
        return None
    counts = pc.list_value_length(body)
    rows = pc.list_flatten(body)
    if not len(rows) or rows.null_count:
        return None
    kind = rows.type
    if pa.types.is_list(kind):
        widths = pc.min_max(pc.list_value_length(rows)).as_py()
        width = widths["min"]
        if names is None:
            names = tuple(f"f{j}" for j in range(width))
        if widths["max"] != width or width != len(names):
            return None
        table = pa.table({name: pc.list_element(rows, j) for j, name in enumerate(names)})
    elif pa.types.is_struct(kind):
        table = pa.Table.from_struct_array(rows)
    elif names is not None and len(names) == 1:
        table = pa.table({names[0]: rows})
    else:
        return None
    predicted = said.column(0).combine_chunks()
    if predicted.null_count or not pa.types.is_list(predicted.type):
        return None
    if not pc.all(pc.equal(pc.list_value_length(predicted), counts)).as_py():
        return None
    if signature is not None:
        table = _typed(table, signature)
    table = table.rename_columns([_input_name(c) for c in table.column_names])
    flat = pc.list_flatten(predicted)
    if pa.types.is_struct(flat.type):
        for j, field_ in enumerate(flat.type):
            table = table.append_column(f"{PREDICTION}.{field_.name}", pc.struct_field(flat, j))
    else:
        table = table.append_column(PREDICTION, flat)
    return _with_record_columns(table, records, counts.to_numpy(zero_copy_only=False))


def _split_rows(body: pa.Array, names: tuple[str, ...] | None) -> pa.Array | None:
    """`dataframe_split` bodies' `data`, when none names its columns or all name the
    signature's (in its order)."""
    if not pa.types.is_struct(body.type) or body.null_count:
        return None
    fields = {f.name for f in body.type}
    if not {"data"} <= fields <= {"data", "columns", "index"}:
        return None
    if "columns" in fields:
        columns = pc.struct_field(body, [body.type.get_field_index("columns")])
        if names is None or columns.null_count:
            return None
        joined = pc.binary_join(columns, "\x1f")
        if not pc.all(pc.equal(joined, "\x1f".join(names))).as_py():
            return None
    data: pa.Array = pc.struct_field(body, [body.type.get_field_index("data")])
    return data


def _with_record_columns(table: pa.Table, records: Columns, counts: np.ndarray) -> pa.Table:
    """The record columns put first: each record's time, id, variant, version and latency
    on each of its rows, and the row's index within its request."""
    total = int(counts.sum())
    if total == len(records):  # a row a request, the usual online traffic: nothing to repeat
        meta = {
            "time": _times(records.times),
            "request_id": pa.array(records.request_ids, pa.string()),
            "row": pa.array(np.zeros(total, dtype=np.int64)),
            "variant": pa.array(records.variants, pa.string()),
            "model_version": pa.array(records.model_versions, pa.string()),
            "latency_ms": pa.array(records.latencies, pa.float64()),
        }
    else:
        owner = pa.array(np.repeat(np.arange(len(records)), counts))
        starts = np.cumsum(counts) - counts
        meta = {
            "time": _times(np.repeat(np.asarray(records.times, dtype=np.float64), counts)),
            "request_id": pa.array(records.request_ids, pa.string()).take(owner),
            "row": pa.array((np.arange(total) - np.repeat(starts, counts)).astype(np.int64)),
            "variant": pa.array(records.variants, pa.string()).take(owner),
            "model_version": pa.array(records.model_versions, pa.string()).take(owner),
            "latency_ms": pa.array(np.repeat(np.asarray(records.latencies), counts)),
        }
    for position, (name, array) in enumerate(meta.items()):
        table = table.add_column(position, name, array)
    return table


def _object_table(
    records: Columns, signature: Signature | None, carrying: bool = False
) -> pa.Table | None:
    """The batch read a JSON document at a time (orjson), for bodies of mixed shapes or with
    parameters or pass-through columns (`carrying`: read here only as keys of row objects)."""
    docs = orjson.loads(b"[" + b",".join(records.bodies) + b"]")
    answers = orjson.loads(b"[" + b",".join(records.responses) + b"]")
    rows: list[Any] = []
    predictions: list[Any] = []
    counts = np.empty(len(records), dtype=np.int64)
    for i, (doc, answer) in enumerate(zip(docs, answers, strict=True)):
        if carrying and type(doc) is dict and PASSTHROUGH_FIELD in doc:
            return None
        if type(doc) is dict and _asks_probabilities(doc):
            return None  # read one by one, its answer's classes named
        found = _json_rows(doc, signature)
        if found is None:
            return None
        said = answer["predictions"]
        if len(said) != len(found):
            return None
        rows += found
        predictions += said
        counts[i] = len(found)
    if not rows:
        return None
    names = signature.input_names if signature is not None else None
    first = rows[0]
    if type(first) is list:
        width = len(first)
        if names is None:
            names = tuple(f"f{j}" for j in range(width))
        if width != len(names) or any(type(r) is not list or len(r) != width for r in rows):
            return None
        values = zip(*rows, strict=True)  # rows to columns, at C speed
        table = pa.table(
            {name: pa.array(column) for name, column in zip(names, values, strict=True)}
        )
    elif type(first) is dict:
        if any(type(r) is not dict for r in rows):
            return None
        table = pa.Table.from_pylist(rows)
    elif names is not None and len(names) == 1:
        table = pa.table({names[0]: pa.array(rows)})
    else:
        return None
    if signature is not None:
        table = _typed(table, signature)
    table = table.rename_columns([_input_name(n) for n in table.column_names])
    if predictions and type(predictions[0]) is dict:
        answered = pa.Table.from_pylist(predictions)
        for name in answered.column_names:
            table = table.append_column(f"{PREDICTION}.{name}", answered[name])
    else:
        table = table.append_column(PREDICTION, json_safe_array(predictions))
    return _with_record_columns(table, records, counts)


def _json_rows(doc: Any, signature: Signature | None) -> list[Any] | None:
    """The rows of a plain or MLflow JSON body, in a shape read here; else None."""
    if type(doc) is not dict:
        return None
    for key in ("instances", "dataframe_records", "inputs"):
        if key in doc:
            value = doc[key]
            return value if type(value) is list else None
    split = doc.get("dataframe_split")
    if type(split) is dict and type(split.get("data")) is list:
        columns = split.get("columns")
        names = signature.input_names if signature is not None else None
        if columns is None or (names is not None and tuple(columns) == names):
            return list(split["data"])
    return None


def _typed(table: pa.Table, signature: Signature) -> pa.Table:
    """Columns cast to the signature's types where JSON left them looser (ints for floats)."""
    for spec in signature.inputs:
        wanted = _ARROW_TYPES.get(spec.dtype)
        if wanted is None or spec.name not in table.column_names:
            continue
        index = table.column_names.index(spec.name)
        column = table.column(index)
        if column.type != wanted:
            try:
                table = table.set_column(index, spec.name, column.cast(wanted))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
    return table


def to_rows(
    records: Sequence[CaptureRecord], signature_of: SignatureOf, passthrough: Sequence[str] = ()
) -> Rows:
    """Parse captured requests and answers into columns: the record columns, one column per
    input and per pass-through column the request carried, and the prediction (`prediction`,
    or `prediction.<output>` for several outputs)."""
    columns: dict[str, list[Any]] = {name: [] for name in RECORD_COLUMNS}
    skipped = 0
    n = 0
    for record in records:
        try:
            inputs, predictions = _read(record, signature_of(record.model_version), passthrough)
        except (StratusError, ValueError, TypeError, KeyError, IndexError):
            skipped += 1
            continue
        rows = len(next(iter(inputs.values()))) if inputs else 0
        if rows == 0:
            continue
        for name, values in (*inputs.items(), *predictions.items()):
            column = columns.get(name)
            if column is None:
                column = columns[name] = [None] * n
            column.extend(values)
        columns["time"].extend([record.time] * rows)
        columns["request_id"].extend([record.request_id] * rows)
        columns["row"].extend(range(rows))
        columns["variant"].extend([record.variant] * rows)
        columns["model_version"].extend([record.model_version] * rows)
        columns["latency_ms"].extend([record.latency_ms] * rows)
        n += rows
        for column in columns.values():  # inputs or outputs this request did not have
            if len(column) < n:
                column.extend([None] * (n - len(column)))
    return Rows(columns if n else {}, skipped)


def _read(
    record: CaptureRecord, signature: Signature | None, passthrough: Sequence[str] = ()
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    request = parse_request(
        record.protocol,
        record.body,
        record.content_type,
        signature,
        max_rows=_NO_LIMIT,
        passthrough=carried_by(passthrough, signature),
    )
    batch = request.batch
    inputs = {_input_name(name): _values(batch[name]) for name in batch.names}
    carried = request.passthrough or {}
    for name, values in carried.items():
        inputs[_input_name(name)] = list(values)
    # a v2 answer with binary outputs was kept framed: its outputs are read back into "data"
    answer = (
        answer_document(record.response)
        if record.protocol == "v2"
        else orjson.loads(record.response)
    )
    if request.method == "predict_proba":
        return inputs, _probabilities(record.protocol, answer, batch.n_rows)
    return inputs, _predictions(record.protocol, answer, batch.n_rows, frozenset(carried))


def _input_name(name: str) -> str:
    """An input named like a record column (`time`, say) is kept as `input.time`."""
    if name in RECORD_COLUMNS or name.startswith((PREDICTION, f"{PROBABILITY}.")):
        return f"input.{name}"
    return name


def _asks_probabilities(doc: dict[str, Any]) -> bool:
    parameters = doc.get("parameters", doc.get("params"))
    return type(parameters) is dict and parameters.get("method") == "predict_proba"


def _probabilities(protocol: ProtocolName, answer: Any, n_rows: int) -> dict[str, list[Any]]:
    """A `predict_proba` answer as `probability.CLASS` columns: v2's `probabilities` output
    (its classes in its parameters), or MLflow's and plain's objects keyed by class."""
    if protocol == "v2":
        output = next(o for o in answer["outputs"] if o["name"] == PROBABILITIES_OUTPUT)
        keys = [class_name(c) for c in output["parameters"]["classes"]]
        data, width = output["data"], len(keys)
        rows = [data[i : i + width] for i in range(0, len(data), width)]
    else:
        predictions = answer["predictions"]
        keys = list(predictions[0]) if predictions else []
        rows = [[p.get(key) for key in keys] for p in predictions]
    _fit(rows, n_rows)
    return {f"{PROBABILITY}.{key}": [row[j] for row in rows] for j, key in enumerate(keys)}


def _values(column: np.ndarray) -> list[Any]:
    if column.ndim == 1:
        values: list[Any] = column.tolist()  # numpy scalars become Python ones
        return values
    return [row.tolist() for row in column]  # a tensor input: a list per row


def _predictions(
    protocol: ProtocolName, answer: Any, n_rows: int, carried: frozenset[str] = frozenset()
) -> dict[str, list[Any]]:
    if protocol == "v2":
        outputs = answer["outputs"]
        found: dict[str, list[Any]] = {}
        for output in outputs:
            if output["name"] in carried:
                continue  # a pass-through column echoed, not a prediction
            data = output["data"]
            shape = output.get("shape") or [len(data)]
            width = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            values = (
                data if width == 1 else [data[i : i + width] for i in range(0, len(data), width)]
            )
            found[output["name"]] = values
        if len(found) == 1:
            return {PREDICTION: _fit(next(iter(found.values())), n_rows)}
        return {f"{PREDICTION}.{name}": _fit(values, n_rows) for name, values in found.items()}
    predictions = answer["predictions"]
    if predictions and isinstance(predictions[0], dict):
        keys = list(predictions[0])
        return {
            f"{PREDICTION}.{key}": _fit([p.get(key) for p in predictions], n_rows) for key in keys
        }
    return {PREDICTION: _fit(predictions, n_rows)}


def _fit(values: list[Any], n_rows: int) -> list[Any]:
    if len(values) != n_rows:
        raise ValueError(f"the answer has {len(values)} predictions for {n_rows} rows")
    return values
