"""Request bodies in, `Batch` out; predictions in, response bodies out, for the three inference
protocols a replica speaks: Open Inference Protocol v2, MLflow scoring, and plain JSON.

The replica runtime calls `parse_request` on each body, predicts, then calls `render`. Both are
pure functions: JSON goes through orjson, values through `Batch`, whose errors name the input and
the row. Every problem with a request is an `InvalidInput` (400) or `PayloadTooLarge` (413).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any, Literal

import numpy as np
import orjson

from stratus._version import __version__
from stratus.core.errors import InvalidInput, PayloadTooLarge, StratusError
from stratus.registry.batches import Batch
from stratus.registry.signatures import (
    PROBABILITIES_OUTPUT,
    Signature,
    TensorSpec,
    class_name,
    key_problem,
)
from stratus.serving import binary_tensors
from stratus.serving import passthrough as pass_through

ProtocolName = Literal["v2", "mlflow", "plain"]
PROTOCOLS: tuple[ProtocolName, ...] = ("v2", "mlflow", "plain")

#: The name of the output in a v2 response when neither the signature nor the model names it.
DEFAULT_OUTPUT = "predict"

Method = Literal["predict", "predict_proba"]
METHODS: tuple[Method, ...] = ("predict", "predict_proba")
#: Where each protocol's request carries its parameters (`{"method": "predict_proba"}`).
PARAMETERS_FIELD: dict[ProtocolName, str] = {
    "v2": "parameters",
    "mlflow": "params",
    "plain": "parameters",
}


@dataclass(frozen=True, slots=True)
class Probabilities:
    """A classifier's answer to `predict_proba`: one row per input row, one column per class.

    v2 renders it as the output `probabilities` ([n, classes], FP32 or FP64) with the classes
    in the output's `parameters`; MLflow and plain as one object per row keyed by class name
    (`class_name`: 1.0 is "1", True is "true").
    """

    values: np.ndarray
    classes: Sequence[Any]

    def records(self) -> list[dict[str, Any]]:
        keys = [class_name(c) for c in self.classes]
        return [dict(zip(keys, row, strict=True)) for row in self.values]


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request: its rows, and what a v2 request adds around them."""

    batch: Batch
    id: str | None = None  # v2: the request's own "id", echoed in the response
    outputs: tuple[str, ...] | None = None  # v2: the outputs asked for, by name
    #: what the request asks of the model: `predict` (labels, values) or `predict_proba`
    method: Method = "predict"
    # v2, binary tensor extension: every output as binary (`binary_data_output`), and the
    # outputs that say for themselves (`binary_data` in their parameters)
    binary_data_output: bool = False
    binary_data: Mapping[str, bool] = field(default_factory=dict)
    #: the endpoint's declared pass-through columns this request carried (ids, timestamps),
    #: one value per row: taken out before the model sees the rows, echoed in the answer
    passthrough: dict[str, list[Any]] | None = None


def parse(
    protocol: ProtocolName,
    body: bytes,
    content_type: str | None,
    signature: Signature | None,
    *,
    max_rows: int,
) -> Batch:
    """The rows of a request body; `parse_request` also gives a v2 request's id and outputs."""
    return parse_request(protocol, body, content_type, signature, max_rows=max_rows).batch


def parse_request(
    protocol: ProtocolName,
    body: bytes,
    content_type: str | None,
    signature: Signature | None,
    *,
    max_rows: int,
    passthrough: frozenset[str] = frozenset(),
) -> Request:
    """Read a request body of `protocol`, checked against `signature`.

    Only the MLflow protocol looks at `content_type` (text/csv is CSV with a header row); the
    others read any body as JSON, so that `curl -d` works without a header. Without a signature
    the inputs are named by the request (object keys, columns, v2 tensor names) or f0..fN-1.

    A v2 tensor's datatype must be one its input's dtype accepts (integers or any FP for
    floats, INT/UINT for integers, BOOL, BYTES for strings), and its values must fit the
    datatype (1000 is no INT8, 1.5 no INT64, 1e39 no FP32); then they are checked against the
    signature's dtypes (so INT8 data is read as the floats a float input wants). A v2 body
    may carry tensors as binary data after its JSON (the binary tensor extension): the gateway
    puts the JSON's length in `content_type` (`binary_tensors.content_type_with_header`).

    `passthrough` names columns the endpoint lets a request carry beside the model's inputs (a
    customer id, a timestamp): a v2 tensor, a column of an MLflow frame or CSV, a key of row
    objects, or, for plain rows as lists, `{"passthrough": {"NAME": [one value per row]}}`.
    They are taken out before the rows are checked (the model never sees them) and returned
    in `Request.passthrough`, which `render` echoes. Without any, nothing is looked for.

    Raises:
        InvalidInput: the body is not valid JSON or CSV, is not shaped as the protocol wants, or
            its values do not fit the signature; the detail names the field, input and row.
        PayloadTooLarge: the request holds more than `max_rows` rows.
    """
    if passthrough and protocol != "v2":
        return _parse_carrying(protocol, body, content_type, signature, max_rows, passthrough)
    if protocol == "mlflow" and _is_csv(content_type):
        return Request(_parse_csv(body, signature, max_rows))
    if protocol == "v2":
        document, binary = v2_document(body, content_type)
        return _parse_v2(document, signature, max_rows, binary, passthrough)
    document = _load_json(body)
    if protocol == "mlflow":
        batch = _parse_mlflow(document, signature, max_rows)
        return Request(batch, method=method_of("mlflow", document))
    if protocol == "plain":
        batch = _parse_plain(document, signature, max_rows)
        return Request(batch, method=method_of("plain", document))
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def render(
    protocol: ProtocolName,
    predictions: Any,
    *,
    model_name: str,
    model_version: str,
    request_id: str,
    signature: Signature | None = None,
    request: Request | None = None,
) -> bytes:
    """The response body for `predictions` (an array, or a dict of arrays, one entry per row).

    MLflow and plain give `{"predictions": [...]}`, a list of per-row objects for a dict. v2
    gives one output per array, named after the dict keys, else the signature's first output,
    else "predict"; its "id" is the request's own id when it sent one, else `request_id`.
    Float NaN and infinities are written as null (JSON has no spelling for them). The request's
    pass-through columns come back beside the predictions: MLflow and plain as
    `"passthrough": {"NAME": [...]}`, v2 as one more output tensor each. Outputs a v2 request
    asked for as binary data (`binary_data`, `binary_data_output`) go as bytes after the JSON,
    and the body is framed (`binary_tensors.frame_answer`) for the gateway.

    `Probabilities` (a `predict_proba` answer) render as that class says.

    Raises:
        InvalidInput: a v2 request asked for an output the model does not return.
    """
    if protocol == "v2":
        return _render_v2(predictions, model_name, model_version, request_id, signature, request)
    if isinstance(predictions, Probabilities):
        predictions = predictions.records()
    elif isinstance(predictions, Mapping):
        predictions = _per_row_objects(predictions)
    if request is not None and request.passthrough:
        answer = {"predictions": predictions, pass_through.FIELD: request.passthrough}
        return orjson.dumps(answer, option=_DUMP, default=_default)
    return orjson.dumps({"predictions": predictions}, option=_DUMP, default=_default)


