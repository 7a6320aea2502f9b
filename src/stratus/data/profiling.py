"""The schema and profile of a dataset version, computed once when it is pushed and stored with it.

`stratus.data.batches` reads the pushed files as a stream of Arrow record batches;
`profile_batches` describes them column by column with the streaming summaries of
`sketches.py`, so memory is bounded by a batch, not by the file. The profile is the reference
that drift monitoring compares live traffic against, so every value in it is JSON-safe (no
NaN or inf).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from stratus.core.errors import InvalidInput
from stratus.data.sketches import Moments, Reservoir, ValueCounts

if TYPE_CHECKING:
    from stratus.data.batches import BatchSource

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


def schema_of(table: pa.Table | BatchSource) -> list[ColumnSchema]:
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
    """`profile_batches` over a table already in memory."""
    from stratus.data.batches import TableSource

    return profile_batches(TableSource(table), bins=bins, top=top)


def profile_batches(source: BatchSource, *, bins: int = 20, top: int = 20) -> Profile:
    """Count, nulls and per-kind statistics of every column, read a record batch at a time.

    One pass gathers everything; a second reads the numeric columns again, only when one had
    more finite values than it keeps (`sketches.EXACT_VALUES`), to count its histogram over
    the bins its exact min and max fixed. Memory is bounded by a batch and the sketches' caps.

    Args:
        source: the dataset version's rows.
        bins: how many equal-width bins the histogram of a numeric column has.
        top: how many of a string or boolean column's most frequent values to keep.

    Raises:
        InvalidInput: `bins` is below 1 or `top` below 0.
    """
    if bins < 1:
        raise InvalidInput(f"a histogram needs at least 1 bin, got bins={bins}")
    if top < 0:
        raise InvalidInput(f"the number of top values cannot be negative, got top={top}")
    columns = [_ColumnSketch(field) for field in source.schema]
    rows = 0
    for batch in source.batches():
        rows += batch.num_rows
        for sketch, column in zip(columns, batch.columns, strict=True):
            sketch.add(column)
    histograms = {
        i: sketch.histogram_bins(bins)
        for i, sketch in enumerate(columns)
        if sketch.numeric is not None and not sketch.numeric[1].exact
    }
    if histograms:
        counts = {i: np.zeros(len(edges) - 1, dtype=np.int64) for i, edges in histograms.items()}
        for batch in source.batches():
            for i, edges in histograms.items():
                good = _finite(_plain(batch.column(i)))
                if good.size:
                    counts[i] += _bin(good, edges)
        for i, edges in histograms.items():
            columns[i].histogram = Histogram(
                edges=[float(e) for e in edges], counts=[int(c) for c in counts[i]]
            )
    return Profile(rows=rows, columns=[sketch.finish(bins, top) for sketch in columns])


class _ColumnSketch:
    def __init__(self, field: pa.Field) -> None:
        self.field = field
        self.kind = kind_of(field.type)
        self.count = 0
        self.nulls = 0
        self.nans = 0
        self.infinities = 0
        self.numeric = (Moments(), Reservoir()) if self.kind == "number" else None
        self.histogram: Histogram | None = None  # counted in a second pass when not exact
        self.values = ValueCounts() if self.kind == "string" else None
        self.trues = 0

    def add(self, column: pa.Array) -> None:
        self.count += len(column)
        self.nulls += column.null_count
        if self.kind in ("number", "string", "boolean"):
            column = _plain(column)
        if self.numeric is not None:
            values = _doubles(column)
            finite = np.isfinite(values)
            nans = int(np.count_nonzero(np.isnan(values)))
            self.nans += nans
            self.infinities += int(values.size - np.count_nonzero(finite)) - nans
            good = values if bool(finite.all()) else values[finite]
            moments, reservoir = self.numeric
            moments.add(good)
            reservoir.add(good)
        elif self.values is not None:
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                column = column.cast(pa.large_string())  # value_counts on string_view loses nulls
            self.values.add(column)
        elif self.kind == "boolean":
            self.trues += pc.sum(column).as_py() or 0

    def histogram_bins(self, bins: int) -> np.ndarray[Any, Any]:
        assert self.numeric is not None
        moments = self.numeric[0]
        return _edges(moments.low, moments.high, bins)

    def finish(self, bins: int, top: int) -> ColumnProfile:
        present = self.count - self.nulls
        numeric: NumericStats | None = None
        categorical: CategoryStats | None = None
        if self.numeric is not None and present:
            numeric = self._numeric(bins)
        elif self.values is not None:
            categorical = _categories(self.values, top)
        elif self.kind == "boolean":
            categorical = _booleans(self.trues, present, top)
        return ColumnProfile(
            name=self.field.name,
            type=str(self.field.type),
            kind=self.kind,
            count=self.count,
            nulls=self.nulls,
            null_share=self.nulls / self.count if self.count else 0.0,
            numeric=numeric,
            categorical=categorical,
        )

    def _numeric(self, bins: int) -> NumericStats:
        assert self.numeric is not None
        moments, reservoir = self.numeric
        if moments.n == 0:
            return NumericStats(
                min=None,
                max=None,
                mean=None,
                std=None,
                quantiles={},
                histogram=Histogram(edges=[], counts=[]),
                nans=self.nans,
                infinities=self.infinities,
            )
        low, high = moments.low, moments.high
        sample = reservoir.values
        if reservoir.exact:  # every finite value is at hand: the whole-column statistics
            mean, std = _mean_std(sample, low, high)
            histogram = _histogram(sample, low, high, bins)
        else:
            mean, std = moments.mean_std()
            assert self.histogram is not None
            histogram = self.histogram
        with np.errstate(over="ignore", invalid="ignore"):
            quantiles = np.quantile(sample, list(QUANTILES.values()))
            if not np.all(np.isfinite(quantiles)):  # interpolating across ±1.8e308 overflows
                quantiles = np.quantile(sample, list(QUANTILES.values()), method="nearest")
        return NumericStats(
            min=low,
            max=high,
            mean=mean,
            std=std,
            quantiles={key: float(q) for key, q in zip(QUANTILES, quantiles, strict=True)},
            histogram=histogram,
            nans=self.nans,
            infinities=self.infinities,
        )


def _plain(column: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column


def _doubles(column: pa.Array) -> np.ndarray[Any, Any]:
    present = column.drop_null()
    # safe=False: int64 beyond 2**53 and decimals round to the nearest double, as intended.
    return np.asarray(present.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False))


def _finite(column: pa.Array) -> np.ndarray[Any, Any]:
    values = _doubles(column)
    finite = np.isfinite(values)
    return values if bool(finite.all()) else values[finite]


def _mean_std(good: np.ndarray[Any, Any], low: float, high: float) -> tuple[float, float]:
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(good.mean()), float(good.std())
        if not (np.isfinite(mean) and np.isfinite(std)):  # sums past 1.8e308: rescale
            scale = max(abs(low), abs(high))
            scaled = good / scale
            mean, std = float(scaled.mean()) * scale, float(scaled.std()) * scale
    return mean, std


def _edges(low: float, high: float, bins: int) -> np.ndarray[Any, Any]:
    """The histogram's edges, as `np.histogram` places them for (low, high)."""
    if low == high:
        return np.array([low, high])
    if np.isfinite(high - low):
        return np.histogram_bin_edges(np.empty(0), bins=bins, range=(low, high))
    # the span overflows a double: place the edges on a rescaled line
    scale = max(abs(low), abs(high))
    edges = np.linspace(low / scale, high / scale, bins + 1) * scale
    edges[0], edges[-1] = low, high
    return edges


def _bin(good: np.ndarray[Any, Any], edges: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Counts of `good` over `edges`, value by value as `_histogram` counts a whole column."""
    low, high = float(edges[0]), float(edges[-1])
    if low == high:
        return np.array([good.size])
    if np.isfinite(high - low):
        counts, _ = np.histogram(good, bins=len(edges) - 1, range=(low, high))
    else:
        counts, _ = np.histogram(good, bins=edges)
    return counts


def _histogram(good: np.ndarray[Any, Any], low: float, high: float, bins: int) -> Histogram:
    edges = _edges(low, high, bins)
    counts = _bin(good, edges)
    return Histogram(edges=[float(e) for e in edges], counts=[int(c) for c in counts])


def _categories(values: ValueCounts, top: int) -> CategoryStats:
    table = values.table()
    distinct = values.distinct()
    order = [("count", "descending"), ("value", "ascending")]
    if top < table.num_rows:
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


def _booleans(trues: int, present: int, top: int) -> CategoryStats:
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
