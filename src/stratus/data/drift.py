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
    name, stats = reference["name"], reference.get("numeric") or {}
    edges = (stats.get("histogram") or {}).get("edges") or []
    counts = (stats.get("histogram") or {}).get("counts") or []
    good = values[np.isfinite(values)] if values.size else values
    if not counts or good.size == 0:
        return ColumnDrift(
            column=name, kind="number", psi=None, detail="no finite values on one side"
        )
    inner = np.asarray(edges, dtype=float)
    if inner[0] == inner[-1]:  # a constant reference: below, at, above its value
        at = int(np.count_nonzero(good == inner[0]))
        below = int(np.count_nonzero(good < inner[0]))
        actual = [below, at, good.size - at - below]
        expected = [0, counts[0], 0]
    else:
        binned, _ = np.histogram(np.clip(good, inner[0], inner[-1]), bins=inner)
        below = int(np.count_nonzero(good < inner[0]))
        above = int(np.count_nonzero(good > inner[-1]))
        binned[0] -= below  # clipping put the out-of-range values in the end bins
        binned[-1] -= above
        actual = [below, *binned.tolist(), above]
        expected = [0, *counts, 0]
    shift: float | None = None
    mean, std = stats.get("mean"), stats.get("std")
    if mean is not None and std is not None:
        moved = abs(float(good.mean()) - mean)
        shift = moved / std if std > 0 else (0.0 if moved == 0 else math.inf)
        if math.isinf(shift):
            shift = 1e9  # JSON-safe: "the reference was constant and the mean moved"
    return ColumnDrift(column=name, kind="number", psi=psi(expected, actual), mean_shift=shift)


def categorical_drift(reference: dict[str, Any], values: list[str | None]) -> ColumnDrift:
    """Drift of strings or booleans (as "true"/"false") over the reference's top categories;
    values the reference did not list count as one "other" bin."""
    name, stats = reference["name"], reference.get("categorical") or {}
    top = [c["value"] for c in stats.get("top", [])]
    present = reference.get("count", 0) - reference.get("nulls", 0)
    expected = [float(c["count"]) for c in stats.get("top", [])]
    expected.append(float(max(present - sum(expected), 0)))
    index = {value: i for i, value in enumerate(top)}
    actual = [0.0] * (len(top) + 1)
    seen = 0
    for value in values:
        if value is None:
            continue
        seen += 1
        actual[index.get(value, len(top))] += 1
    if present == 0 or seen == 0:
        return ColumnDrift(column=name, kind="string", psi=None, detail="no values on one side")
    return ColumnDrift(column=name, kind="string", psi=psi(expected, actual))