def v2_model_metadata(name: str, version: str, signature: Signature | None) -> dict[str, Any]:
    """The body of `GET .../v2/models/{name}`: the model's inputs and outputs as v2 tensors."""
    return {
        "name": name,
        "versions": [str(version)],
        "platform": "stratus",
        "inputs": [] if signature is None else [_spec_metadata(s) for s in signature.inputs],
        "outputs": [] if signature is None else [_spec_metadata(s) for s in signature.outputs],
    }


def v2_server_metadata() -> dict[str, Any]:
    """The body of `GET /v2`: who answers, and the protocol extensions it supports."""
    return {"name": "stratus", "version": __version__, "extensions": ["binary_tensor_data"]}


def v2_error(error: StratusError) -> bytes:
    """An error as the v2 protocol writes it, `{"error": "..."}` (what Triton's and KServe's
    clients show), with the error's code and facts beside it."""
    return orjson.dumps({**error.extra, "code": error.code, "error": error.detail})


def v2_document(body: bytes, content_type: str | None) -> tuple[Any, memoryview | None]:
    """A v2 body's JSON document, and the binary tensor data after it when the gateway said
    (in `content_type`) where the JSON ends."""
    length = binary_tensors.header_length(content_type)
    if length is None:
        return _load_json(body), None
    header, binary = binary_tensors.split_body(body, length)
    return _load_json(header), binary


def method_of(protocol: ProtocolName, document: Any) -> Method:
    """What a JSON request asks of the model: its parameters' `method` (v2 and plain:
    `parameters`, MLflow: `params`), `predict` by default. Other parameters are left alone.

    Raises:
        InvalidInput: the parameters are not an object, or `method` is neither `predict` nor
            `predict_proba`.
    """
    field_name = PARAMETERS_FIELD[protocol]
    parameters = document.get(field_name) if type(document) is dict else None
    if parameters is None:
        return "predict"
    if type(parameters) is not dict:
        raise InvalidInput(f"{field_name!r} must be an object, got {_json_type(parameters)}")
    method = parameters.get("method", "predict")
    if method not in METHODS:
        raise InvalidInput(
            f"parameter 'method' must be 'predict' (labels or values) or 'predict_proba' "
            f"(class probabilities), got {_show(method)}"
        )
    return method  # type: ignore[no-any-return]


# --- JSON and row limits ---------------------------------------------------------------------

_DUMP = orjson.OPT_SERIALIZE_NUMPY


def _load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None


def _check_rows(n_rows: int, max_rows: int) -> None:
    if n_rows > max_rows:
        raise PayloadTooLarge(
            f"the request holds {n_rows} rows; the limit is {max_rows} rows per request",
            max_rows=max_rows,
        )


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "null" if value is None else f"a single value ({_show(value)})"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_fields(document: dict[str, Any], allowed: Sequence[str], expected: str) -> None:
    for key in document:
        if key not in allowed:
            raise InvalidInput(f"unknown field {key!r}; {expected}")


# --- pass-through columns (plain and MLflow; v2 in `_parse_v2`) ------------------------------


def _parse_carrying(
    protocol: ProtocolName,
    body: bytes,
    content_type: str | None,
    signature: Signature | None,
    max_rows: int,
    names: frozenset[str],
) -> Request:
    """A plain or MLflow request whose declared pass-through columns are taken out first."""
    method: Method = "predict"
    if protocol == "mlflow" and _is_csv(content_type):
        body, carried = pass_through.from_csv(body, names)
        batch = _parse_csv(body, signature, max_rows)
    else:
        document = _load_json(body)
        method = method_of(protocol, document)
        carried = pass_through.from_json(protocol, document, names)
        if protocol == "mlflow":
            batch = _parse_mlflow(document, signature, max_rows)
        elif protocol == "plain":
            batch = _parse_plain(document, signature, max_rows)
        else:
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    pass_through.check_rows(carried, batch.n_rows)
    return Request(batch, passthrough=carried or None, method=method)


