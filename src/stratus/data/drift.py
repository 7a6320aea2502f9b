"""How far a column's values have moved from a reference profile: pure functions, no I/O.

Validation (`validation.py`) compares a new dataset version with a reference version's stored
profile; the monitors of live traffic will compare captured requests the same way. The measure
is the population stability index (PSI) over the reference's own bins: its histogram's edges
for numbers (with a bin below and one above the reference's range), its top categories (and
"every other value") for strings and booleans. Numbers also report the mean's shift in units
of the reference's standard deviation.

PSI reads, by common practice: below 0.1 no real change, 0.1 to 0.25 a moderate one, above
0.25 a large one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stratus.data.reports import ColumnDrift

# A bin that is empty on one side would make PSI infinite; a small floor keeps it finite
# and still large (the usual smoothing).
_FLOOR = 1e-4


def psi(expected: list[float], actual: list[float]) -> float:
    """The population stability index of two counts over the same bins."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.shape != a.shape or e.size == 0:
        raise ValueError("PSI needs two counts over the same, non-empty bins")
    if e.sum() == 0 or a.sum() == 0:
        return 0.0
    e = np.maximum(e / e.sum(), _FLOOR)
    a = np.maximum(a / a.sum(), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_drift(reference: dict[str, Any], values: np.ndarray[Any, Any]) -> ColumnDrift:
    """Drift of numbers (finite values only; NaN and inf are the `finite` rule's business)
    against a reference column profile (a `ColumnProfile` as stored, i.e. a dict)."""
    counter = NumericDrift(reference)
    counter.add(values)
    return counter.result()


def categorical_drift(reference: dict[str, Any], values: list[str | None]) -> ColumnDrift:
    """Drift of strings or booleans (as "true"/"false") over the reference's top categories;
    values the reference did not list count as one "other" bin."""
    counter = CategoricalDrift(reference)
    for value in values:
        if value is not None:
            counter.add(value, 1)
    return counter.result()


class NumericDrift:
    """`numeric_drift`, fed a batch of values at a time: the counts over the reference's bins
    and the sum of the values are all it keeps."""

    def __init__(self, reference: dict[str, Any]) -> None:
        self.reference = reference
        stats = reference.get("numeric") or {}
        self.stats = stats
        self.edges = np.asarray((stats.get("histogram") or {}).get("edges") or [], dtype=float)
        self.counts = (stats.get("histogram") or {}).get("counts") or []
        inner = max(len(self.counts), 1)
        self.actual = np.zeros(inner + 2, dtype=np.int64)  # below, the bins (or at), above
        self.n = 0
        self.total = 0.0

    def add(self, values: np.ndarray[Any, Any]) -> None:
        good = values[np.isfinite(values)] if values.size else values
        if not self.counts or good.size == 0:
            return
        self.n += good.size
        self.total += float(good.sum())
        inner = self.edges
        below = int(np.count_nonzero(good < inner[0]))
        above = int(np.count_nonzero(good > inner[-1]))
        if inner[0] == inner[-1]:  # a constant reference: below, at, above its value
            self.actual += [below, good.size - below - above, above]
            return
        binned, _ = np.histogram(np.clip(good, inner[0], inner[-1]), bins=inner)
        binned[0] -= below  # clipping put the out-of-range values in the end bins
        binned[-1] -= above
        self.actual[0] += below
        self.actual[1:-1] += binned
        self.actual[-1] += above

    def result(self) -> ColumnDrift:
        name = self.reference["name"]
        if not self.counts or self.n == 0:
            return ColumnDrift(
                column=name, kind="number", psi=None, detail="no finite values on one side"
            )
        if self.edges[0] == self.edges[-1]:
            expected = [0, self.counts[0], 0]
        else:
            expected = [0, *self.counts, 0]
        shift: float | None = None
        mean, std = self.stats.get("mean"), self.stats.get("std")
        if mean is not None and std is not None:
            moved = abs(self.total / self.n - mean)
            if not math.isfinite(moved):  # the sum overflowed: the mean moved past any std
                moved = math.inf
            shift = moved / std if std > 0 else (0.0 if moved == 0 else math.inf)
            if math.isinf(shift):
                shift = 1e9  # JSON-safe: "the reference was constant and the mean moved"
        actual = [float(c) for c in self.actual]
        return ColumnDrift(column=name, kind="number", psi=psi(expected, actual), mean_shift=shift)


class CategoricalDrift:
    """`categorical_drift`, fed (value, how many times) as a batch's value counts give them."""

    def __init__(self, reference: dict[str, Any]) -> None:
        self.reference = reference
        stats = reference.get("categorical") or {}
        self.top = [c["value"] for c in stats.get("top", [])]
        self.present = reference.get("count", 0) - reference.get("nulls", 0)
        self.expected = [float(c["count"]) for c in stats.get("top", [])]
        self.expected.append(float(max(self.present - sum(self.expected), 0)))
        self.index = {value: i for i, value in enumerate(self.top)}
        self.actual = [0.0] * (len(self.top) + 1)
        self.seen = 0

    def add(self, value: str, times: int) -> None:
        self.seen += times
        self.actual[self.index.get(value, len(self.top))] += times

    def result(self) -> ColumnDrift:
        name = self.reference["name"]
        if self.present == 0 or self.seen == 0:
            return ColumnDrift(column=name, kind="string", psi=None, detail="no values on one side")
        return ColumnDrift(column=name, kind="string", psi=psi(self.expected, self.actual))
