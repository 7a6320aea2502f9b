"""The schema and profile of a dataset version, computed once when it is pushed and stored with it.

`stratus.data.formats` reads the pushed files into one Arrow table; `schema_of` and
`profile_table` describe it column by column. The profile is the reference that drift
monitoring compares live traffic against, so every value in it is JSON-safe (no NaN or inf).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from stratus.core.errors import InvalidInput

Kind = Literal["number", "string", "boolean", "timestamp", "other"]
QUANTILES = {
    "p01": 0.01,
    "p05": 0.05,
    "p25": 0.25,
    "p50": 0.50,
    "p75": 0.75,
    "p95": 0.95,
    "p99": 0.99,
}


class _Stats(BaseModel):
    # allow_inf_nan=False: a NaN that slipped through would fail here, not in a JSON encoder.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Histogram(_Stats):
    """`len(counts)` equal-width bins between `edges`; the last bin includes its right edge.

    A constant column has one bin with both edges at its value; a column without finite
    values has no bins.
    """

    edges: list[float]
    counts: list[int]


class NumericStats(_Stats):
    """Over the finite values only: NaN and ±inf are counted apart and left out.

    `min`, `max`, `mean` and `std` (population, ddof=0) are None, `quantiles` empty and the
    histogram bare when a column holds no finite value (only NaN or inf).
    """

    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    quantiles: dict[str, float]
    histogram: Histogram
    nans: int
    infinities: int


class CategoryCount(_Stats):
    value: str
    count: int


class CategoryStats(_Stats):
    """How many distinct non-null values, and the most frequent (count descending, then value)."""

    distinct: int
    top: list[CategoryCount]


class ColumnProfile(_Stats):
    """One column. `numeric` is set for numbers with a non-null value, `categorical` for strings
    and booleans; timestamps and dates, like lists, structs and the rest, get counts only."""

    name: str
    type: str
    kind: Kind
    count: int
    nulls: int
    null_share: float
    numeric: NumericStats | None = None
    categorical: CategoryStats | None = None


class ColumnSchema(_Stats):
    name: str
    type: str
    nullable: bool


class Profile(_Stats):
    rows: int
    columns: list[ColumnProfile]


def schema_of(table: pa.Table) -> list[ColumnSchema]:
    """Each column's name, Arrow type (as text, e.g. `int64`, `double`, `timestamp[s]`) and
    whether it may hold nulls."""
    return [
        ColumnSchema(name=field.name, type=str(field.type), nullable=field.nullable)
        for field in table.schema
    ]


def kind_of(arrow_type: pa.DataType) -> Kind:
    """The profile's kind of an Arrow type; dictionary-encoded columns take their values' kind."""
    if pa.types.is_dictionary(arrow_type):
        return kind_of(arrow_type.value_type)
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_decimal(arrow_type)
    ):
        return "number"
    if _is_text(arrow_type):
        return "string"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "timestamp"
    return "other"


def profile_table(table: pa.Table, *, bins: int = 20, top: int = 20) -> Profile:
    """Count, nulls and per-kind statistics of every column, computed on whole columns.

    Args:
        table: the dataset version's rows.
        bins: how many equal-width bins the histogram of a numeric column has.
        top: how many of a string or boolean column's most frequent values to keep.

    Raises:
        InvalidInput: `bins` is below 1 or `top` below 0.
    """
    if bins < 1:
        raise InvalidInput(f"a histogram needs at least 1 bin, got bins={bins}")
    if top < 0:
        raise InvalidInput(f"the number of top values cannot be negative, got top={top}")
    columns = [
        _profile_column(name, column, bins=bins, top=top)
        for name, column in zip(table.column_names, table.columns, strict=True)
    ]
    return Profile(rows=table.num_rows, columns=columns)


def _profile_column(name: str, column: pa.ChunkedArray, *, bins: int, top: int) -> ColumnProfile:
    kind = kind_of(column.type)
    count = len(column)
    nulls = column.null_count
    values = column
    if pa.types.is_dictionary(column.type):
        values = column.cast(column.type.value_type)
    numeric = _numeric(values, bins) if kind == "number" else None
    categorical: CategoryStats | None = None
    if kind == "string":
        categorical = _categories(values, top)
    elif kind == "boolean":
        categorical = _booleans(values, count - nulls, top)
    return ColumnProfile(
        name=name,
        type=str(column.type),
        kind=kind,
        count=count,
        nulls=nulls,
        null_share=nulls / count if count else 0.0,
        numeric=numeric,
        categorical=categorical,
    )


def _numeric(column: pa.ChunkedArray, bins: int) -> NumericStats | None:
    present = column.drop_null()
    if len(present) == 0:
        return None
    # safe=False: int64 beyond 2**53 and decimals round to the nearest double, as intended.
    values = np.asarray(present.cast(pa.float64(), safe=False).to_numpy())
    finite = np.isfinite(values)
    nans = int(np.count_nonzero(np.isnan(values)))
    infinities = int(values.size - np.count_nonzero(finite)) - nans
    good = values if nans + infinities == 0 else values[finite]
    if good.size == 0:
        return NumericStats(
            min=None,
            max=None,
            mean=None,
            std=None,
            quantiles={},
            histogram=Histogram(edges=[], counts=[]),
            nans=nans,
            infinities=infinities,
        )
    low, high = float(good.min()), float(good.max())
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(good.mean()), float(good.std())
        if not (np.isfinite(mean) and np.isfinite(std)):  # sums past 1.8e308: rescale
            scale = max(abs(low), abs(high))
            scaled = good / scale
            mean, std = float(scaled.mean()) * scale, float(scaled.std()) * scale
        quantiles = np.quantile(good, list(QUANTILES.values()))
        if not np.all(np.isfinite(quantiles)):  # interpolating across ±1.8e308 overflows
            quantiles = np.quantile(good, list(QUANTILES.values()), method="nearest")
    return NumericStats(
        min=low,
        max=high,
        mean=mean,
        std=std,
        quantiles={key: float(q) for key, q in zip(QUANTILES, quantiles, strict=True)},
        histogram=_histogram(good, low, high, bins),
        nans=nans,
        infinities=infinities,
    )


def _histogram(good: np.ndarray[Any, Any], low: float, high: float, bins: int) -> Histogram:
    if low == high:
        return Histogram(edges=[low, high], counts=[int(good.size)])
    if np.isfinite(high - low):
        counts, edges = np.histogram(good, bins=bins, range=(low, high))
    else:  # the span overflows a double: place the edges on a rescaled line
        scale = max(abs(low), abs(high))
        edges = np.linspace(low / scale, high / scale, bins + 1) * scale
        edges[0], edges[-1] = low, high
        counts, edges = np.histogram(good, bins=edges)
    return Histogram(edges=[float(e) for e in edges], counts=[int(c) for c in counts])


def _categories(column: pa.ChunkedArray, top: int) -> CategoryStats:
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.large_string())  # value_counts on string_view loses its nulls
    counted = pc.value_counts(column)
    table = pa.table({"value": counted.field("values"), "count": counted.field("counts")})
    table = table.filter(pc.is_valid(table["value"]))
    distinct = table.num_rows
    order = [("count", "descending"), ("value", "ascending")]
    if top < distinct:
        table = table.take(pc.select_k_unstable(table, k=top, sort_keys=order))
    table = table.sort_by(order)
    return CategoryStats(
        distinct=distinct,
        top=[
            CategoryCount(value=shown_category(value), count=n)
            for value, n in zip(table["value"].to_pylist(), table["count"].to_pylist(), strict=True)
        ],
    )


MAX_CATEGORY_CHARS = 200


def shown_category(value: str) -> str:
    """A category as the profile keeps it: free text is cut (a profile stays small)."""
    if len(value) <= MAX_CATEGORY_CHARS:
        return value
    return value[: MAX_CATEGORY_CHARS - 1] + "…"


def _booleans(column: pa.ChunkedArray, present: int, top: int) -> CategoryStats:
    trues = pc.sum(column).as_py() or 0
    counts = [("true", trues), ("false", present - trues)]
    seen = sorted((c for c in counts if c[1] > 0), key=lambda c: (-c[1], c[0]))
    return CategoryStats(
        distinct=len(seen),
        top=[CategoryCount(value=value, count=n) for value, n in seen[:top]],
    )


def _is_text(arrow_type: pa.DataType) -> bool:
    is_string_view = getattr(pa.types, "is_string_view", None)  # pyarrow 16 and later
    return bool(
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or (is_string_view is not None and is_string_view(arrow_type))
    )