# --- plain JSON ------------------------------------------------------------------------------

_PLAIN_SHAPE = 'the plain protocol expects {"instances": [row, ...]} (optional: "parameters")'


def _parse_plain(document: Any, signature: Signature | None, max_rows: int) -> Batch:
    if not isinstance(document, dict):
        raise InvalidInput(f"the body is {_json_type(document)}; {_PLAIN_SHAPE}")
    _check_fields(document, ("instances", "parameters"), _PLAIN_SHAPE)
    if "instances" not in document:
        raise InvalidInput(f"missing field 'instances'; {_PLAIN_SHAPE}")
    return _instances(document["instances"], "instances", signature, max_rows)


def _instances(values: Any, field: str, signature: Signature | None, max_rows: int) -> Batch:
    """A list of rows (lists or objects), a list of tensors, or a list of single values."""
    if not isinstance(values, list):
        raise InvalidInput(f"{field!r} must be a list of rows, got {_json_type(values)}")
    _check_rows(len(values), max_rows)
    if values and not isinstance(values[0], list | dict):
        # One value per row: a single input's column (or, for a tensor, a shape error).
        if signature is None:
            return Batch.from_columns({"f0": values})
        if len(signature.inputs) == 1:
            return Batch.from_columns({signature.inputs[0].name: values}, signature)
        width = len(signature.inputs)
        raise InvalidInput(
            f"{field!r} row 0 is {_json_type(values[0])}; with {width} inputs each row must be "
            f"a list of {width} values or an object keyed by input name"
        )
    if values and type(values[0]) is dict:
        return _records(values, signature)
    return Batch.from_rows(values, signature)


def _records(records: list[Any], signature: Signature | None) -> Batch:
    """Rows as objects keyed by input name."""
    if signature is not None and len(signature.inputs) > 1 and _is_tabular(signature):
        # Pick the values out at C speed; any odd row sends all of them the slow way, whose
        # error names the row and the key.
        width = len(signature.inputs)
        if all(type(row) is dict and len(row) == width for row in records):
            pick = itemgetter(*signature.input_names)
            try:
                return Batch.from_rows([list(pick(row)) for row in records], signature)
            except KeyError:
                pass
    return Batch.from_rows(records, signature)


def _is_tabular(signature: Signature) -> bool:
    return signature.common_dtype is not None or signature.is_tabular


# --- MLflow scoring protocol -----------------------------------------------------------------

_MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_MLFLOW_SHAPE = (
    "the MLflow protocol expects exactly one of 'dataframe_split', 'dataframe_records', "
    "'instances' or 'inputs' (and optionally 'params')"
)


def _parse_mlflow(document: Any, signature: Signature | None, max_rows: int) -> Batch:
    if not isinstance(document, dict):
        raise InvalidInput(f"the body is {_json_type(document)}; {_MLFLOW_SHAPE}")
    _check_fields(document, (*_MLFLOW_FORMATS, "params"), _MLFLOW_SHAPE)
    formats = [key for key in _MLFLOW_FORMATS if key in document]
    if len(formats) != 1:
        got = "none" if not formats else " and ".join(repr(f) for f in formats)
        raise InvalidInput(f"{_MLFLOW_SHAPE}; got {got}")
    if "params" in document and not isinstance(document["params"], dict):
        raise InvalidInput(f"'params' must be an object, got {_json_type(document['params'])}")
    key = formats[0]
    value = document[key]
    if key == "dataframe_split":
        return _dataframe_split(value, signature, max_rows)
    if key == "dataframe_records":
        if not isinstance(value, list):
            raise InvalidInput(
                f"'dataframe_records' must be a list of objects, got {_json_type(value)}"
            )
        _check_rows(len(value), max_rows)
        for i, row in enumerate(value):
            if type(row) is not dict:
                raise InvalidInput(
                    f"'dataframe_records' row {i} is {_json_type(row)}; every row must be an "
                    "object keyed by column name"
                )
        return _records(value, signature)
    if key == "inputs" and isinstance(value, dict):
        return _columns(value, signature, max_rows)
    if key == "inputs" and not isinstance(value, list):
        raise InvalidInput(
            f"'inputs' must be an object of columns or a list of rows, got {_json_type(value)}"
        )
    return _instances(value, key, signature, max_rows)


def _columns(columns: dict[str, Any], signature: Signature | None, max_rows: int) -> Batch:
    first = next(iter(columns.values()), None)
    if type(first) is list:
        _check_rows(len(first), max_rows)
        if (
            signature is not None
            and _is_tabular(signature)
            and columns.keys() == signature.input_set
        ):
            # Rows are much cheaper to check than columns: turn well-formed columns into rows.
            ordered = [columns[name] for name in signature.input_names]
            n = len(first)
            if n and all(type(column) is list and len(column) == n for column in ordered):
                rows = [list(row) for row in zip(*ordered, strict=True)]
                return Batch.from_rows(rows, signature)
    return Batch.from_columns(columns, signature)


_SPLIT_SHAPE = '\'dataframe_split\' must be an object {"columns": [...], "data": [[...], ...]}'


