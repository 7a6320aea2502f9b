"""Data capture on the request path: what the gateway keeps of an answered request, and how
the kept requests become rows.

The gateway must not pay for capture: per captured request it builds one `CaptureRecord`
(references to the bodies it already holds, no copy, no parsing) and appends it to a bounded
`CaptureBuffer`. Everything else happens off the event loop, in the monitoring service's
writer thread: `to_rows` parses each body with the endpoint's protocol and the model
version's signature (the same parser the replica ran, so a row is exactly what the model
saw), reads the predictions out of the answer, and lays the records out as columns for a
Parquet file.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from stratus.core.errors import StratusError
from stratus.registry.signatures import Signature
from stratus.serving.protocols import ProtocolName, parse_request

#: The column names a capture file always has, ahead of the request's inputs.
RECORD_COLUMNS = ("time", "request_id", "row", "variant", "model_version", "latency_ms")
PREDICTION = "prediction"
# Requests that made it through the gateway's size limit, parsed again: no row limit here.
_NO_LIMIT = 1 << 31


@dataclass(slots=True)
class CaptureRecord:
    """One answered request, as the gateway saw it."""

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


class CaptureBuffer:
    """Captured requests waiting for the writer: appended by the gateway, drained by a thread.

    Bounded: when the writer falls behind by `capacity` records, new ones are dropped and
    counted rather than letting memory grow (the gateway never waits for capture).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.accepted = 0
        self.dropped = 0
        self._records: deque[CaptureRecord] = deque()
        self._lock = threading.Lock()

    def add(self, record: CaptureRecord) -> None:
        if len(self._records) >= self.capacity:
            self.dropped += 1
            return
        self._records.append(record)  # deque.append is atomic: no lock on the hot path
        self.accepted += 1

    def drain(self) -> list[CaptureRecord]:
        """Everything buffered so far, oldest first."""
        with self._lock:  # one drainer at a time (the writer, or a flush before an erase)
            records = self._records
            taken: list[CaptureRecord] = []
            for _ in range(len(records)):
                taken.append(records.popleft())
            return taken

    def __len__(self) -> int:
        return len(self._records)


SignatureOf = Callable[[str], Signature | None]  # "model:N" -> its signature, if any


@dataclass
class Rows:
    """Captured records laid out as columns (one entry per input row), ready for Parquet."""

    columns: dict[str, list[Any]]
    skipped: int  # records that could not be read back (and so were not kept)

    @property
    def n_rows(self) -> int:
        return len(self.columns["time"]) if self.columns else 0


def to_rows(records: Sequence[CaptureRecord], signature_of: SignatureOf) -> Rows:
    """Parse captured requests and answers into columns: the record columns, one column per
    input, and the prediction (`prediction`, or `prediction.<output>` for several outputs)."""
    columns: dict[str, list[Any]] = {name: [] for name in RECORD_COLUMNS}
    skipped = 0
    n = 0
    for record in records:
        try:
            inputs, predictions = _read(record, signature_of(record.model_version))
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
    record: CaptureRecord, signature: Signature | None
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    request = parse_request(
        record.protocol, record.body, record.content_type, signature, max_rows=_NO_LIMIT
    )
    batch = request.batch
    inputs = {_input_name(name): _values(batch[name]) for name in batch.names}
    answer = orjson.loads(record.response)
    return inputs, _predictions(record.protocol, answer, batch.n_rows)


def _input_name(name: str) -> str:
    """An input named like a record column (`time`, say) is kept as `input.time`."""
    return f"input.{name}" if name in RECORD_COLUMNS or name.startswith(PREDICTION) else name


def _values(column: np.ndarray) -> list[Any]:
    if column.ndim == 1:
        values: list[Any] = column.tolist()  # numpy scalars become Python ones
        return values
    return [row.tolist() for row in column]  # a tensor input: a list per row


def _predictions(protocol: ProtocolName, answer: Any, n_rows: int) -> dict[str, list[Any]]:
    if protocol == "v2":
        outputs = answer["outputs"]
        found: dict[str, list[Any]] = {}
        for output in outputs:
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
