"""Inference protocols: v2, MLflow and plain bodies become batches; predictions become bodies."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn.datasets import load_breast_cancer

from stratus.core.errors import InvalidInput, PayloadTooLarge
from stratus.registry.batches import split_rows
from stratus.registry.signatures import Signature, TensorSpec, infer_signature
from stratus.serving.protocols import (
    ProtocolName,
    Request,
    parse,
    parse_request,
    render,
    v2_model_metadata,
)

CANCER = load_breast_cancer(as_frame=True).data  # 30 float columns, with spaces in their names
CANCER_SIGNATURE = infer_signature(CANCER)
NAMES = [str(name) for name in CANCER.columns]
MATRIX = CANCER.iloc[:3].to_numpy()
ROWS: list[list[float]] = MATRIX.tolist()
RECORDS = [dict(zip(NAMES, row, strict=True)) for row in ROWS]
FLAT = [value for row in ROWS for value in row]
TENSOR = Signature(inputs=[TensorSpec(name="pixels", dtype="float32", shape=[-1, 3])])
MIXED = Signature(
    inputs=[
        TensorSpec(name="x", dtype="float64"),
        TensorSpec(name="n", dtype="int64"),
        TensorSpec(name="city", dtype="string"),
    ],
    outputs=[TensorSpec(name="score", dtype="float64")],
)


def body(document: Any) -> bytes:
    return orjson.dumps(document)


def v2_tensor(name: str, shape: list[int], datatype: str, data: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def csv_body(names: list[str], rows: list[list[Any]]) -> bytes:
    lines = [",".join(f'"{n}"' for n in names)] + [",".join(map(repr, row)) for row in rows]
    return "\n".join(lines).encode()


# --- every way to send the same three rows --------------------------------------------------

SAME_ROWS: list[tuple[str, ProtocolName, bytes, str | None]] = [
    ("plain rows", "plain", body({"instances": ROWS}), None),
    ("plain objects", "plain", body({"instances": RECORDS}), "application/json"),
    (
        "mlflow dataframe_split",
        "mlflow",
        body({"dataframe_split": {"columns": NAMES, "index": [0, 1, 2], "data": ROWS}}),
        "application/json",
    ),
    (
        "mlflow dataframe_split, columns in another order",
        "mlflow",
        body({"dataframe_split": {"columns": NAMES[::-1], "data": [r[::-1] for r in ROWS]}}),
        None,
    ),
    (
        "mlflow dataframe_split, no columns",
        "mlflow",
        body({"dataframe_split": {"data": ROWS}}),
        None,
    ),
    ("mlflow dataframe_records", "mlflow", body({"dataframe_records": RECORDS}), None),
    ("mlflow instances", "mlflow", body({"instances": ROWS, "params": {"top_k": 3}}), None),
    ("mlflow instances as objects", "mlflow", body({"instances": RECORDS}), None),
    (
        "mlflow inputs as columns",
        "mlflow",
        body({"inputs": {n: MATRIX[:, j].tolist() for j, n in enumerate(NAMES)}}),
        None,
    ),
    ("mlflow inputs as rows", "mlflow", body({"inputs": ROWS}), None),
    ("mlflow CSV", "mlflow", csv_body(NAMES, ROWS), "text/csv; charset=utf-8"),
    (
        "v2 one [n, k] tensor, flat",
        "v2",
        body({"inputs": [v2_tensor("input-0", [3, 30], "FP64", FLAT)]}),
        None,
    ),
    (
        "v2 one [n, k] tensor, nested",
        "v2",
        body({"id": "1", "inputs": [v2_tensor("input-0", [3, 30], "FP64", ROWS)]}),
        None,
    ),
    (
        "v2 one tensor per column",
        "v2",
        body(
            {
                "inputs": [
                    v2_tensor(n, [3], "FP64", MATRIX[:, j].tolist()) for j, n in enumerate(NAMES)
                ]
            }
        ),
        None,
    ),
    (
        "v2 one [n, 1] tensor per column, in another order",
        "v2",
        body(
            {
                "inputs": [
                    v2_tensor(n, [3, 1], "FP64", [[v] for v in MATRIX[:, j].tolist()])
                    for j, n in reversed(list(enumerate(NAMES)))
                ]
            }
        ),
        None,
    ),
]


@pytest.mark.parametrize(
    ("protocol", "payload", "content_type"),
    [case[1:] for case in SAME_ROWS],
    ids=[case[0] for case in SAME_ROWS],
)
def test_every_protocol_reads_the_same_rows(
    protocol: ProtocolName, payload: bytes, content_type: str | None
) -> None:
    batch = parse(protocol, payload, content_type, CANCER_SIGNATURE, max_rows=10)
    assert batch.names == CANCER_SIGNATURE.input_names
    assert batch.n_rows == 3
    np.testing.assert_array_equal(batch.matrix(), MATRIX)


def test_v2_integer_and_fp32_data_fit_a_float64_signature() -> None:
    ints = [[j + i for j in range(30)] for i in range(2)]
    batch = parse(
        "v2",
        body({"inputs": [v2_tensor("x", [2, 30], "INT32", ints)]}),
        None,
        CANCER_SIGNATURE,
        max_rows=10,
    )
    assert batch.matrix().dtype == np.float64
    np.testing.assert_array_equal(batch.matrix(), ints)
    fp32 = parse(
        "v2",
        body({"inputs": [v2_tensor("x", [1, 30], "FP32", [0.5] * 30)]}),
        None,
        CANCER_SIGNATURE,
        max_rows=10,
    )
    np.testing.assert_array_equal(fp32.matrix(), [[0.5] * 30])


def test_mixed_columns_keep_their_types() -> None:
    batch = parse(
        "v2",
        body(
            {
                "inputs": [
                    v2_tensor("x", [2], "FP32", [1.5, None]),
                    v2_tensor("n", [2, 1], "INT64", [[7], [8]]),
                    v2_tensor("city", [2], "BYTES", ["Oslo", "Lima"]),
                ]
            }
        ),
        None,
        MIXED,
        max_rows=10,
    )
    assert batch["x"][0] == 1.5 and math.isnan(batch["x"][1])
    assert batch["n"].dtype == np.int64 and batch["n"].tolist() == [7, 8]
    assert batch["city"].tolist() == ["Oslo", "Lima"]
    records = parse(
        "mlflow",
        body({"dataframe_records": [{"x": 1, "n": 2, "city": "Oslo"}]}),
        None,
        MIXED,
        max_rows=10,
    )
    assert records["city"].tolist() == ["Oslo"]
    table = parse("mlflow", b"city,x,n\nOslo,,3\nLima,2.5,4\n", "text/csv", MIXED, max_rows=10)
    assert math.isnan(table["x"][0]) and table["x"][1] == 2.5
    assert table["n"].tolist() == [3, 4] and table["city"].tolist() == ["Oslo", "Lima"]


# --- tensor signatures and no signature -------------------------------------------------------

TENSOR_BODIES: list[tuple[str, ProtocolName, Any]] = [
    ("plain", "plain", {"instances": [[1, 2, 3], [4, 5, 6]]}),
    ("mlflow instances", "mlflow", {"instances": [[1, 2, 3], [4, 5, 6]]}),
    ("mlflow inputs by name", "mlflow", {"inputs": {"pixels": [[1, 2, 3], [4, 5, 6]]}}),
    ("mlflow inputs as a list", "mlflow", {"inputs": [[1, 2, 3], [4, 5, 6]]}),
    (
        "mlflow records",
        "mlflow",
        {"dataframe_records": [{"pixels": [1, 2, 3]}, {"pixels": [4, 5, 6]}]},
    ),
    (
        "mlflow split, one column per element",
        "mlflow",
        {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, 3], [4, 5, 6]]}},
    ),
    ("v2 by name", "v2", {"inputs": [v2_tensor("pixels", [2, 3], "FP32", [1, 2, 3, 4, 5, 6])]}),
    (
        "v2 any name",
        "v2",
        {"inputs": [v2_tensor("input-0", [2, 3], "INT8", [[1, 2, 3], [4, 5, 6]])]},
    ),
]


@pytest.mark.parametrize(
    ("protocol", "document"), [c[1:] for c in TENSOR_BODIES], ids=[c[0] for c in TENSOR_BODIES]
)
def test_a_tensor_signature_gets_one_tensor(protocol: ProtocolName, document: Any) -> None:
    batch = parse(protocol, body(document), None, TENSOR, max_rows=10)
    assert batch.names == ("pixels",)
    assert batch["pixels"].dtype == np.float32
    np.testing.assert_array_equal(batch.matrix(np.float32), [[1, 2, 3], [4, 5, 6]])


def test_v2_a_tensor_beside_a_column() -> None:
    signature = Signature(
        inputs=[
            TensorSpec(name="image", dtype="float32", shape=[-1, 2]),
            TensorSpec(name="age", dtype="int64"),
        ]
    )
    batch = parse(
        "v2",
        body(
            {
                "inputs": [
                    v2_tensor("age", [2, 1], "INT32", [[30], [40]]),
                    v2_tensor("image", [2, 2], "FP64", [0.5, 1, 1.5, 2]),
                ]
            }
        ),
        None,
        signature,
        max_rows=10,
    )
    assert batch.names == ("image", "age")
    assert batch["image"].dtype == np.float32 and batch["image"].tolist() == [[0.5, 1], [1.5, 2]]
    assert batch["age"].dtype == np.int64 and batch["age"].tolist() == [30, 40]


UNSIGNED: list[tuple[str, ProtocolName, bytes, str | None, tuple[str, ...]]] = [
    ("plain lists", "plain", body({"instances": [[1, 2.5], [3, 4]]}), None, ("f0", "f1")),
    ("plain objects", "plain", body({"instances": [{"a": 1, "b": 2}]}), None, ("a", "b")),
    ("plain single values", "plain", body({"instances": [1, 2]}), None, ("f0",)),
    (
        "mlflow split",
        "mlflow",
        body({"dataframe_split": {"columns": ["b", "a"], "data": [[1, 2]]}}),
        None,
        ("b", "a"),
    ),
    ("mlflow inputs", "mlflow", body({"inputs": {"age": [30, 40]}}), None, ("age",)),
    ("mlflow CSV", "mlflow", b"age,height\n30,1.8\n40,\n", "text/csv", ("age", "height")),
    (
        "v2 columns",
        "v2",
        body({"inputs": [v2_tensor("a", [1], "FP32", [1]), v2_tensor("b", [1, 1], "INT8", [2])]}),
        None,
        ("a", "b"),
    ),
    ("v2 tensor", "v2", body({"inputs": [v2_tensor("t", [1, 2], "FP64", [1, 2])]}), None, ("t",)),
]


@pytest.mark.parametrize(
    ("protocol", "payload", "content_type", "names"),
    [c[1:] for c in UNSIGNED],
    ids=[c[0] for c in UNSIGNED],
)
def test_without_a_signature_names_come_from_the_request(
    protocol: ProtocolName, payload: bytes, content_type: str | None, names: tuple[str, ...]
) -> None:
    batch = parse(protocol, payload, content_type, None, max_rows=10)
    assert batch.names == names


def test_without_a_signature_v2_datatypes_set_the_dtypes() -> None:
    batch = parse(
        "v2",
        body(
            {
                "inputs": [
                    v2_tensor("f", [2], "FP32", [1, 2.5]),
                    v2_tensor("i", [2], "INT64", [1, 2]),
                    v2_tensor("b", [2], "BOOL", [True, False]),
                    v2_tensor("s", [2], "BYTES", ["x", "y"]),
                ]
            }
        ),
        None,
        None,
        max_rows=10,
    )
    assert [batch[n].dtype for n in "fibs"] == [np.float32, np.int64, np.bool_, object]
    csv = parse("mlflow", b"n,x,s\n1,2.5,a\n2,,b\n", "text/csv", None, max_rows=10)
    assert csv["n"].dtype == np.int64 and csv["x"].dtype == np.float64
    assert math.isnan(csv["x"][1]) and csv["s"].tolist() == ["a", "b"]


# --- errors name the field, the input and the row -------------------------------------------

ERRORS: list[tuple[str, ProtocolName, Signature | None, bytes, str | None, str]] = [
    (
        "not JSON",
        "plain",
        CANCER_SIGNATURE,
        b'{"instances": [1,',
        None,
        "the body is not valid JSON: ",
    ),
    ("plain: a list", "plain", None, body([[1]]), None, r"the body is a list; .*\{\"instances\""),
    ("plain: unknown field", "plain", None, body({"rows": []}), None, "unknown field 'rows'"),
    (
        "plain: not a list",
        "plain",
        None,
        body({"instances": {"a": 1}}),
        None,
        "'instances' must be a list",
    ),
    ("plain: no rows", "plain", CANCER_SIGNATURE, body({"instances": []}), None, "holds no rows"),
    (
        "plain: short row",
        "plain",
        CANCER_SIGNATURE,
        body({"instances": [ROWS[0], ROWS[1][:29]]}),
        None,
        "row 1 has 29 values, the signature has 30 inputs",
    ),
    (
        "plain: a string",
        "plain",
        CANCER_SIGNATURE,
        body({"instances": [ROWS[0], ROWS[1], ROWS[2][:4] + ["big"] + ROWS[2][5:]]}),
        None,
        "input 'mean smoothness': expected float64, got 'big' in row 2",
    ),
    (
        "plain: missing key",
        "plain",
        CANCER_SIGNATURE,
        body(
            {"instances": [RECORDS[0], {k: v for k, v in RECORDS[1].items() if k != "mean area"}]}
        ),
        None,
        "row 1: missing input 'mean area'",
    ),
    (
        "plain: single values with several inputs",
        "plain",
        MIXED,
        body({"instances": [1, 2]}),
        None,
        "'instances' row 0 is a single value .*3 inputs",
    ),
    (
        "mlflow: no format",
        "mlflow",
        None,
        body({"params": {}}),
        None,
        "exactly one of .*; got none",
    ),
    (
        "mlflow: two formats",
        "mlflow",
        None,
        body({"instances": [[1]], "inputs": [[1]]}),
        None,
        "got 'instances' and 'inputs'",
    ),
    ("mlflow: unknown field", "mlflow", None, body({"data": [[1]]}), None, "unknown field 'data'"),
    (
        "mlflow: params not an object",
        "mlflow",
        None,
        body({"instances": [[1]], "params": [1]}),
        None,
        "'params' must be an object, got a list",
    ),
    (
        "mlflow: records not objects",
        "mlflow",
        MIXED,
        body({"dataframe_records": [{"x": 1, "n": 1, "city": "a"}, [1, 1, "a"]]}),
        None,
        "'dataframe_records' row 1 is a list",
    ),
    (
        "mlflow: split without data",
        "mlflow",
        MIXED,
        body({"dataframe_split": {"columns": ["x"]}}),
        None,
        "'dataframe_split.data' must be a list of rows",
    ),
    (
        "mlflow: split row too short",
        "mlflow",
        MIXED,
        body({"dataframe_split": {"columns": ["city", "x", "n"], "data": [["a", 1, 2], ["b", 1]]}}),
        None,
        "'dataframe_split.data' row 1 has 2 values; 'columns' names 3 columns",
    ),
    (
        "mlflow: split unknown column",
        "mlflow",
        MIXED,
        body({"dataframe_split": {"columns": ["x", "n", "town"], "data": [[1, 2, "a"]]}}),
        None,
        "missing input 'city', unknown input 'town'",
    ),
    (
        "mlflow: split column twice",
        "mlflow",
        MIXED,
        body({"dataframe_split": {"columns": ["x", "x", "n"], "data": [[1, 2, 3]]}}),
        None,
        "column 'x' appears twice",
    ),
    (
        "mlflow: int column gets a fraction",
        "mlflow",
        MIXED,
        body({"inputs": {"x": [1, 2], "n": [1, 2.5], "city": ["a", "b"]}}),
        None,
        "input 'n': expected int64, got 2.5 in row 1",
    ),
    (
        "mlflow: a record with a renamed key",
        "mlflow",
        CANCER_SIGNATURE,
        body(
            {
                "dataframe_records": [
                    RECORDS[0],
                    {("area" if k == "mean area" else k): v for k, v in RECORDS[1].items()},
                ]
            }
        ),
        None,
        "row 1: missing input 'mean area', unknown input 'area'",
    ),
    (
        "mlflow: columns of different lengths",
        "mlflow",
        MIXED,
        body({"inputs": {"x": [1, 2], "n": [1], "city": ["a", "b"]}}),
        None,
        "input 'n' has 1 value, input 'x' has 2",
    ),
    (
        "csv: an empty int cell",
        "mlflow",
        MIXED,
        b"x,n,city\n1,2,a\n1,,b\n",
        "text/csv",
        "CSV column 'n': expected int64, got '' in row 1",
    ),
    (
        "mlflow: inputs a string",
        "mlflow",
        MIXED,
        body({"inputs": "x"}),
        None,
        "'inputs' must be an object of columns or a list of rows, got a string",
    ),
    (
        "mlflow: content type",
        "mlflow",
        MIXED,
        b"x=1",
        "application/x-www-form-urlencoded",
        "content type 'application/x-www-form-urlencoded' is not supported",
    ),
    ("csv: empty", "mlflow", MIXED, b"", "text/csv", "the CSV body is empty"),
    ("csv: header only", "mlflow", MIXED, b"x,n,city\n", "text/csv", "a header but no rows"),
    (
        "csv: short row",
        "mlflow",
        MIXED,
        b"x,n,city\n1,2,a\n1,2\n",
        "text/csv",
        "CSV row 1 has 2 values; the header names 3",
    ),
    (
        "csv: bad number",
        "mlflow",
        MIXED,
        b"x,n,city\n1,2,a\n1,two,b\n",
        "text/csv",
        "CSV column 'n': expected int64, got 'two' in row 1",
    ),
    (
        "csv: unknown column",
        "mlflow",
        MIXED,
        b"x,n,town\n1,2,a\n",
        "text/csv",
        "CSV header: missing input 'city', unknown input 'town'",
    ),
    ("csv: not UTF-8", "mlflow", MIXED, b"x,n,city\n1,2,\xff\n", "text/csv", "not UTF-8"),
    (
        "v2: a list",
        "v2",
        None,
        body([]),
        None,
        r"the body is a list; the v2 protocol expects \{\"inputs\"",
    ),
    (
        "v2: no inputs",
        "v2",
        None,
        body({"id": "1"}),
        None,
        "'inputs' must be a non-empty list of tensors, got none",
    ),
    (
        "v2: unknown field",
        "v2",
        None,
        body({"inputs": [], "instances": []}),
        None,
        "unknown field 'instances'",
    ),
    ("v2: id a number", "v2", None, body({"id": 7, "inputs": []}), None, "'id' must be a string"),
    (
        "v2: tensor not an object",
        "v2",
        None,
        body({"inputs": [[1]]}),
        None,
        r"inputs\[0\] is a list",
    ),
    (
        "v2: tensor without name",
        "v2",
        None,
        body({"inputs": [{"shape": [1]}]}),
        None,
        r"inputs\[0\]: 'name' must be",
    ),
    (
        "v2: missing datatype",
        "v2",
        None,
        body({"inputs": [{"name": "x", "shape": [1], "data": [1]}]}),
        None,
        "input 'x': missing field 'datatype'",
    ),
    (
        "v2: unknown datatype",
        "v2",
        None,
        body({"inputs": [v2_tensor("x", [1], "FLOAT", [1])]}),
        None,
        "input 'x': unknown datatype 'FLOAT'; expected one of BOOL, INT8",
    ),
    (
        "v2: bad shape",
        "v2",
        None,
        body({"inputs": [v2_tensor("x", [-1, 2], "FP32", [1, 2])]}),
        None,
        r"input 'x': 'shape' must be a list of sizes \(rows first\), got \[-1, 2\]",
    ),
    (
        "v2: data too short",
        "v2",
        CANCER_SIGNATURE,
        body({"inputs": [v2_tensor("x", [2, 30], "FP64", FLAT[:59])]}),
        None,
        r"input 'x': shape \[2, 30\] needs 60 values, got 59",
    ),
    (
        "v2: nested data too short",
        "v2",
        None,
        body({"inputs": [v2_tensor("x", [2, 2], "FP64", [[1, 2], [3]])]}),
        None,
        r"input 'x': shape \[2, 2\] needs 4 values, got 3",
    ),
    (
        "v2: wrong width for the table",
        "v2",
        CANCER_SIGNATURE,
        body({"inputs": [v2_tensor("x", [2, 29], "FP64", FLAT[:58])]}),
        None,
        r"input 'x': shape \[2, 29\] does not fit the signature's 30 inputs",
    ),
    (
        "v2: strings for a float signature",
        "v2",
        CANCER_SIGNATURE,
        body({"inputs": [v2_tensor("x", [1, 30], "BYTES", ["a"] * 30)]}),
        None,
        "input 'mean radius' is float64 in the signature; datatype BYTES cannot hold it",
    ),
    (
        "v2: floats for an int input",
        "v2",
        MIXED,
        body(
            {
                "inputs": [
                    v2_tensor("x", [1], "FP64", [1]),
                    v2_tensor("n", [1], "FP64", [1]),
                    v2_tensor("city", [1], "BYTES", ["a"]),
                ]
            }
        ),
        None,
        "input 'n' is int64 in the signature; datatype FP64 cannot hold it",
    ),
    (
        "v2: a value in the wrong row",
        "v2",
        CANCER_SIGNATURE,
        body({"inputs": [v2_tensor("x", [3, 30], "FP64", FLAT[:65] + ["oops"] + FLAT[66:])]}),
        None,
        "input 'mean compactness': expected float64, got 'oops' in row 2",
    ),
    (
        "v2: columns of different lengths",
        "v2",
        MIXED,
        body(
            {
                "inputs": [
                    v2_tensor("x", [2], "FP64", [1, 2]),
                    v2_tensor("n", [1], "INT64", [1]),
                    v2_tensor("city", [2], "BYTES", ["a", "b"]),
                ]
            }
        ),
        None,
        r"input 'n' has 1 rows \(shape \[1\]\), input 'x' has 2",
    ),
    (
        "v2: a missing input",
        "v2",
        MIXED,
        body({"inputs": [v2_tensor("x", [1], "FP64", [1]), v2_tensor("n", [1], "INT64", [1])]}),
        None,
        "missing input 'city'; send one tensor per input",
    ),
    (
        "v2: an input twice",
        "v2",
        None,
        body({"inputs": [v2_tensor("x", [1], "FP64", [1]), v2_tensor("x", [1], "FP64", [1])]}),
        None,
        "input 'x' appears twice",
    ),
    (
        "v2: INT datatype with a fraction",
        "v2",
        TENSOR,
        body({"inputs": [v2_tensor("p", [2, 3], "INT32", [1, 2, 3, 4, 5.5, 6])]}),
        None,
        "input 'p': datatype INT32 needs integers, got 5.5 in row 1",
    ),
    (
        "v2: UINT8 out of range",
        "v2",
        None,
        body({"inputs": [v2_tensor("p", [2, 2], "UINT8", [1, 2, 3, 256])]}),
        None,
        "input 'p': datatype UINT8 needs integers from 0 to 255, got 256 in row 1",
    ),
    (
        "v2: BOOL with a number",
        "v2",
        None,
        body({"inputs": [v2_tensor("b", [2], "BOOL", [True, 1])]}),
        None,
        "input 'b': datatype BOOL needs true or false, got 1 in row 1",
    ),
    (
        "v2: tensor rows of the wrong shape",
        "v2",
        TENSOR,
        body({"inputs": [v2_tensor("pixels", [2, 2], "FP32", [1, 2, 3, 4])]}),
        None,
        r"input 'pixels': expected rows of shape \[3\], got rows of shape \[2\]",
    ),
    (
        "v2: no rows",
        "v2",
        TENSOR,
        body({"inputs": [v2_tensor("pixels", [0, 3], "FP32", [])]}),
        None,
        "input 'pixels' holds no rows",
    ),
    (
        "v2: outputs without names",
        "v2",
        TENSOR,
        body({"inputs": [v2_tensor("pixels", [1, 3], "FP32", [1, 2, 3])], "outputs": [{}]}),
        None,
        "'outputs' must be a list of objects with a 'name'",
    ),
]


@pytest.mark.parametrize(
    ("protocol", "signature", "payload", "content_type", "message"),
    [c[1:] for c in ERRORS],
    ids=[c[0] for c in ERRORS],
)
def test_errors_say_what_is_wrong_and_where(
    protocol: ProtocolName,
    signature: Signature | None,
    payload: bytes,
    content_type: str | None,
    message: str,
) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        parse(protocol, payload, content_type, signature, max_rows=10)
    assert type(caught.value) is InvalidInput  # a 400, never a 413 or a bare ValueError


TOO_MANY: list[tuple[ProtocolName, bytes, str | None]] = [
    ("plain", body({"instances": [[1]] * 11}), None),
    ("mlflow", body({"dataframe_split": {"columns": ["a"], "data": [[1]] * 11}}), None),
    ("mlflow", body({"dataframe_records": [{"a": 1}] * 11}), None),
    ("mlflow", body({"inputs": {"a": [1] * 11}}), None),
    ("mlflow", b"a\n" + b"1\n" * 11, "text/csv"),
    ("v2", body({"inputs": [v2_tensor("a", [11], "FP32", [1] * 11)]}), None),
]


@pytest.mark.parametrize(("protocol", "payload", "content_type"), TOO_MANY)
def test_more_rows_than_the_limit_is_payload_too_large(
    protocol: ProtocolName, payload: bytes, content_type: str | None
) -> None:
    with pytest.raises(PayloadTooLarge, match="holds 11 rows; the limit is 10 rows") as caught:
        parse(protocol, payload, content_type, None, max_rows=10)
    assert caught.value.status == 413


# --- rendering ---------------------------------------------------------------------------------


def test_mlflow_and_plain_render_predictions_as_a_list() -> None:
    for protocol in ("mlflow", "plain"):
        out = render(
            protocol, np.array([0, 1, 1]), model_name="m", model_version="1", request_id="r"
        )
        assert orjson.loads(out) == {"predictions": [0, 1, 1]}
    proba = np.array([[0.25, 0.75], [1.0, 0.0]])
    out = render("plain", proba, model_name="m", model_version="1", request_id="r")
    assert orjson.loads(out) == {"predictions": [[0.25, 0.75], [1.0, 0.0]]}


def test_dict_predictions_become_one_object_per_row() -> None:
    predictions = {"label": np.array([0, 1]), "proba": np.array([[0.1, 0.9], [0.8, 0.2]])}
    out = render("mlflow", predictions, model_name="m", model_version="1", request_id="r")
    assert orjson.loads(out) == {
        "predictions": [{"label": 0, "proba": [0.1, 0.9]}, {"label": 1, "proba": [0.8, 0.2]}]
    }


def test_strings_strided_views_and_float32_render() -> None:
    labels = np.array(["benign", "malignant"], dtype=object)
    out = render("plain", labels, model_name="m", model_version="1", request_id="r")
    assert orjson.loads(out) == {"predictions": ["benign", "malignant"]}
    unicode = np.array(["a", "b"])
    assert orjson.loads(
        render("mlflow", unicode, model_name="m", model_version="1", request_id="r")
    ) == {"predictions": ["a", "b"]}
    column = np.array([[0.25, 0.75], [0.5, 0.5]])[:, 1]  # not C-contiguous
    assert orjson.loads(
        render("plain", column, model_name="m", model_version="1", request_id="r")
    ) == {"predictions": [0.75, 0.5]}
    single = np.array([0.1], dtype=np.float32)
    assert orjson.loads(
        render("plain", single, model_name="m", model_version="1", request_id="r")
    ) == {"predictions": [pytest.approx(0.1)]}


def test_nan_and_infinity_render_as_null() -> None:
    values = np.array([1.5, np.nan, np.inf, -np.inf])
    out = render("plain", values, model_name="m", model_version="1", request_id="r")
    assert out == b'{"predictions":[1.5,null,null,null]}'
    out = render("mlflow", {"p": values}, model_name="m", model_version="1", request_id="r")
    assert orjson.loads(out)["predictions"][1] == {"p": None}
    out = render("v2", values, model_name="m", model_version="1", request_id="r")
    assert orjson.loads(out)["outputs"][0]["data"] == [1.5, None, None, None]


def test_v2_response_names_outputs_and_datatypes() -> None:
    out = orjson.loads(
        render("v2", np.array([[1, 0]]), model_name="cancer", model_version="3", request_id="r-1")
    )
    assert out == {
        "model_name": "cancer",
        "model_version": "3",
        "id": "r-1",
        "outputs": [{"name": "predict", "shape": [1, 2], "datatype": "INT64", "data": [1, 0]}],
    }
    named = orjson.loads(
        render(
            "v2",
            np.array([0.5], dtype=np.float32),
            model_name="m",
            model_version="1",
            request_id="r",
            signature=MIXED,
        )
    )
    assert named["outputs"][0]["name"] == "score"
    assert named["outputs"][0]["datatype"] == "FP32"
    predictions = {
        "flag": np.array([True]),
        "small": np.array([3], dtype=np.uint8),
        "half": np.array([0.5], dtype=np.float16),
        "label": np.array(["yes"], dtype=object),
    }
    outputs = orjson.loads(
        render("v2", predictions, model_name="m", model_version="1", request_id="r")
    )["outputs"]
    assert [(o["name"], o["datatype"], o["data"]) for o in outputs] == [
        ("flag", "BOOL", [True]),
        ("small", "UINT8", [3]),
        ("half", "FP16", [0.5]),
        ("label", "BYTES", ["yes"]),
    ]


def test_v2_echoes_the_request_id_and_keeps_the_outputs_asked_for() -> None:
    request = parse_request(
        "v2",
        body(
            {
                "id": "client-7",
                "inputs": [v2_tensor("pixels", [2, 3], "FP32", [1, 2, 3, 4, 5, 6])],
                "outputs": [{"name": "proba"}],
            }
        ),
        None,
        TENSOR,
        max_rows=10,
    )
    assert request.id == "client-7" and request.outputs == ("proba",)
    predictions = {"label": np.array([0, 1]), "proba": np.array([[0.5, 0.5], [0.0, 1.0]])}
    out = orjson.loads(
        render(
            "v2",
            predictions,
            model_name="m",
            model_version="1",
            request_id="gateway-1",
            request=request,
        )
    )
    assert out["id"] == "client-7"
    assert [o["name"] for o in out["outputs"]] == ["proba"]
    assert out["outputs"][0]["shape"] == [2, 2] and out["outputs"][0]["data"] == [0.5, 0.5, 0, 1]
    anonymous = Request(request.batch)
    out = orjson.loads(
        render(
            "v2", predictions, model_name="m", model_version="1", request_id="g", request=anonymous
        )
    )
    assert out["id"] == "g" and len(out["outputs"]) == 2
    with pytest.raises(
        InvalidInput, match="output 'proba' was asked for; the model returns 'label'"
    ):
        render(
            "v2",
            {"label": predictions["label"]},
            model_name="m",
            model_version="1",
            request_id="r",
            request=request,
        )


def test_render_takes_the_views_split_rows_gives() -> None:
    proba = np.arange(12, dtype=np.float64).reshape(6, 2)
    parts = split_rows({"proba": proba, "label": proba[:, 1]}, [1, 2, 3])
    out = orjson.loads(render("plain", parts[1], model_name="m", model_version="1", request_id="r"))
    assert out == {"predictions": [{"proba": [2, 3], "label": 3}, {"proba": [4, 5], "label": 5}]}
    out = orjson.loads(render("v2", parts[2], model_name="m", model_version="1", request_id="r"))
    assert out["outputs"][1] == {
        "name": "label",
        "shape": [3],
        "datatype": "FP64",
        "data": [7, 9, 11],
    }


def test_round_trip_with_a_real_model() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    target = load_breast_cancer().target
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(CANCER.to_numpy(), target)
    batch = parse(
        "v2",
        body({"inputs": [v2_tensor("x", [3, 30], "FP64", ROWS)]}),
        None,
        CANCER_SIGNATURE,
        max_rows=64,
    )
    out = orjson.loads(
        render(
            "v2", model.predict(batch.matrix()), model_name="m", model_version="1", request_id="r"
        )
    )
    assert out["outputs"][0]["data"] == model.predict(MATRIX).tolist()


def test_v2_model_metadata() -> None:
    meta = v2_model_metadata("cancer", "3", MIXED)
    assert meta == {
        "name": "cancer",
        "versions": ["3"],
        "platform": "stratus",
        "inputs": [
            {"name": "x", "datatype": "FP64", "shape": [-1]},
            {"name": "n", "datatype": "INT64", "shape": [-1]},
            {"name": "city", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [{"name": "score", "datatype": "FP64", "shape": [-1]}],
    }
    assert v2_model_metadata("t", "1", TENSOR)["inputs"] == [
        {"name": "pixels", "datatype": "FP32", "shape": [-1, 3]}
    ]
    assert v2_model_metadata("bare", "2", None)["inputs"] == []
    assert orjson.loads(orjson.dumps(meta)) == meta


def test_an_unknown_protocol_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown protocol 'grpc'"):
        parse("grpc", b"{}", None, None, max_rows=1)  # type: ignore[arg-type]