def _dataframe_split(split: Any, signature: Signature | None, max_rows: int) -> Batch:
    if not isinstance(split, dict):
        raise InvalidInput(f"{_SPLIT_SHAPE}, got {_json_type(split)}")
    _check_fields(split, ("columns", "data", "index"), f"{_SPLIT_SHAPE} (and optionally 'index')")
    data = split.get("data")
    if not isinstance(data, list):
        raise InvalidInput(f"'dataframe_split.data' must be a list of rows, got {_json_type(data)}")
    _check_rows(len(data), max_rows)
    columns = split.get("columns")
    if columns is None:
        return Batch.from_rows(data, signature)
    if signature is not None and type(columns) is list and tuple(columns) == signature.input_names:
        return Batch.from_rows(data, signature)  # the usual case: already in signature order
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InvalidInput("'dataframe_split.columns' must be a list of column names")
    if len(set(columns)) != len(columns):
        twice = next(c for i, c in enumerate(columns) if c in columns[:i])
        raise InvalidInput(f"column {twice!r} appears twice in 'dataframe_split.columns'")
    if signature is not None and signature.is_tensor and columns != [signature.inputs[0].name]:
        return Batch.from_rows(data, signature)  # the columns spell out the tensor's elements
    _check_widths(data, len(columns))
    if signature is None or signature.is_tensor:
        by_name = {name: [row[j] for row in data] for j, name in enumerate(columns)}
        return Batch.from_columns(by_name, signature)
    if set(columns) != signature.input_set:
        raise InvalidInput(key_problem(dict.fromkeys(columns), signature.input_names))
    order = [columns.index(name) for name in signature.input_names]
    return Batch.from_rows([[row[j] for j in order] for row in data], signature)


def _check_widths(data: list[Any], width: int) -> None:
    for i, row in enumerate(data):
        if not isinstance(row, list):
            raise InvalidInput(
                f"'dataframe_split.data' row {i} is {_json_type(row)}; every row must be a list"
            )
        if len(row) != width:
            raise InvalidInput(
                f"'dataframe_split.data' row {i} has {len(row)} values; "
                f"'columns' names {width} columns"
            )


# --- CSV (MLflow, text/csv) ------------------------------------------------------------------


def _is_csv(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "text/csv":
        return True
    if media in ("", "application/json") or media.endswith("+json"):
        return False
    raise InvalidInput(
        f"the content type {media!r} is not supported; send application/json or text/csv"
    )


def _parse_csv(body: bytes, signature: Signature | None, max_rows: int) -> Batch:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the CSV body is not UTF-8: {exc}") from None
    try:
        lines = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as exc:
        raise InvalidInput(f"the body is not valid CSV: {exc}") from None
    if not lines:
        raise InvalidInput("the CSV body is empty; it needs a header row of column names")
    header, rows = lines[0], lines[1:]
    _check_rows(len(rows), max_rows)
    if not rows:
        raise InvalidInput("the CSV body holds a header but no rows")
    if len(set(header)) != len(header):
        twice = next(c for i, c in enumerate(header) if c in header[:i])
        raise InvalidInput(f"column {twice!r} appears twice in the CSV header")
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise InvalidInput(
                f"CSV row {i} has {len(row)} values; the header names {len(header)} columns"
            )
    cells = dict(zip(header, zip(*rows, strict=True), strict=True))
    if signature is None:
        return Batch.from_columns({name: _guess_cells(values) for name, values in cells.items()})
    if signature.is_tensor:
        spec = signature.inputs[0]
        columns = [_cells(name, values, spec.dtype) for name, values in cells.items()]
        return Batch.from_rows([list(row) for row in zip(*columns, strict=True)], signature)
    if cells.keys() != signature.input_set:
        raise InvalidInput(f"CSV header: {key_problem(cells, signature.input_names)}")
    columns = [_cells(s.name, cells[s.name], s.dtype) for s in signature.inputs]
    return Batch.from_rows([list(row) for row in zip(*columns, strict=True)], signature)


def _cells(name: str, values: Sequence[str], dtype: str) -> list[Any]:
    """A CSV column's cells as the values of `dtype`; empty float cells are NaN."""
    if dtype == "string":
        return list(values)
    convert = float if dtype.startswith("float") else int if dtype.startswith("int") else None
    if convert is not None:
        try:
            return list(map(convert, values))
        except ValueError:
            pass  # an empty cell, or a bad one: the loop below handles and names it
    out: list[Any] = []
    for i, cell in enumerate(values):
        text = cell.strip()
        try:
            if dtype.startswith("float"):
                out.append(float(text) if text else math.nan)
            elif dtype.startswith("int"):
                out.append(int(text))
            else:
                out.append(_BOOLS[text.lower()])
        except (ValueError, KeyError):
            raise InvalidInput(
                f"CSV column {name!r}: expected {dtype}, got {_show(cell)} in row {i}"
            ) from None
    return out


_BOOLS = {"true": True, "false": False, "1": True, "0": False}


def _guess_cells(values: Sequence[str]) -> list[Any]:
    """Without a signature: integers if every cell is one, else floats, else the strings."""
    for kind in ("int64", "float64"):
        try:
            return _cells("", values, kind)
        except InvalidInput:
            continue
    return list(values)


# --- Open Inference Protocol v2 --------------------------------------------------------------

_V2_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": object,
}
_INTS = frozenset(d for d in _V2_DTYPES if "INT" in d)
_FLOATS = frozenset(d for d in _V2_DTYPES if d.startswith("FP"))
# The v2 datatypes each signature dtype accepts: ints and any float go into floats.
_ACCEPTS: dict[str, frozenset[str]] = {
    "float64": _FLOATS | _INTS,
    "float32": _FLOATS | _INTS,
    "int64": _INTS,
    "int32": _INTS,
    "bool": frozenset({"BOOL"}),
    "string": frozenset({"BYTES"}),
}
_DATATYPE_HINTS = {
    "float64": "FP64, FP32, FP16 or an integer datatype",
    "float32": "FP32, FP64, FP16 or an integer datatype",
    "int64": "an INT or UINT datatype",
    "int32": "an INT or UINT datatype",
    "bool": "BOOL",
    "string": "BYTES",
}
_SPEC_DATATYPES = {
    "float64": "FP64",
    "float32": "FP32",
    "int64": "INT64",
    "int32": "INT32",
    "bool": "BOOL",
    "string": "BYTES",
}
_V2_SHAPE = 'the v2 protocol expects {"inputs": [{"name", "shape", "datatype", "data"}, ...]}'


