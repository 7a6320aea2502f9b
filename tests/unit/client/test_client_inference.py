"""Rows into the three inference protocols' bodies, and answers back into one prediction per
row: pure functions, table-driven."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from stratus.client._inference import (
    V2_INPUT,
    dump_json,
    path_of,
    predictions_of,
    request_body,
    reshape,
    rows_of,
    v2_datatype,
    v2_inputs,
)


@pytest.mark.parametrize(
    ("values", "datatype"),
    [
        ([1, 2, 3], "INT64"),
        ([1, 2.5], "FP64"),
        ([1.0, None], "FP64"),
        ([None, None], "FP64"),
        ([], "FP64"),
        ([True, False], "BOOL"),
        ([True, 1], "BYTES"),
        (["a", 1], "BYTES"),
        (["a", None], "BYTES"),
    ],
)
def test_v2_datatype_is_the_narrowest_that_holds_every_value(
    values: list[Any], datatype: str
) -> None:
    assert v2_datatype(values) == datatype


def test_v2_inputs_of_objects_are_one_tensor_per_column() -> None:
    rows = [{"a": 1.5, "b": 2}, {"a": 2.5, "b": 3}]
    assert v2_inputs(rows) == [
        {"name": "a", "shape": [2], "datatype": "FP64", "data": [1.5, 2.5]},
        {"name": "b", "shape": [2], "datatype": "INT64", "data": [2, 3]},
    ]


def test_v2_inputs_of_lists_are_one_table_tensor() -> None:
    assert v2_inputs([[1, 2.0], [3, 4]]) == [
        {"name": V2_INPUT, "shape": [2, 2], "datatype": "FP64", "data": [1, 2.0, 3, 4]}
    ]


def test_v2_inputs_of_single_values_are_one_column() -> None:
    assert v2_inputs(["x", "y"]) == [
        {"name": V2_INPUT, "shape": [2], "datatype": "BYTES", "data": ["x", "y"]}
    ]


def test_request_bodies_per_protocol() -> None:
    records = [{"a": 1}, {"a": 2}]
    assert request_body("plain", records) == {"instances": records}
    assert request_body("mlflow", records) == {"dataframe_records": records}
    assert request_body("mlflow", [[1], [2]]) == {"instances": [[1], [2]]}
    assert request_body("v2", records)["inputs"][0]["name"] == "a"
    with pytest.raises(ValueError, match="unknown protocol"):
        request_body("grpc", records)


def test_paths_per_protocol() -> None:
    assert path_of("plain", "e") == "/predict"
    assert path_of("mlflow", "e") == "/invocations"
    assert path_of("v2", "e") == "/v2/models/e/infer"
    with pytest.raises(ValueError, match="unknown protocol"):
        path_of("grpc", "e")


def test_rows_of_frames_tables_and_arrays() -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    assert rows_of(np.array([[1, 2], [3, 4]])) == [[1, 2], [3, 4]]
    assert rows_of(pd.DataFrame({"a": [1, 2]})) == [{"a": 1}, {"a": 2}]
    assert rows_of(pa.table({"a": [1, 2]})) == [{"a": 1}, {"a": 2}]
    assert rows_of(([1], [2])) == [[1], [2]]


@pytest.mark.parametrize(
    ("body", "predictions"),
    [
        ({"predictions": [0, 1]}, [0, 1]),
        (
            {"outputs": [{"name": "p", "shape": [2], "datatype": "INT64", "data": [0, 1]}]},
            [0, 1],
        ),
        (
            {"outputs": [{"name": "p", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}]},
            [[1, 2], [3, 4]],
        ),
        (
            {
                "outputs": [
                    {"name": "label", "shape": [2], "datatype": "INT64", "data": [0, 1]},
                    {"name": "score", "shape": [2, 1], "datatype": "FP64", "data": [0.1, 0.9]},
                ]
            },
            [{"label": 0, "score": [0.1]}, {"label": 1, "score": [0.9]}],
        ),
        ({"something": "else"}, {"something": "else"}),
        ([1, 2], [1, 2]),
    ],
)
def test_predictions_are_one_entry_per_row_whatever_the_protocol(
    body: Any, predictions: Any
) -> None:
    assert predictions_of(body) == predictions


def test_reshape_keeps_nested_data() -> None:
    assert reshape([[1, 2], [3, 4]], [2, 2]) == [[1, 2], [3, 4]]
    assert reshape([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2]) == [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    assert reshape([], [0, 3]) == []


def test_dump_json_writes_what_json_cannot_spell() -> None:
    document = {
        "nan": math.nan,
        "decimal": Decimal("1.5"),
        "time": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        "bytes": b"abc",
    }
    assert orjson.loads(dump_json(document)) == {
        "nan": None,
        "decimal": 1.5,
        "time": "2030-01-02T03:04:05+00:00",
        "bytes": "abc",
    }
    np = pytest.importorskip("numpy")
    assert orjson.loads(dump_json({"a": np.arange(3), "b": np.float32(0.5)})) == {
        "a": [0, 1, 2],
        "b": 0.5,
    }
    with pytest.raises(TypeError):
        dump_json({"x": object()})
