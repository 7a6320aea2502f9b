"""Pass-through columns: ids, subjects and timestamps that a request carries beside the model's
inputs, which the model never sees.

An endpoint declares them (`spec.passthrough`). The replica takes them out of each request
before its rows are checked against the signature (`protocols.parse_request`), then echoes them
in the answer; data capture keeps them with each row. Here: taking them out of a JSON document
of the plain or MLflow protocol, or out of an MLflow CSV body (v2 tensors are taken out in
`protocols`, once decoded), and checking that each holds one value per row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection
from typing import Any

from stratus.core.errors import InvalidInput
from stratus.registry.signatures import Signature

#: The plain protocol's field for pass-through columns when rows are lists (and the answer's).
FIELD = "passthrough"


def carried_by(names: Collection[str], signature: Signature | None) -> frozenset[str]:
    """The pass-through columns a version's requests lose: those that are not its inputs (a
    version trained with its id column keeps getting it while one without it rolls out)."""
    if signature is None:
        return frozenset(names)
    return frozenset(names) - signature.input_set


def from_json(protocol: str, document: Any, names: Collection[str]) -> dict[str, list[Any]]:
    """Take the pass-through columns out of a plain or MLflow document (changed in place).

    Where a request carries none, nothing is taken; a body of the wrong shape is left for the
    protocol's parser to name.
    """
    found: dict[str, list[Any]] = {}
    if type(document) is not dict:
        return found
    if protocol == "plain":
        if FIELD in document:
            _from_field(document.pop(FIELD), names, found)
        _from_records(document.get("instances"), names, found)
        return found
    for key in ("dataframe_records", "instances"):
        _from_records(document.get(key), names, found)
    inputs = document.get("inputs")
    if type(inputs) is dict:
        for name in names:
            if name in inputs:
                found[name] = _column(name, inputs.pop(name))
    else:
        _from_records(inputs, names, found)
    split = document.get("dataframe_split")
    if type(split) is dict:
        _from_split(split, names, found)
    return found


def from_csv(body: bytes, names: Collection[str]) -> tuple[bytes, dict[str, list[Any]]]:
    """An MLflow CSV body without its pass-through columns, and their values (integers or
    floats when every cell of a column is one, else the text)."""
    try:
        text = body.decode("utf-8-sig")
        lines = [row for row in csv.reader(io.StringIO(text)) if row]
    except (UnicodeDecodeError, csv.Error):
        return body, {}  # the parser says what is wrong with it
    if not lines or not any(name in names for name in lines[0]):
        return body, {}
    header = lines[0]
    taken = [j for j, name in enumerate(header) if name in names]
    kept = [j for j in range(len(header)) if j not in taken]
    for i, row in enumerate(lines[1:]):
        if len(row) != len(header):
            raise InvalidInput(
                f"CSV row {i} has {len(row)} values; the header names {len(header)} columns"
            )
    found = {header[j]: _guess([row[j] for row in lines[1:]]) for j in taken}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in lines:
        writer.writerow([row[j] for j in kept])
    return out.getvalue().encode(), found


def check_rows(found: dict[str, list[Any]] | None, n_rows: int) -> None:
    """Each pass-through column holds one value per row of the request."""
    for name, values in (found or {}).items():
        if len(values) != n_rows:
            raise InvalidInput(
                f"pass-through column {name!r} has {len(values)} values; the request has "
                f"{n_rows} rows"
            )


def v2_datatype(values: list[Any]) -> str:
    """The v2 datatype that holds a pass-through column's values when it is echoed."""
    present = [v for v in values if v is not None]
    if present and all(type(v) is bool for v in present):
        return "BOOL"
    if present and all(type(v) is int for v in present) and len(present) == len(values):
        return "INT64"
    if present and all(type(v) in (int, float) for v in present):
        return "FP64"
    return "BYTES"


def _from_field(value: Any, names: Collection[str], found: dict[str, list[Any]]) -> None:
    if type(value) is not dict:
        raise InvalidInput(
            f"'{FIELD}' must be an object of columns, {{\"NAME\": [one value per row]}}"
        )
    for name, column in value.items():
        if name not in names:
            raise InvalidInput(
                f"'{FIELD}' names {name!r}, which is not a pass-through column of this "
                f"endpoint; declared: {', '.join(sorted(names))}"
            )
        found[name] = _column(name, column)


def _from_records(rows: Any, names: Collection[str], found: dict[str, list[Any]]) -> None:
    if type(rows) is not list or not rows:
        return
    objects = [row for row in rows if type(row) is dict]
    if not objects:
        return  # rows as lists
    for name in names:
        if any(name in row for row in objects):
            found[name] = [row.pop(name, None) if type(row) is dict else None for row in rows]


def _from_split(split: dict[str, Any], names: Collection[str], found: dict[str, list[Any]]) -> None:
    columns, data = split.get("columns"), split.get("data")
    if type(columns) is not list or type(data) is not list or not _any_of(names, columns):
        return
    taken = [j for j, name in enumerate(columns) if type(name) is str and name in names]
    if not taken:
        return
    width = len(columns)
    for i, row in enumerate(data):
        if type(row) is not list or len(row) != width:
            what = f"has {len(row)} values" if type(row) is list else "is not a list"
            raise InvalidInput(
                f"'dataframe_split.data' row {i} {what}; 'columns' names {width} columns"
            )
    for j in taken:
        found[columns[j]] = [row[j] for row in data]
    kept = [j for j in range(width) if j not in taken]
    split["columns"] = [columns[j] for j in kept]
    split["data"] = [[row[j] for j in kept] for row in data]


def _any_of(names: Collection[str], columns: list[Any]) -> bool:
    try:
        return not frozenset(names).isdisjoint(columns)  # at C speed
    except TypeError:  # a column name that cannot be hashed: the parser names it
        return False


def _column(name: str, values: Any) -> list[Any]:
    if type(values) is not list:
        raise InvalidInput(f"pass-through column {name!r} must be a list of one value per row")
    return values


def _guess(cells: list[str]) -> list[Any]:
    for kind in (int, float):
        try:
            return [kind(cell) for cell in cells]
        except ValueError:
            continue
    return cells