@dataclass(slots=True)
class _Tensor:
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    array: np.ndarray | None = None  # binary data, already of its datatype and shape

    @property
    def n_rows(self) -> int:
        return self.shape[0]


class _BinaryData:
    """The bytes after a v2 body's JSON, handed to the binary inputs in their order."""

    __slots__ = ("view", "taken")

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.taken = 0

    def take(self, name: str, size: Any) -> memoryview:
        if type(size) is not int or size < 0:
            raise InvalidInput(
                f"input {name!r}: 'binary_data_size' must be a number of bytes, got {_show(size)}"
            )
        left = len(self.view) - self.taken
        if size > left:
            raise InvalidInput(
                f"input {name!r}: binary_data_size is {size} bytes; only {left} bytes of binary "
                "data are left after the JSON header and the inputs before it"
            )
        self.taken += size
        return self.view[self.taken - size : self.taken]

    def check_all_taken(self) -> None:
        extra = len(self.view) - self.taken
        if extra:
            raise InvalidInput(
                f"the body holds {extra} bytes of binary data that no input claims: the inputs' "
                f"binary_data_size add up to {self.taken} of the {len(self.view)} bytes after "
                "the JSON header (Inference-Header-Content-Length)"
            )


def _parse_v2(
    document: Any,
    signature: Signature | None,
    max_rows: int,
    binary: memoryview | None = None,
    passthrough: frozenset[str] = frozenset(),
) -> Request:
    if not isinstance(document, dict):
        raise InvalidInput(f"the body is {_json_type(document)}; {_V2_SHAPE}")
    _check_fields(document, ("id", "parameters", "inputs", "outputs"), _V2_SHAPE)
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput(f"'id' must be a string, got {_json_type(request_id)}")
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be an object")
    binary_data_output = parameters.get("binary_data_output", False)
    if type(binary_data_output) is not bool:
        raise InvalidInput(
            f"parameter 'binary_data_output' must be true or false, got {_show(binary_data_output)}"
        )
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        got = "none" if inputs is None else _json_type(inputs)
        raise InvalidInput(f"'inputs' must be a non-empty list of tensors, got {got}; {_V2_SHAPE}")
    data = None if binary is None else _BinaryData(binary)
    tensors = [_v2_tensor(i, tensor, max_rows, data) for i, tensor in enumerate(inputs)]
    if data is not None:
        data.check_all_taken()
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        twice = next(n for i, n in enumerate(names) if n in names[:i])
        raise InvalidInput(f"input {twice!r} appears twice in 'inputs'")
    carried = None
    if passthrough:
        tensors, carried = _v2_passthrough(tensors, passthrough)
    batch = _v2_batch(tensors, signature)
    pass_through.check_rows(carried, batch.n_rows)
    outputs, binary_data = _v2_outputs(document.get("outputs"))
    return Request(
        batch,
        request_id,
        outputs,
        binary_data_output=binary_data_output,
        binary_data=binary_data,
        passthrough=carried or None,
        method=method_of("v2", document),
    )


def _v2_passthrough(
    tensors: list[_Tensor], names: frozenset[str]
) -> tuple[list[_Tensor], dict[str, list[Any]]]:
    """The model's tensors, and the values of the pass-through ones (one value per row)."""
    kept: list[_Tensor] = []
    carried: dict[str, list[Any]] = {}
    for tensor in tensors:
        if tensor.name not in names:
            kept.append(tensor)
            continue
        n = tensor.n_rows
        if tensor.shape != [n] and tensor.shape != [n, 1]:
            raise InvalidInput(
                f"pass-through input {tensor.name!r}: shape {tensor.shape} does not fit one "
                f"value per row; expected [{n}] or [{n}, 1]"
            )
        array = tensor.array
        carried[tensor.name] = _flat(tensor) if array is None else array.reshape(-1).tolist()
    if not kept:
        raise InvalidInput(
            f"'inputs' holds only pass-through columns ({', '.join(carried)}); send the "
            "model's inputs too"
        )
    return kept, carried


