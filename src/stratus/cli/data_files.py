"""Rows in and out of files for `stratus predict --file`: read a CSV, Parquet or JSON-lines file
as batches of row objects, and write each row back with its prediction (CSV, Parquet or JSON
lines, by the output file's extension).

CSV and Parquet need pyarrow (the `pandas` extra); JSON lines need nothing but the standard
library. Files are written atomically: the output appears only once complete.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratus.core.errors import InvalidInput

KINDS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
PREDICTION = "prediction"


def kind_of(path: Path) -> str:
    """`csv`, `parquet` or `jsonl`, by the file's extension; ValueError for any other."""
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path.name}: expected a .csv, .parquet or .jsonl file")
    return kind


def _need_pyarrow(path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise InvalidInput(
            f"reading or writing {path.name} needs pyarrow: pip install 'stratus[pandas]'"
        ) from None


@dataclass
class RowFile:
    """A file of rows: how many (when known) and the rows themselves, read lazily."""

    path: Path
    total: int | None
    rows: Iterator[Any]

    def batches(self, size: int) -> Iterator[list[Any]]:
        return chunked(self.rows, size)


def open_rows(path: Path) -> RowFile:
    """The rows of a CSV, Parquet or JSON-lines file, each an object keyed by column.

    Raises:
        ValueError: the extension is not one of `KINDS`.
        InvalidInput: pyarrow is missing, or the file cannot be read.
    """
    kind = kind_of(path)
    if kind == "jsonl":
        return RowFile(path, _count_lines(path), _json_lines(path))
    _need_pyarrow(path)
    try:
        if kind == "csv":
            import pyarrow.csv as pa_csv

            table = pa_csv.read_csv(path)
            return RowFile(path, table.num_rows, _table_rows(table.to_batches()))
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        return RowFile(path, parquet.metadata.num_rows, _table_rows(parquet.iter_batches()))
    except OSError:
        raise
    except Exception as exc:  # pyarrow's ArrowInvalid and friends
        raise InvalidInput(f"cannot read {path.name}: {exc}") from None


def _table_rows(batches: Iterable[Any]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        yield from batch.to_pylist()


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def _json_lines(path: Path) -> Iterator[Any]:
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise InvalidInput(f"{path.name} line {number} is not JSON: {exc}") from None


def chunked(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of `size` rows (the last one shorter)."""
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def with_predictions(rows: list[Any], predictions: list[Any]) -> list[dict[str, Any]]:
    """Each row with its prediction: a `prediction` column, or one column per key when the
    prediction is an object (`prediction_KEY` where the key is already a column; `_1`, `_2`…
    added to any name still taken). A row that is not an object becomes an `instance` column."""
    if len(rows) != len(predictions):
        raise InvalidInput(f"the endpoint gave {len(predictions)} predictions for {len(rows)} rows")
    out = []
    for row, prediction in zip(rows, predictions, strict=True):
        merged = dict(row) if isinstance(row, dict) else {"instance": row}
        if isinstance(prediction, dict):
            for key, value in prediction.items():
                column = f"{PREDICTION}_{key}" if str(key) in merged else str(key)
                merged[_free(column, merged)] = value
        else:
            merged[_free(PREDICTION, merged)] = prediction
        out.append(merged)
    return out


def _free(name: str, taken: dict[str, Any]) -> str:
    """`name`, or `name_1`, `name_2`… when the row already has a column of that name."""
    if name not in taken:
        return name
    n = 1
    while f"{name}_{n}" in taken:
        n += 1
    return f"{name}_{n}"


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write rows as CSV, Parquet or JSON lines (by extension), atomically."""
    kind = kind_of(path)
    if kind == "parquet":
        _need_pyarrow(path)
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pa.Table.from_pylist(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInput(f"cannot write {path.name} as Parquet: {exc}") from None
        _atomically(path, lambda tmp: pq.write_table(table, str(tmp)))
    elif kind == "csv":
        _atomically(path, lambda tmp: _write_csv(tmp, rows))
    else:
        _atomically(path, lambda tmp: _write_json_lines(tmp, rows))


def columns_of(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Every key of the rows, in the order first seen."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns_of(rows))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def _write_json_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("wb") as f:
        for row in rows:
            f.write(json.dumps(row, default=str).encode() + b"\n")


def _atomically(path: Path, write: Callable[[Path], None]) -> None:
    path = path.absolute()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
