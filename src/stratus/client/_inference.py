"""How the SDK talks to an endpoint's gateway: rows into the request body of each inference
protocol (plain, MLflow scoring, Open Inference Protocol v2), and a response back into a
`Prediction` whose `predictions` hold one entry per row whatever the protocol.

Pure functions over JSON-shaped values; `Endpoints.predict` (`_endpoints.py`) sends the bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal

import orjson

Protocol = Literal["plain", "mlflow", "v2"]
PROTOCOLS: tuple[Protocol, ...] = ("plain", "mlflow", "v2")

#: The v2 tensor name for rows given as lists or single values (the server matches a single
#: tensor [n, k] to a tabular signature by position, whatever its name).
V2_INPUT = "input-0"


@dataclass(frozen=True)
class Prediction:
    """An endpoint's answer to one request.

    Attributes:
        predictions: one entry per row, whatever the protocol: the plain and MLflow
            `predictions` list; for v2, the single output's values per row, or one object
            per row keyed by output name when the model returns several.
        model_version: the version that answered, as `MODEL:VERSION` (X-Stratus-Model-Version).
        variant: the endpoint's variant that answered, e.g. `main` or `canary`.
        request_id: the request's id (X-Request-Id), as the logs and the audit log show it.
        body: the response body as the server sent it, parsed.
    """

    predictions: Any
    model_version: str = ""
    variant: str = ""
    request_id: str = ""
    body: Any = field(default=None, repr=False)


def path_of(protocol: str, endpoint: str) -> str:
    """The gateway path of `protocol`, under /inference/{project}/{endpoint}."""
    if protocol == "plain":
        return "/predict"
    if protocol == "mlflow":
        return "/invocations"
    if protocol == "v2":
        return f"/v2/models/{endpoint}/infer"
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")


def rows_of(instances: Any) -> list[Any]:
    """Rows from a list, a pandas DataFrame (records), a pyarrow Table or a numpy array."""
    if hasattr(instances, "to_pylist"):  # pyarrow
        rows: list[Any] = instances.to_pylist()
        return rows
    if hasattr(instances, "to_dict") and hasattr(instances, "columns"):  # pandas
        records: list[Any] = instances.to_dict(orient="records")
        return records
    if hasattr(instances, "tolist"):  # numpy
        listed = instances.tolist()
        return listed if isinstance(listed, list) else [listed]
    return list(instances)


def request_body(protocol: str, instances: Any, *, proba: bool = False) -> dict[str, Any]:
    """The JSON request body carrying `instances` (rows as lists, objects or single values);
    with `proba`, asking for class probabilities."""
    rows = rows_of(instances)
    body: dict[str, Any]
    if protocol == "plain":
        body = {"instances": rows}
    elif protocol == "mlflow":
        if rows and all(isinstance(row, Mapping) for row in rows):
            body = {"dataframe_records": rows}
        else:
            body = {"instances": rows}
    elif protocol == "v2":
        body = {"inputs": v2_inputs(rows)}
    else:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    return asking_probabilities(protocol, body) if proba else body


#: Where each protocol's request carries its parameters, `{"method": "predict_proba"}` among them.
PARAMETERS_FIELD = {"plain": "parameters", "mlflow": "params", "v2": "parameters"}


def asking_probabilities(protocol: str, body: dict[str, Any]) -> dict[str, Any]:
    """A copy of the JSON body that asks for class probabilities (`method: predict_proba` in the
    protocol's parameters, which are kept)."""
    field_name = PARAMETERS_FIELD.get(protocol)
    if field_name is None:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    parameters = body.get(field_name) or {}
    if not isinstance(parameters, Mapping):
        raise ValueError(f"the body's {field_name!r} must be an object")
    return {**body, field_name: {**parameters, "method": "predict_proba"}}


def v2_inputs(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Rows as v2 tensors: one [n] tensor per key for objects, else one [n, k] (or [n])
    tensor of the rows in order."""
    n = len(rows)
    if n and all(isinstance(row, Mapping) for row in rows):
        names: dict[str, None] = {}
        for row in rows:
            names.update(dict.fromkeys(row))
        tensors = []
        for name in names:
            column = [row.get(name) for row in rows]
            tensors.append(
                {"name": name, "shape": [n], "datatype": v2_datatype(column), "data": column}
            )
        return tensors
    if n and all(isinstance(row, list | tuple) for row in rows):
        width = len(rows[0])
        flat = [value for row in rows for value in row]
        shape = [n, width] if all(len(row) == width for row in rows) else [n]
        data: list[Any] = flat if len(shape) == 2 else [list(row) for row in rows]
        return [{"name": V2_INPUT, "shape": shape, "datatype": v2_datatype(flat), "data": data}]
    values = list(rows)
    return [{"name": V2_INPUT, "shape": [n], "datatype": v2_datatype(values), "data": values}]


def v2_datatype(values: Sequence[Any]) -> str:
    """The narrowest v2 datatype holding every value (None counts as a missing number)."""
    present = [v for v in values if v is not None]
    if not present:
        return "FP64"
    if all(isinstance(v, bool) for v in present):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "INT64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return "FP64"
    return "BYTES"


def predictions_of(body: Any) -> Any:
    """One entry per row from a response body of any protocol (see `Prediction`)."""
    if not isinstance(body, dict):
        return body
    if "predictions" in body:
        return body["predictions"]
    outputs = body.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        return body
    per_output = {str(out.get("name")): _output_rows(out) for out in outputs}
    if len(per_output) == 1:
        return next(iter(per_output.values()))
    names = list(per_output)
    return [dict(zip(names, row, strict=False)) for row in zip(*per_output.values(), strict=False)]


def _output_rows(output: Mapping[str, Any]) -> list[Any]:
    """A v2 output's values per row; class probabilities (an output whose parameters list its
    classes) as one object per row keyed by class, as the other protocols give them."""
    rows = reshape(output.get("data", []), output.get("shape") or [])
    parameters = output.get("parameters")
    classes = parameters.get("classes") if isinstance(parameters, Mapping) else None
    if not isinstance(classes, list) or not rows or not isinstance(rows[0], list):
        return rows
    keys = [class_name(c) for c in classes]
    return [dict(zip(keys, row, strict=False)) for row in rows]


def class_name(label: Any) -> str:
    """A class label as the key of its probability (1.0 is "1", True is "true"), as the
    server writes it."""
    if isinstance(label, bool):
        return "true" if label else "false"
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def reshape(data: list[Any], shape: Sequence[int]) -> list[Any]:
    """A row-major flat list as nested lists of `shape`; data already nested is kept."""
    if len(shape) <= 1 or not data or isinstance(data[0], list):
        return data
    inner = math.prod(shape[1:])
    rows = [data[i * inner : (i + 1) * inner] for i in range(shape[0])]
    return [reshape(row, shape[1:]) for row in rows]


def _default(value: Any) -> Any:
    """What orjson cannot write itself: decimals, times, bytes, numpy and pyarrow scalars."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date | datetime | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if hasattr(value, "as_py"):  # pyarrow scalars
        return value.as_py()
    raise TypeError(f"cannot send a {type(value).__name__} as JSON")


def dump_json(document: Any) -> bytes:
    """JSON bytes; NaN and infinities become null (JSON has no spelling for them)."""
    return orjson.dumps(document, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