def _v2_tensor(
    index: int, tensor: Any, max_rows: int, binary: _BinaryData | None = None
) -> _Tensor:
    if type(tensor) is not dict:
        raise InvalidInput(f"inputs[{index}] is {_json_type(tensor)}; {_V2_SHAPE}")
    name = tensor.get("name")
    if type(name) is not str or not name:
        raise InvalidInput(f"inputs[{index}]: 'name' must be a non-empty string")
    parameters = tensor.get("parameters")
    if parameters is not None:
        if type(parameters) is not dict:
            raise InvalidInput(f"input {name!r}: 'parameters' must be an object")
        if "binary_data_size" in parameters:
            size = parameters["binary_data_size"]
            return _v2_binary_tensor(name, tensor, size, max_rows, binary)
    try:
        shape, datatype, data = tensor["shape"], tensor["datatype"], tensor["data"]
    except KeyError as exc:
        raise InvalidInput(f"input {name!r}: missing field {exc.args[0]!r}") from None
    _check_v2_header(name, shape, datatype)
    if type(data) is not list:
        raise InvalidInput(f"input {name!r}: 'data' must be a list, got {_json_type(data)}")
    _check_rows(shape[0], max_rows)
    if shape[0] == 0:
        raise InvalidInput(f"input {name!r} holds no rows (shape {shape})")
    return _Tensor(name, shape, datatype, data)


def _v2_binary_tensor(
    name: str, tensor: dict[str, Any], size: Any, max_rows: int, binary: _BinaryData | None
) -> _Tensor:
    """An input whose values come as binary data after the JSON header."""
    if "data" in tensor:
        raise InvalidInput(
            f"input {name!r} has both 'data' and a binary_data_size; send its values one way"
        )
    if binary is None:
        raise InvalidInput(
            f"input {name!r} has a binary_data_size, but the request has no "
            "Inference-Header-Content-Length header to say where its JSON ends"
        )
    try:
        shape, datatype = tensor["shape"], tensor["datatype"]
    except KeyError as exc:
        raise InvalidInput(f"input {name!r}: missing field {exc.args[0]!r}") from None
    _check_v2_header(name, shape, datatype)
    raw = binary.take(name, size)
    _check_rows(shape[0], max_rows)
    if shape[0] == 0:
        raise InvalidInput(f"input {name!r} holds no rows (shape {shape})")
    array = binary_tensors.decode(name, datatype, shape, raw)
    return _Tensor(name, shape, datatype, [], array)


def _check_v2_header(name: str, shape: Any, datatype: Any) -> None:
    """A tensor's shape is a list of sizes, rows first, and its datatype one v2 knows."""
    if type(shape) is not list or not shape or not _is_shape(shape):
        raise InvalidInput(
            f"input {name!r}: 'shape' must be a list of sizes (rows first), got {_show(shape)}"
        )
    if datatype not in _V2_DTYPES:
        raise InvalidInput(
            f"input {name!r}: unknown datatype {_show(datatype)}; "
            f"expected one of {', '.join(_V2_DTYPES)}"
        )


def _is_shape(shape: list[Any]) -> bool:
    if len(shape) == 2:  # the common case, without a generator
        a, b = shape
        return type(a) is int and type(b) is int and a >= 0 and b >= 0
    return all(type(d) is int and d >= 0 for d in shape)


def _v2_outputs(outputs: Any) -> tuple[tuple[str, ...] | None, dict[str, bool]]:
    """The outputs asked for by name, and those that say whether they want binary data."""
    if outputs is None:
        return None, {}
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise InvalidInput("'outputs' must be a list of objects with a 'name'")
    binary: dict[str, bool] = {}
    for output in outputs:
        parameters = output.get("parameters")
        if parameters is None:
            continue
        name = output["name"]
        if not isinstance(parameters, dict):
            raise InvalidInput(f"output {name!r}: 'parameters' must be an object")
        if parameters.get("classification"):
            raise InvalidInput(
                f"output {name!r}: the classification extension (top classes) is not "
                "supported; ask for the output itself"
            )
        flag = parameters.get("binary_data")
        if flag is not None:
            if type(flag) is not bool:
                raise InvalidInput(
                    f"output {name!r}: 'binary_data' must be true or false, got {_show(flag)}"
                )
            binary[name] = flag
    return tuple(o["name"] for o in outputs) or None, binary


def _v2_batch(tensors: list[_Tensor], signature: Signature | None) -> Batch:
    if signature is None:
        return _v2_unsigned(tensors)
    names = {t.name for t in tensors}
    if names == signature.input_set:
        by_name = {t.name: t for t in tensors}
        for spec in signature.inputs:
            _check_datatype(by_name[spec.name], spec)
        if _is_tabular(signature):
            return _v2_columns([by_name[name] for name in signature.input_names], signature)
        columns = {spec.name: _typed(by_name[spec.name], spec) for spec in signature.inputs}
        return Batch.from_columns(columns, signature)
    if len(tensors) == 1 and signature.is_tensor:
        (tensor,) = tensors
        _check_datatype(tensor, signature.inputs[0])
        return Batch.from_tensor(signature.inputs[0].name, _typed(tensor), signature)
    if len(tensors) == 1 and _is_tabular(signature):
        return _v2_table(tensors[0], signature)
    width = len(signature.inputs)
    hint = (
        f"send one tensor per input or one tensor of shape [n, {width}] in signature order"
        if _is_tabular(signature)
        else "send one tensor per input"
    )
    raise InvalidInput(f"{key_problem(dict.fromkeys(names), signature.input_names)}; {hint}")


