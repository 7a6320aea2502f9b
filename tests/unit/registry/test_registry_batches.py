"""Batches: built from requests, with errors that name the input and row; adaptive batching."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from stratus.core.errors import InvalidInput
from stratus.registry.batches import Batch, split_rows
from stratus.registry.signatures import Signature, TensorSpec

TABLE = Signature(
    inputs=[
        TensorSpec(name="mean radius", dtype="float64"),
        TensorSpec(name="age", dtype="float64"),
        TensorSpec(name="count", dtype="float64"),
    ]
)
MIXED = Signature(
    inputs=[
        TensorSpec(name="x", dtype="float32"),
        TensorSpec(name="n", dtype="int32"),
        TensorSpec(name="flag", dtype="bool"),
        TensorSpec(name="city", dtype="string"),
    ]
)
TENSOR = Signature(inputs=[TensorSpec(name="pixels", dtype="float32", shape=[-1, 3])])


def test_rows_of_numbers_become_one_matrix_with_column_views() -> None:
    batch = Batch.from_rows([[1, 2.5, 3], [4, 5, 6]], TABLE)
    assert batch.names == ("mean radius", "age", "count")
    assert batch.n_rows == len(batch) == 2
    matrix = batch.matrix()
    assert matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix, [[1, 2.5, 3], [4, 5, 6]])
    assert batch.matrix() is matrix  # computed once
    np.testing.assert_array_equal(batch["age"], [2.5, 5])
    assert np.shares_memory(batch["age"], matrix)
    assert batch.matrix(np.float32).dtype == np.float32


def test_rows_as_objects_follow_the_signature_order() -> None:
    batch = Batch.from_rows([{"count": 3, "age": 2, "mean radius": 1}], TABLE)
    np.testing.assert_array_equal(batch.matrix(), [[1, 2, 3]])


def test_mixed_types_are_converted_column_by_column() -> None:
    batch = Batch.from_rows([[1.5, 7, True, "Oslo"], [None, 8.0, False, "Lima"]], MIXED)
    assert batch["x"].dtype == np.float32 and np.isnan(batch["x"][1])
    assert batch["n"].dtype == np.int32
    np.testing.assert_array_equal(batch["n"], [7, 8])
    assert batch["flag"].dtype == np.bool_
    assert batch["city"].dtype == object and list(batch["city"]) == ["Oslo", "Lima"]
    with pytest.raises(InvalidInput, match="input 'city' holds strings; the model needs numbers"):
        batch.matrix()
    assert batch.matrix(object).shape == (2, 4)
    frame = batch.frame()
    assert list(frame.columns) == ["x", "n", "flag", "city"]
    assert list(frame["city"]) == ["Oslo", "Lima"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [[1, 2, 3], [4, 5, 6], [7, 8, 9], [1, "abc", 2]],
            "input 'age': expected float64, got 'abc' in row 3",
        ),
        ([[1, 2, 3], [1, 2]], "row 1 has 2 values, the signature has 3 inputs"),
        ([[1, 2, 3, 4]], "row 0 has 4 values, the signature has 3 inputs"),
        ([{"mean radius": 1, "count": 3}], "row 0: missing input 'age'"),
        ([{"mean radius": 1, "age": 2, "count": 3, "foo": 4}], "row 0: unknown input 'foo'"),
        (
            [[1, 2, 3], {"age": 1}],
            "row 1 is an object; every row must be a list of values, like row 0",
        ),
        ([5], "row 0 is a single value; every row must be a list of values"),
        (["1,2,3"], "row 0 is a string"),
        ([[1, [2, 3], 4]], "input 'age': expected one float64 per row, got \\[2, 3\\] in row 0"),
        ([[1, 2, {"a": 1}]], "input 'count': expected float64, got \\{'a': 1\\} in row 0"),
        ([], "the request holds no rows"),
    ],
)
def test_bad_rows_are_named(rows: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Batch.from_rows(rows, TABLE)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([1.5, 2.5, True, "a"], "input 'n': expected int32, got 2.5 in row {i}"),
        ([1.5, 2**40, True, "a"], "input 'n': expected int32, got 1099511627776 in row {i}"),
        ([1.5, 2, 1, "a"], "input 'flag': expected bool, got 1 in row {i}"),
        ([1.5, 2, True, 7], "input 'city': expected string, got 7 in row {i}"),
        ([1.5, None, True, "a"], "input 'n': expected int32, got None in row {i}"),
        (["1.5", 2, True, "a"], "input 'x': expected float32, got '1.5' in row {i}"),
    ],
)
def test_values_must_fit_their_type(row: list[Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message.format(i=1)):
        Batch.from_rows([[0.0, 1, False, "ok"], row], MIXED)
    with pytest.raises(InvalidInput, match=message.format(i=0)):
        Batch.from_rows([row], MIXED)


def test_a_float_with_an_integer_value_is_accepted_for_an_integer_input() -> None:
    batch = Batch.from_rows([[1.0, 3.0, True, "a"]], MIXED)
    assert batch["n"].tolist() == [3]


def test_from_columns() -> None:
    batch = Batch.from_columns({"count": [3, 6], "age": [2, 5], "mean radius": [1, 4]}, TABLE)
    assert batch.names == TABLE.input_names
    np.testing.assert_array_equal(batch.matrix(), [[1, 2, 3], [4, 5, 6]])

    with pytest.raises(InvalidInput, match="missing input 'age'"):
        Batch.from_columns({"count": [3], "mean radius": [1]}, TABLE)
    with pytest.raises(InvalidInput, match="unknown input 'foo'"):
        Batch.from_columns({"count": [3], "age": [2], "mean radius": [1], "foo": [0]}, TABLE)
    with pytest.raises(InvalidInput, match="input 'age' has 1 value, input 'mean radius' has 2"):
        Batch.from_columns({"mean radius": [1, 4], "age": [2], "count": [3, 6]}, TABLE)
    with pytest.raises(InvalidInput, match="input 'count': expected float64, got 'x' in row 1"):
        Batch.from_columns({"mean radius": [1, 4], "age": [2, 5], "count": [3, "x"]}, TABLE)
    with pytest.raises(InvalidInput, match="input 'age' must be a list of values"):
        Batch.from_columns({"mean radius": [1], "age": 2, "count": [3]}, TABLE)  # type: ignore[dict-item]


def test_from_tensor_keeps_the_tensor_whole() -> None:
    pixels = np.arange(12, dtype=np.float32).reshape(4, 3)
    batch = Batch.from_tensor("pixels", pixels, TENSOR)
    assert batch.n_rows == 4
    assert batch.matrix(np.float32) is pixels  # as is: no copy, no stacking
    np.testing.assert_array_equal(batch.matrix(), pixels)

    from_lists = Batch.from_tensor("pixels", pixels.tolist(), TENSOR)
    np.testing.assert_array_equal(from_lists.matrix(np.float32), pixels)
    # rows of a single-tensor signature are one tensor each
    np.testing.assert_array_equal(Batch.from_rows(pixels.tolist(), TENSOR).matrix(), pixels)
    np.testing.assert_array_equal(
        Batch.from_rows([{"pixels": r} for r in pixels.tolist()], TENSOR).matrix(), pixels
    )


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        (
            "pixels",
            np.zeros((2, 4)),
            r"input 'pixels': expected rows of shape \[3\], got rows of shape \[4\]",
        ),
        (
            "pixels",
            [[1, 2, 3], [1, 2]],
            r"input 'pixels': expected rows of shape \[3\], got 2 values in row 1",
        ),
        ("pixels", [[1, 2, 3], [1, 2, "a"]], "input 'pixels': expected float32, got 'a' in row 1"),
        ("pixels", [1, 2, 3], r"expected rows of shape \[3\], got a single value in row 0"),
        ("image", np.zeros((2, 3)), "unknown input 'image'; the signature has input 'pixels'"),
        ("pixels", [], "input 'pixels' holds no rows"),
    ],
)
def test_from_tensor_errors(name: str, data: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Batch.from_tensor(name, data, TENSOR)


def test_from_tensor_needs_a_single_input_signature() -> None:
    with pytest.raises(InvalidInput, match="input 'age' alone is not enough"):
        Batch.from_tensor("age", np.zeros(3), TABLE)


def test_without_a_signature_one_is_inferred() -> None:
    batch = Batch.from_rows([[1, 2.5], [3, 4]])
    assert batch.names == ("f0", "f1")
    np.testing.assert_array_equal(batch.matrix(), [[1, 2.5], [3, 4]])
    named = Batch.from_rows([{"a": 1, "b": "x"}])
    assert named.names == ("a", "b") and named["b"].dtype == object
    with pytest.raises(InvalidInput, match="row 1 has 1 value, row 0 has 2"):
        Batch.from_rows([[1, 2], [3]])
    with pytest.raises(InvalidInput, match="row 1: missing input 'b'"):
        Batch.from_rows([{"a": 1, "b": 2}, {"a": 3}])
    assert Batch.from_tensor("x", np.zeros((2, 5))).matrix().shape == (2, 5)


def test_concat_and_split_rows_round_trip() -> None:
    requests = [
        Batch.from_rows([[i, i + 0.5, -i]] * size, TABLE) for i, size in enumerate([1, 3, 2])
    ]
    merged = Batch.concat(requests)
    assert merged.n_rows == 6
    np.testing.assert_array_equal(merged.matrix()[:, 0], [0, 1, 1, 1, 2, 2])

    predictions = merged.matrix()[:, 1] * 10
    parts = split_rows(predictions, [b.n_rows for b in requests])
    assert [p.tolist() for p in parts] == [[5.0], [15.0] * 3, [25.0] * 2]
    assert [b.matrix().tolist() for b in merged.split([1, 3, 2])] == [
        b.matrix().tolist() for b in requests
    ]

    outputs = {"label": np.arange(6), "proba": np.ones((6, 2))}
    parts = split_rows(outputs, [1, 3, 2])
    assert [p["label"].tolist() for p in parts] == [[0], [1, 2, 3], [4, 5]]
    assert parts[2]["proba"].shape == (2, 2)
    assert split_rows([1, 2, 3], [2, 1]) == [[1, 2], [3]]
    with pytest.raises(ValueError, match="cannot cut 3 predictions"):
        split_rows([1, 2, 3], [2, 2])


def test_concat_of_column_batches_and_of_tensors() -> None:
    a = Batch.from_rows([[1.5, 7, True, "a"]], MIXED)
    b = Batch.from_rows([[2.5, 8, False, "b"], [3.5, 9, True, "c"]], MIXED)
    merged = Batch.concat([a, b])
    assert merged["city"].tolist() == ["a", "b", "c"]
    assert merged["n"].dtype == np.int32
    tensors = Batch.concat([Batch.from_tensor("pixels", np.zeros((2, 3)), TENSOR)] * 2)
    assert tensors.matrix().shape == (4, 3)
    with pytest.raises(ValueError, match="cannot concatenate"):
        Batch.concat([a, Batch.from_rows([[1, 2, 3]], TABLE)])


def test_select_and_tensor_frames() -> None:
    batch = Batch.from_rows([[1, 2, 3]], TABLE)
    np.testing.assert_array_equal(batch.select(["count", "age"]).matrix(), [[3, 2]])
    with pytest.raises(InvalidInput, match="missing input 'nope'"):
        batch.select(["nope"])
    assert list(batch.frame().columns) == ["mean radius", "age", "count"]
    with pytest.raises(InvalidInput, match="input 'pixels' holds a tensor per row"):
        Batch.from_tensor("pixels", np.zeros((2, 3)), TENSOR).frame()
