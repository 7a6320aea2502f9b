"""Streaming summaries of a column, fed one record batch at a time, in memory bounded by caps.

`profiling.py` keeps one per column while it reads a dataset version batch by batch. What is
exact and what is approximate (docs/datasets.md says the same to users):

- `Moments`: count, min and max exact; mean and standard deviation merged batch by batch
  (Chan et al.), exact up to floating-point rounding, on a power-of-two scale so sums of values
  near 1.8e308 do not overflow.
- `Reservoir`: every finite value up to `capacity`, then a uniform sample of that many
  (Algorithm R, a fixed seed: the same file gives the same sample). Quantiles come from it:
  exact up to `capacity` values, approximate above (a rank error of about 1/sqrt(capacity)).
- `ValueCounts`: a string column's value counts, exact up to `capacity` distinct values; above,
  the largest `capacity` counts are kept (a kept count may be short by at most `floor`, the
  largest count ever dropped) and the distinct count is estimated from the k smallest hashes
  of the values seen (`DistinctSketch`, a relative error of about 1/sqrt(k)).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EXACT_VALUES = 128 * 1024  # finite values a numeric column keeps for exact quantiles
EXACT_DISTINCT = 64 * 1024  # distinct values a string column counts exactly
DISTINCT_SKETCH = 4096  # hashes kept to estimate a distinct count past EXACT_DISTINCT
_MERGE_ROWS = 64 * 1024


class Moments:
    """Count, min, max, mean and M2 of finite doubles, merged batch by batch."""

    def __init__(self) -> None:
        self.n = 0
        self.low = math.inf
        self.high = -math.inf
        self.scale = 0.0  # a power of two above half of every |value|: mean and M2 in its units
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, values: np.ndarray[Any, Any]) -> None:
        if values.size == 0:
            return
        low, high = float(values.min()), float(values.max())
        self.low, self.high = min(self.low, low), max(self.high, high)
        biggest = max(abs(low), abs(high))
        if biggest > self.scale:
            scale = math.ldexp(1.0, math.frexp(biggest)[1] - 1) if biggest > 0 else 0.0
            if self.scale > 0:  # powers of two: rescaling is exact
                ratio = self.scale / scale
                self.mean *= ratio
                self.m2 *= ratio * ratio
            self.scale = scale
        if self.scale == 0:  # only zeros so far
            self.n += values.size
            return
        scaled = values / self.scale
        n_b = values.size
        mean_b = float(scaled.mean())
        m2_b = float(np.square(scaled - mean_b).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n

    def mean_std(self) -> tuple[float, float]:
        """Population mean and standard deviation (ddof=0)."""
        if self.scale == 0:
            return 0.0, 0.0
        return self.mean * self.scale, math.sqrt(max(self.m2, 0.0) / self.n) * self.scale


class Reservoir:
    """Every value while at most `capacity` came, then a uniform sample of `capacity`."""

    def __init__(self, capacity: int = EXACT_VALUES, seed: int = 0) -> None:
        self.capacity = capacity
        self.seen = 0
        self._values = np.empty(0, dtype=np.float64)
        self._rng = np.random.default_rng(seed)

    @property
    def exact(self) -> bool:
        return self.seen <= self.capacity

    @property
    def values(self) -> np.ndarray[Any, Any]:
        return self._values

    def add(self, values: np.ndarray[Any, Any]) -> None:
        room = self.capacity - self._values.size
        if room > 0:
            self._values = np.concatenate([self._values, values[:room]])
            self.seen += min(room, values.size)
            values = values[room:]
        if values.size == 0:
            return
        # Algorithm R, vectorised: the i-th value overall (0-based) replaces slot j, drawn in
        # [0, i], when j < capacity; numpy applies repeated slots in order, as a loop would.
        positions = np.arange(self.seen, self.seen + values.size, dtype=np.int64)
        slots = self._rng.integers(0, positions + 1)
        kept = slots < self.capacity
        self._values[slots[kept]] = values[kept]
        self.seen += values.size


class DistinctSketch:
    """The k smallest 64-bit hashes of the values seen: (k - 1) / (k-th smallest / 2**64)
    estimates how many distinct values there were (K minimum values)."""

    def __init__(self, k: int = DISTINCT_SKETCH) -> None:
        self.k = k
        self._smallest = np.empty(0, dtype=np.uint64)

    def add(self, values: pa.Array | pa.ChunkedArray) -> None:
        """Strings (or binary values) without nulls."""
        hashes = string_hashes(values)
        self._smallest = np.unique(np.concatenate([self._smallest, hashes]))[: self.k]

    def estimate(self) -> int:
        if self._smallest.size < self.k:
            return int(self._smallest.size)
        return round((self.k - 1) / (float(self._smallest[-1]) / 2.0**64))


_P = np.uint64(0x100000001B3)  # odd: invertible modulo 2**64
_P_INVERSE = np.uint64(pow(int(_P), -1, 2**64))
_HASH_CHUNK = 8 * 1024  # strings hashed at once (bounds the temporary arrays)


def string_hashes(values: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, Any]:
    """A 64-bit hash of each value, computed on Arrow's buffers with numpy (no Python object
    per value): a polynomial over the bytes modulo 2**64, mixed with the length and finished
    with splitmix64. Deterministic across processes."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.large_binary())
    n = len(values)
    out = np.empty(n, dtype=np.uint64)
    if n == 0:
        return out
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[values.offset : values.offset + n + 1]
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)
        if data_buffer is not None
        else np.empty(0, dtype=np.uint8)
    )
    for first in range(0, n, _HASH_CHUNK):
        last = min(first + _HASH_CHUNK, n)
        low, high = int(offsets[first]), int(offsets[last])
        size = high - low
        powers = np.full(size + 1, _P, dtype=np.uint64)
        powers[0] = 1
        np.cumprod(powers, out=powers)  # P**k, wrapping modulo 2**64
        inverses = np.full(size + 1, _P_INVERSE, dtype=np.uint64)
        inverses[0] = 1
        np.cumprod(inverses, out=inverses)
        weighted = (data[low:high].astype(np.uint64) + np.uint64(1)) * powers[:size]
        sums = np.zeros(size + 1, dtype=np.uint64)
        np.cumsum(weighted, out=sums[1:])
        starts = offsets[first:last] - low
        ends = offsets[first + 1 : last + 1] - low
        z = (sums[ends] - sums[starts]) * inverses[starts]
        z ^= (ends - starts).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
        out[first:last] = z
    return out