def _check_datatype(tensor: _Tensor, spec: TensorSpec) -> None:
    accepted = _ACCEPTS[spec.dtype]
    if tensor.datatype not in accepted:
        what = f"input {tensor.name!r}" if tensor.name == spec.name else f"input {spec.name!r}"
        raise InvalidInput(
            f"{what} is {spec.dtype} in the signature; datatype {tensor.datatype} cannot hold "
            f"it (send {_DATATYPE_HINTS[spec.dtype]})"
        )


def _v2_columns(tensors: list[_Tensor], signature: Signature) -> Batch:
    """One tensor per column of a table: shapes [n] or [n, 1], joined into rows."""
    first = tensors[0]
    n = first.n_rows
    columns = []
    for tensor in tensors:
        if tensor.n_rows != n:
            raise InvalidInput(
                f"input {tensor.name!r} has {tensor.n_rows} rows (shape {tensor.shape}), "
                f"input {first.name!r} has {n}"
            )
        if tensor.shape != [n] and tensor.shape != [n, 1]:
            raise InvalidInput(
                f"input {tensor.name!r}: shape {tensor.shape} does not fit one value per row; "
                f"expected [{n}] or [{n}, 1]"
            )
        _check_values(tensor)
        columns.append(_flat(tensor))
    if len(columns) == 1:
        return Batch.from_columns({first.name: columns[0]}, signature)
    return Batch.from_rows([list(row) for row in zip(*columns, strict=True)], signature)


def _v2_table(tensor: _Tensor, signature: Signature) -> Batch:
    """A single tensor [n, k] holding the k columns of a table, in signature order."""
    width = len(signature.inputs)
    if signature.common_dtype is not None:
        _check_datatype(tensor, signature.inputs[0])
    else:
        for spec in signature.inputs:
            _check_datatype(tensor, spec)
    shape, n = tensor.shape, tensor.n_rows
    _check_values(tensor)
    if width == 1 and shape in ([n], [n, 1]):
        return Batch.from_columns({signature.inputs[0].name: _flat(tensor)}, signature)
    if len(shape) != 2 or shape[1] != width:
        raise InvalidInput(
            f"input {tensor.name!r}: shape {shape} does not fit the signature's {width} inputs; "
            f"send shape [n, {width}] (columns in signature order) or one tensor per input"
        )
    data = tensor.data
    if tensor.array is not None:  # binary: rows straight from the array
        rows = tensor.array.reshape(n, width).tolist()
    elif len(data) == n and all(type(row) is list and len(row) == width for row in data):
        rows = data  # nested already, one list per row
    else:
        flat = _flat(tensor)
        rows = [flat[i : i + width] for i in range(0, n * width, width)]
    return Batch.from_rows(rows, signature)


def _v2_unsigned(tensors: list[_Tensor]) -> Batch:
    """Without a signature each tensor is an input; [n, 1] counts as a column."""
    arrays = {t.name: _typed(t) for t in tensors}
    if len(arrays) == 1:
        ((name, array),) = arrays.items()
        if array.ndim >= 2 and array.shape[1:] != (1,):
            return Batch.from_tensor(name, array)
    columns = {
        name: array[:, 0] if array.ndim == 2 and array.shape[1] == 1 else array
        for name, array in arrays.items()
    }
    return Batch.from_columns(columns)


def _check_values(tensor: _Tensor) -> None:
    """JSON values that a table's signature reads must still fit the datatype they came as
    (FP64 and BYTES the signature's own check covers; binary data fits by construction)."""
    if tensor.array is None and tensor.datatype not in ("FP64", "BYTES"):
        _typed_array(tensor)


def _flat(tensor: _Tensor) -> list[Any]:
    """The tensor's values in row-major order, checked against its shape."""
    if tensor.array is not None:
        values: list[Any] = tensor.array.ravel().tolist()
        return values
    flat = tensor.data
    for _ in range(len(tensor.shape) - 1):
        if not flat or not all(type(item) is list for item in flat):
            break
        flat = list(chain.from_iterable(flat))
    need = math.prod(tensor.shape)
    if len(flat) != need:
        raise InvalidInput(
            f"input {tensor.name!r}: shape {tensor.shape} needs {need} values, got {len(flat)}"
        )
    return flat


def _typed(tensor: _Tensor, spec: TensorSpec | None = None) -> np.ndarray:
    """The tensor as an array of its datatype and shape (a column for a scalar `spec`)."""
    array = _typed_array(tensor)
    if spec is not None and spec.is_scalar and array.shape[1:] == (1,):
        return array[:, 0]
    return array


