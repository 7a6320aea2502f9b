"""Dataset profiles: numeric statistics checked against numpy, categories, booleans, the kinds
counted only, and a profile that always serialises as strict JSON."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from stratus.core.errors import InvalidInput
from stratus.data.profiling import (
    QUANTILES,
    ColumnProfile,
    ColumnSchema,
    NumericStats,
    Profile,
    kind_of,
    profile_table,
    schema_of,
)

RNG = np.random.default_rng(7)


def column(values: Any, type_: pa.DataType | None = None, **options: Any) -> ColumnProfile:
    table = pa.table({"c": pa.array(values, type_, from_pandas=True)})
    return profile_table(table, **options).columns[0]


def numbers(values: Any, type_: pa.DataType | None = None, **options: Any) -> NumericStats:
    profile = column(values, type_, **options)
    assert profile.kind == "number"
    assert profile.numeric is not None
    return profile.numeric


def strict_json(profile: Profile) -> str:
    return json.dumps(profile.model_dump(mode="json"), allow_nan=False)


@pytest.mark.parametrize(
    ("arrow_type", "kind"),
    [(pa.int8(), "number"), (pa.uint64(), "number"), (pa.float16(), "number"),
     (pa.float64(), "number"), (pa.decimal128(10, 2), "number"), (pa.bool_(), "boolean"),
     (pa.string(), "string"), (pa.large_string(), "string"), (pa.string_view(), "string"),
     (pa.dictionary(pa.int32(), pa.string()), "string"),
     (pa.dictionary(pa.int8(), pa.int64()), "number"),
     (pa.timestamp("ms", tz="UTC"), "timestamp"), (pa.date32(), "timestamp"),
     (pa.time64("us"), "other"), (pa.duration("s"), "other"), (pa.binary(), "other"),
     (pa.list_(pa.int64()), "other"), (pa.struct([("a", pa.int64())]), "other"),
     (pa.null(), "other")],
)  # fmt: skip
def test_kinds(arrow_type: pa.DataType, kind: str) -> None:
    assert kind_of(arrow_type) == kind


SAMPLES = {
    "normal float64": (RNG.normal(3.0, 2.0, 5_001), pa.float64()),
    "float32": (RNG.normal(size=999).astype(np.float32), pa.float32()),
    "int64": (RNG.integers(-1_000, 1_000, 2_000), pa.int64()),
    "uint8": (RNG.integers(0, 255, 300).astype(np.uint8), pa.uint8()),
    "skewed": (RNG.exponential(10.0, 10_000), pa.float64()),
    "two values": (np.array([1.0, 2.0]), pa.float64()),
}


@pytest.mark.parametrize("sample", SAMPLES.values(), ids=list(SAMPLES))
def test_numbers_match_numpy(sample: tuple[np.ndarray[Any, Any], pa.DataType]) -> None:
    values, arrow_type = sample
    stats = numbers(values, arrow_type)
    expected = values.astype(np.float64)
    assert stats.min == pytest.approx(expected.min(), rel=1e-9, abs=1e-12)
    assert stats.max == pytest.approx(expected.max(), rel=1e-9, abs=1e-12)
    assert stats.mean == pytest.approx(expected.mean(), rel=1e-9, abs=1e-12)
    assert stats.std == pytest.approx(expected.std(ddof=0), rel=1e-9, abs=1e-12)
    assert list(stats.quantiles) == ["p01", "p05", "p25", "p50", "p75", "p95", "p99"]
    for key, q in QUANTILES.items():
        want = np.quantile(expected, q, method="linear")
        assert stats.quantiles[key] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert (stats.nans, stats.infinities) == (0, 0)


def test_the_histogram_has_equal_width_bins_over_the_finite_range() -> None:
    values = RNG.normal(size=10_000)
    stats = numbers(values, bins=12)
    counts, edges = np.histogram(values, bins=12, range=(values.min(), values.max()))
    assert stats.histogram.counts == counts.tolist()
    assert stats.histogram.edges == pytest.approx(edges.tolist(), rel=1e-12)
    assert (stats.histogram.edges[0], stats.histogram.edges[-1]) == (stats.min, stats.max)
    assert sum(stats.histogram.counts) == values.size


def test_nan_inf_and_nulls_are_counted_apart_and_left_out() -> None:
    finite = [1.0, 2.0, 4.0, 8.0]
    values = [*finite, float("nan"), float("inf"), -float("inf"), float("inf"), None, None]
    profile = column(pa.array(values, pa.float64(), from_pandas=False), bins=3)
    assert (profile.count, profile.nulls, profile.null_share) == (10, 2, 0.2)
    stats = profile.numeric
    assert stats is not None
    assert (stats.nans, stats.infinities) == (1, 3)
    assert (stats.min, stats.max, stats.mean) == (1.0, 8.0, 3.75)
    assert stats.std == pytest.approx(np.std(finite))
    assert stats.quantiles["p50"] == pytest.approx(np.median(finite))
    assert sum(stats.histogram.counts) == len(finite)
    assert len(stats.histogram.counts) == 3


def test_a_constant_column_has_one_bin() -> None:
    stats = numbers([5, 5, 5, None], pa.int64())
    assert stats.histogram.edges == [5.0, 5.0]
    assert stats.histogram.counts == [3]
    assert (stats.min, stats.max, stats.mean, stats.std) == (5.0, 5.0, 5.0, 0.0)
    assert set(stats.quantiles.values()) == {5.0}


@pytest.mark.parametrize(
    "values",
    [pa.array([None, None], pa.float64()), pa.array([], pa.int64())],
    ids=["null", "empty"],
)
def test_a_column_without_values_has_no_numeric_stats(values: pa.Array) -> None:
    profile = column(values)
    assert profile.kind == "number"
    assert profile.numeric is None
    assert profile.nulls == len(values)


def test_a_column_of_only_nan_and_inf_has_counts_but_no_statistics() -> None:
    stats = numbers(pa.array([float("nan"), float("inf"), None], from_pandas=False))
    assert (stats.nans, stats.infinities) == (1, 1)
    assert (stats.min, stats.max, stats.mean, stats.std) == (None, None, None, None)
    assert stats.quantiles == {}
    assert (stats.histogram.edges, stats.histogram.counts) == ([], [])


def test_huge_values_stay_finite() -> None:
    values = np.array([-1.7e308, 1.7e308, 1.7e308, 0.0])
    stats = numbers(values, bins=4)
    assert stats.mean == pytest.approx(4.25e307, rel=1e-9)  # numpy's own mean overflows
    assert stats.std is not None and np.isfinite(stats.std)
    assert stats.histogram.edges[0] == -1.7e308 and stats.histogram.edges[-1] == 1.7e308
    assert stats.histogram.counts == [1, 0, 1, 2]


def test_decimals_and_big_integers_are_numbers() -> None:
    decimals = numbers([Decimal("1.25"), Decimal("2.75"), None], pa.decimal128(6, 2))
    assert (decimals.min, decimals.max, decimals.mean) == (1.25, 2.75, 2.0)
    big = numbers([2**62 + 1, -(2**62)], pa.int64())
    assert big.max == float(2**62)


def test_strings_keep_the_most_frequent_values_with_ties_by_value() -> None:
    values = ["b"] * 3 + ["a"] * 3 + ["c"] * 5 + ["d", "e", None, ""]
    profile = column(values, top=4)
    assert profile.kind == "string"
    assert profile.numeric is None
    assert profile.categorical is not None
    assert profile.categorical.distinct == 6
    tops = [(c.value, c.count) for c in profile.categorical.top]
    assert tops == [("c", 5), ("a", 3), ("b", 3), ("", 1)]


@pytest.mark.parametrize(
    "arrow_type",
    [pa.string(), pa.large_string(), pa.string_view(), pa.dictionary(pa.int32(), pa.string())],
    ids=str,
)
def test_every_string_type_counts_alike(arrow_type: pa.DataType) -> None:
    chunks = [pa.array(["x", None, "y"], arrow_type), pa.array(["y", "z", None], arrow_type)]
    table = pa.table({"s": pa.chunked_array(chunks)})
    profile = profile_table(table).columns[0]
    assert (profile.type, profile.kind, profile.nulls) == (str(arrow_type), "string", 2)
    assert profile.categorical is not None
    assert profile.categorical.distinct == 3
    assert [(c.value, c.count) for c in profile.categorical.top] == [("y", 2), ("x", 1), ("z", 1)]


def test_top_zero_keeps_only_the_distinct_count() -> None:
    profile = column(["a", "b", "a"], top=0)
    assert profile.categorical is not None
    assert (profile.categorical.distinct, profile.categorical.top) == (2, [])


def test_many_distinct_strings() -> None:
    values = [f"v{i:05d}" for i in range(20_000)] + ["v19999", "v00042", "v00042"]
    profile = column(values, top=3)
    assert profile.categorical is not None
    assert profile.categorical.distinct == 20_000
    tops = [(c.value, c.count) for c in profile.categorical.top]
    assert tops == [("v00042", 3), ("v19999", 2), ("v00000", 1)]


@pytest.mark.parametrize(
    ("values", "expected"),
    [([True, False, True, None], [("true", 2), ("false", 1)]),
     ([False, False, True], [("false", 2), ("true", 1)]),
     ([True, False], [("false", 1), ("true", 1)]),
     ([True, True], [("true", 2)]),
     ([None], [])],
)  # fmt: skip
def test_booleans_count_true_and_false(values: list[bool | None], expected: Any) -> None:
    profile = column(values, pa.bool_())
    assert profile.kind == "boolean"
    assert profile.numeric is None
    assert profile.categorical is not None
    assert profile.categorical.distinct == len(expected)
    assert [(c.value, c.count) for c in profile.categorical.top] == expected


@pytest.mark.parametrize(
    "values",
    [pa.array([dt.datetime(2024, 1, 1), None], pa.timestamp("us")),
     pa.array([dt.date(2024, 1, 1), None], pa.date32()),
     pa.array([[1, 2], None]), pa.array([{"a": 1}, None]), pa.array([b"x", None])],
    ids=["timestamp", "date", "list", "struct", "binary"],
)  # fmt: skip
def test_timestamps_and_other_kinds_are_counted_only(values: pa.Array) -> None:
    profile = column(values)
    assert (profile.count, profile.nulls, profile.null_share) == (2, 1, 0.5)
    assert (profile.numeric, profile.categorical) == (None, None)


def test_an_empty_table() -> None:
    table = pa.table(
        {
            "x": pa.array([], pa.float64()),
            "s": pa.array([], pa.string()),
            "b": pa.array([], pa.bool_()),
            "n": pa.array([], pa.null()),
        }
    )
    profile = profile_table(table)
    assert profile.rows == 0
    assert [(c.kind, c.count, c.nulls, c.null_share) for c in profile.columns] == [
        ("number", 0, 0, 0.0),
        ("string", 0, 0, 0.0),
        ("boolean", 0, 0, 0.0),
        ("other", 0, 0, 0.0),
    ]
    assert profile.columns[0].numeric is None
    assert profile.columns[1].categorical is not None
    assert profile.columns[1].categorical.distinct == 0
    assert profile_table(pa.table({})) == Profile(rows=0, columns=[])


def test_a_profile_is_strict_json_and_round_trips() -> None:
    table = pa.table(
        {
            "x": pa.array([1.0, float("nan"), float("inf"), None], from_pandas=False),
            "only_nan": pa.array([float("nan")] * 4, from_pandas=False),
            "empty": pa.array([None] * 4, pa.float64()),
            "huge": [1e308, -1e308, 1e308, 1e308],
            "s": ["a", None, "b", "a"],
            "b": [True, None, False, True],
            "t": pa.array([0, 1, None, 3], pa.timestamp("s")),
            "l": [[1], [], None, [2, 3]],
        }
    )
    profile = profile_table(table)
    text = strict_json(profile)
    assert Profile.model_validate_json(text) == profile


def test_schema_of() -> None:
    schema = pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("at", pa.timestamp("ms", tz="UTC")),
            pa.field("tags", pa.list_(pa.string())),
        ]
    )
    table = pa.Table.from_pylist([], schema=schema)
    assert schema_of(table) == [
        ColumnSchema(name="id", type="int64", nullable=False),
        ColumnSchema(name="at", type="timestamp[ms, tz=UTC]", nullable=True),
        ColumnSchema(name="tags", type="list<item: string>", nullable=True),
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"bins": 0}, "at least 1 bin, got bins=0"), ({"top": -1}, "cannot be negative, got top=-1")],
)
def test_bad_options_are_refused(options: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        profile_table(pa.table({"x": [1]}), **options)


def test_non_finite_values_cannot_enter_a_profile() -> None:
    with pytest.raises(ValidationError, match="finite number"):
        ColumnProfile(name="x", type="double", kind="number", count=1, nulls=0, null_share=np.nan)


def test_long_categories_are_cut_so_a_profile_stays_small() -> None:
    from stratus.data.profiling import MAX_CATEGORY_CHARS

    text = "x" * 10_000
    profile = profile_table(pa.table({"note": [text, text, "short"]}))
    top = profile.columns[0].categorical
    assert top is not None
    assert [len(c.value) for c in top.top] == [MAX_CATEGORY_CHARS, 5]
    assert top.top[0].value.endswith("…") and top.top[0].count == 2
