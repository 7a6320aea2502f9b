"""Signatures: validation, their JSON round trip, and inference from samples of training data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pydantic import ValidationError

from stratus.core.errors import InvalidInput
from stratus.registry.signatures import Signature, TensorSpec, infer_signature


def described(signature: Signature) -> list[tuple[str, str, list[int]]]:
    return [(s.name, s.dtype, s.shape) for s in signature.inputs]


EXPECTED = [
    ("age", "int64", [-1]),
    ("income", "float64", [-1]),
    ("city", "string", [-1]),
    ("member", "bool", [-1]),
]
ROWS: list[dict[str, Any]] = [
    {"age": 31, "income": 5.5, "city": "Oslo", "member": True},
    {"age": 47, "income": 7.25, "city": "Lima", "member": False},
]


def test_from_a_list_of_row_dicts() -> None:
    assert described(infer_signature(ROWS)) == EXPECTED


def test_from_a_dict_of_columns() -> None:
    columns = {name: [row[name] for row in ROWS] for name in ROWS[0]}
    assert described(infer_signature(columns)) == EXPECTED
    arrays = {"x": np.zeros(3, dtype=np.float32), "n": np.arange(3, dtype=np.int32)}
    assert described(infer_signature(arrays)) == [("x", "float32", [-1]), ("n", "int32", [-1])]


def test_from_a_dataframe() -> None:
    frame = pd.DataFrame(ROWS)
    frame["small"] = frame["age"].astype("int8")
    frame["nullable"] = pd.array([1, None], dtype="Int64")
    frame["kind"] = pd.Categorical(["a", "b"])
    expected = [
        *EXPECTED,
        ("small", "int32", [-1]),
        ("nullable", "int64", [-1]),
        ("kind", "string", [-1]),
    ]
    assert described(infer_signature(frame)) == expected
    frame["when"] = pd.to_datetime(["2024-01-01", "2024-01-02"])
    with pytest.raises(InvalidInput, match="column 'when' has type datetime64"):
        infer_signature(frame)


def test_from_a_pyarrow_table() -> None:
    assert described(infer_signature(pa.Table.from_pylist(ROWS))) == EXPECTED


def test_from_a_2d_array_the_columns_are_numbered() -> None:
    signature = infer_signature(np.zeros((4, 3)), predictions=np.array([0, 1, 1, 0]))
    assert described(signature) == [(f"f{j}", "float64", [-1]) for j in range(3)]
    assert signature.is_tabular and not signature.is_tensor
    assert [(s.name, s.dtype, s.shape) for s in signature.outputs] == [
        ("prediction", "int64", [-1])
    ]
    with pytest.raises(InvalidInput, match="3-D array"):
        infer_signature(np.zeros((2, 2, 2)))


def test_outputs_from_several_kinds_of_predictions() -> None:
    proba = np.zeros((4, 2), dtype=np.float32)
    outputs = infer_signature(ROWS, {"label": ["a", "b"], "proba": proba}).outputs
    assert [(s.name, s.dtype, s.shape) for s in outputs] == [
        ("label", "string", [-1]),
        ("proba", "float32", [-1, 2]),
    ]
    series = pd.Series([0.5, 0.25], name="score")
    assert infer_signature(ROWS, series).outputs == [TensorSpec(name="score", dtype="float64")]
    assert infer_signature(ROWS, [True, False]).outputs[0].dtype == "bool"


def test_a_column_of_arrays_is_a_tensor_input() -> None:
    signature = infer_signature({"pixels": np.zeros((5, 28, 28), dtype=np.float32)})
    assert described(signature) == [("pixels", "float32", [-1, 28, 28])]
    assert signature.is_tensor and not signature.is_tabular


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ("just text", "cannot infer a signature from the sample"),
        ([{"a": 1}, {"b": 2}], "sample row 1: missing input 'a', unknown input 'b'"),
        ({"a": [1, "x"], "b": [1, 2]}, "column 'a' mixes strings with other values"),
        ({"a": [{"x": 1}]}, "column 'a' has type object"),
        ({"a": [[1, 2], [3]]}, "column 'a': rows have different shapes"),
    ],
)
def test_samples_it_cannot_describe(sample: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        infer_signature(sample)


def test_json_round_trip() -> None:
    signature = Signature(
        inputs=[
            TensorSpec(name="x", dtype="float32", shape=[-1, 30]),
        ],
        outputs=[TensorSpec(name="label", dtype="int64", shape=[-1])],
        description="breast cancer",
    )
    stored = signature.model_dump(mode="json")
    assert stored == {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 30]}],
        "outputs": [{"name": "label", "dtype": "int64", "shape": [-1]}],
        "description": "breast cancer",
    }
    again = Signature.model_validate(stored)
    assert again == signature
    assert Signature.model_validate_json(signature.model_dump_json()) == signature
    assert again.input_names == ("x",)  # cached properties stay out of the JSON and of equality
    assert again == signature


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": []},
        {"inputs": [{"name": "x", "dtype": "float16"}]},
        {"inputs": [{"name": "x", "dtype": "float64", "shape": [-1, 0]}]},
        {"inputs": [{"name": "x", "dtype": "float64", "shape": [-2]}]},
        {"inputs": [{"name": "x", "dtype": "float64"}, {"name": "x", "dtype": "int64"}]},
        {"inputs": [{"name": "x", "dtype": "float64", "unit": "cm"}]},
        {"inputs": [{"name": "", "dtype": "float64"}]},
    ],
)
def test_invalid_signatures_are_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Signature.model_validate(body)


def test_common_dtype_is_set_only_for_uniform_numeric_tables() -> None:
    floats = Signature(inputs=[TensorSpec(name=n, dtype="float32") for n in "ab"])
    assert floats.common_dtype == "float32"
    mixed = Signature(
        inputs=[TensorSpec(name="a", dtype="float64"), TensorSpec(name="b", dtype="int64")]
    )
    assert mixed.common_dtype is None
    assert Signature(inputs=[TensorSpec(name="s", dtype="string")]).common_dtype is None