def _typed_array(tensor: _Tensor) -> np.ndarray:
    """The tensor as an array of its datatype and shape; values must fit the datatype."""
    if tensor.array is not None:
        return tensor.array
    flat = _flat(tensor)
    datatype = tensor.datatype
    target = _V2_DTYPES[datatype]
    if datatype == "BYTES":
        _first_bad(tensor, flat, lambda v: isinstance(v, str), "strings")
        return np.array(flat, dtype=object).reshape(tensor.shape)
    if datatype in _FLOATS:
        if None in flat:  # null stands for a missing value
            flat = [math.nan if v is None else v for v in flat]
        allowed, wants = "iuf", "numbers"
    elif datatype in _INTS:
        allowed, wants = "iu", "integers"
    else:
        allowed, wants = "b", "true or false"
    try:
        array = np.asarray(flat)
    except (ValueError, TypeError):
        array = np.asarray(flat, dtype=object)
    if array.dtype.kind not in allowed or array.ndim != 1:
        _first_bad(tensor, flat, _ACCEPTS_VALUE[wants], wants)
        if datatype not in _INTS:
            raise InvalidInput(f"input {tensor.name!r}: datatype {datatype} needs {wants}")
        # Python ints too large for int64: the range check below names the first.
    if datatype in _INTS:
        info = np.iinfo(target)
        if array.dtype.kind not in "iu":  # values past int64 made numpy use floats or objects
            out_of_range = np.array([not info.min <= v <= info.max for v in flat], dtype=bool)
        else:
            out_of_range = (array < info.min) | (array > info.max)
        if out_of_range.any():
            i = int(np.flatnonzero(out_of_range)[0])
            raise _bad_value(tensor, i, flat[i], f"integers from {info.min} to {info.max}")
    elif datatype in ("FP16", "FP32") and array.size:
        largest = float(np.finfo(target).max)
        too_large = np.abs(array) > largest  # NaN (a null) compares false
        if too_large.any():
            i = int(np.flatnonzero(too_large)[0])
            raise _bad_value(tensor, i, flat[i], f"numbers from -{largest:g} to {largest:g}")
    return array.astype(target, copy=False).reshape(tensor.shape)


_ACCEPTS_VALUE: dict[str, Callable[[Any], bool]] = {
    "numbers": lambda v: type(v) in (int, float),
    "integers": lambda v: type(v) is int,
    "true or false": lambda v: type(v) is bool,
}


def _first_bad(tensor: _Tensor, flat: list[Any], ok: Callable[[Any], bool], wants: str) -> None:
    for i, value in enumerate(flat):
        if not ok(value):
            raise _bad_value(tensor, i, value, wants)


def _bad_value(tensor: _Tensor, index: int, value: Any, wants: str) -> InvalidInput:
    per_row = math.prod(tensor.shape[1:])
    return InvalidInput(
        f"input {tensor.name!r}: datatype {tensor.datatype} needs {wants}, "
        f"got {_show(value)} in row {index // per_row}"
    )


def _spec_metadata(spec: TensorSpec) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": spec.name,
        "datatype": _SPEC_DATATYPES[spec.dtype],
        "shape": spec.shape,
    }
    if spec.classes is not None:
        meta["parameters"] = {"classes": spec.classes}
    return meta


# --- rendering -------------------------------------------------------------------------------


def _render_v2(
    predictions: Any,
    model_name: str,
    model_version: str,
    request_id: str,
    signature: Signature | None,
    request: Request | None,
) -> bytes:
    classes = None
    if isinstance(predictions, Probabilities):
        classes, named = list(predictions.classes), {PROBABILITIES_OUTPUT: predictions.values}
    elif isinstance(predictions, Mapping):
        named = {str(key): value for key, value in predictions.items()}
    else:
        name = signature.outputs[0].name if signature and signature.outputs else DEFAULT_OUTPUT
        named = {name: predictions}
    wanted = request.outputs if request is not None else None
    carried = (request.passthrough if request is not None else None) or {}
    if wanted:
        for name in wanted:
            if name not in named and name not in carried:
                returned = ", ".join(map(repr, named))
                raise InvalidInput(f"output {name!r} was asked for; the model returns {returned}")
        named = {name: named[name] for name in wanted if name in named}
    # the binary tensor extension: outputs asked for as binary go after the JSON
    binary_default = request is not None and request.binary_data_output
    binary_named = request.binary_data if request is not None else {}
    blobs: list[bytes] = []
    outputs = []
    for name, value in named.items():
        array = np.asarray(value)
        datatype = _datatype_of(array.dtype)
        output: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if binary_named.get(name, binary_default):
            blob = binary_tensors.encode(array, datatype)
            output["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            output["data"] = array.ravel()
        if classes is not None and name == PROBABILITIES_OUTPUT:
            output.setdefault("parameters", {})["classes"] = [_plain(c) for c in classes]
        outputs.append(output)
    for name, values in carried.items():  # pass-through columns, echoed as JSON as they came
        datatype = pass_through.v2_datatype(values)
        outputs.append({"name": name, "shape": [len(values)], "datatype": datatype, "data": values})
    body = {
        "model_name": model_name,
        "model_version": str(model_version),
        "id": request.id if request is not None and request.id is not None else request_id,
        "outputs": outputs,
    }
    if blobs:  # framed, for the gateway to send with Inference-Header-Content-Length
        header = orjson.dumps(body, option=_DUMP, default=_default)
        return binary_tensors.frame_answer(header, blobs)
    return orjson.dumps(body, option=_DUMP, default=_default)


_KIND_DATATYPES = {"b": "BOOL", "i": "INT", "u": "UINT", "f": "FP"}


def _datatype_of(dtype: np.dtype[Any]) -> str:
    prefix = _KIND_DATATYPES.get(dtype.kind)
    if prefix is None:
        return "BYTES"
    return prefix if prefix == "BOOL" else f"{prefix}{dtype.itemsize * 8}"


def _per_row_objects(predictions: Mapping[str, Any]) -> list[dict[str, Any]]:
    keys = [str(key) for key in predictions]
    columns = [np.asarray(value).tolist() for value in predictions.values()]
    return [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)]


def _plain(value: Any) -> Any:
    """A class label as JSON: numpy scalars as Python values."""
    return value.item() if isinstance(value, np.generic) else value


def _default(value: Any) -> Any:
    """What orjson cannot write itself: strided or string arrays, numpy scalars, bytes."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")