class ValueCounts:
    """How often each non-null value of a string column came (see the module docstring)."""

    def __init__(self, capacity: int | None = EXACT_DISTINCT) -> None:
        self.capacity = capacity  # None: every value is counted (`unique` needs them all)
        self.floor = 0  # the largest count dropped; 0 while every count is kept
        self._counts: pa.Table | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._sketch: DistinctSketch | None = None

    @property
    def exact(self) -> bool:
        return self._sketch is None

    def add(self, column: pa.Array) -> None:
        counted = pc.value_counts(column)
        table = pa.table({"value": counted.field("values"), "count": counted.field("counts")})
        table = table.filter(pc.is_valid(table["value"]))
        if self._sketch is not None:
            self._sketch.add(table["value"])
        self._pending.append(table)
        self._pending_rows += table.num_rows
        # Merged when the pending counts outgrow the kept ones: linear time over all batches.
        kept = self._counts.num_rows if self._counts is not None else 0
        if self._pending_rows >= max(_MERGE_ROWS, kept):
            self._merge()

    def distinct(self) -> int:
        self._merge()
        if self._sketch is not None:
            return max(self._sketch.estimate(), int(self.table().num_rows))
        return int(self.table().num_rows)

    def table(self) -> pa.Table:
        """(value, count) rows: every value while exact, else the largest counts kept."""
        self._merge()
        if self._counts is None:
            return pa.table(
                {"value": pa.array([], pa.large_string()), "count": pa.array([], pa.int64())}
            )
        return self._counts

    def _merge(self) -> None:
        if not self._pending:
            return
        parts = ([self._counts] if self._counts is not None else []) + self._pending
        self._pending, self._pending_rows = [], 0
        # Summed by hashing kernels, not a group_by (an Acero plan, with its thread pool)
        joined = pa.concat_tables(parts).combine_chunks()
        values = pc.unique(joined["value"])
        slots = pc.index_in(joined["value"], value_set=values).to_numpy(zero_copy_only=False)
        weights = joined["count"].to_numpy(zero_copy_only=False)
        sums = np.bincount(slots, weights=weights, minlength=len(values)).astype(np.int64)
        merged = pa.table({"value": values, "count": pa.array(sums, pa.int64())})
        if self.capacity is not None and merged.num_rows > self.capacity:
            if self._sketch is None:  # every value seen so far is here: start the sketch
                self._sketch = DistinctSketch()
                self._sketch.add(merged["value"])
            order = [("count", "descending"), ("value", "ascending")]
            ranked = merged.take(pc.sort_indices(merged, sort_keys=order))
            self.floor = max(self.floor, int(ranked["count"][self.capacity].as_py()))
            merged = ranked.slice(0, self.capacity)
        self._counts = merged
