"""Drift statistics: how far a window of captured traffic has moved from a reference. No I/O.

A drift monitor compares every window with the same reference data, so `Reference` prepares
that side once (numbers sorted, their spread and PSI bins; categories counted) and a window
then costs one sort and one merge per numeric column, one count per categorical one. The tests
are scipy's, read off those sorted arrays and counts, and equal to scipy's own to 1e-9:
two-sample Kolmogorov-Smirnov, Wasserstein-1, the chi-square test of homogeneity and the
Jensen-Shannon distance, with the population stability index beside them. The default
verdicts are those Evidently's DataDriftPreset picks for more than 1000 rows (normed
Wasserstein, Jensen-Shannon distance, both at 0.1), so moving from Evidently keeps them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, get_args

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from stratus.core.errors import InvalidInput
from stratus.monitoring.drift_reports import P_VALUE_METHODS, FeatureDrift, Kind
from stratus.monitoring.drift_reports import DriftReport as DriftReport
from stratus.monitoring.drift_reports import DriftSettings as DriftSettings


def _scipy_stats() -> Any:
    """scipy.stats, imported on first use: it takes a moment, and the control plane should
    not pay for it at start, only when a monitor first runs."""
    import scipy.stats

    return scipy.stats


def _scipy_special() -> Any:
    import scipy.special

    return scipy.special


Floats = npt.NDArray[np.float64]
Column: TypeAlias = "np.ndarray[Any, Any] | pa.Array | pa.ChunkedArray"

# A bin empty on one side would make PSI infinite; the usual floor keeps it finite and large.
PSI_FLOOR = 1e-4
# Evidently norms the Wasserstein distance by the reference's standard deviation, at least this.
MIN_STD = 0.001
# ks_2samp's "auto" mode: the exact p-value while neither sample is larger, asymptotic beyond.
KS_EXACT_MAX = 10_000
CHART_BINS = 20
CHART_CATEGORIES = 20
OTHER = "(other)"


# --- the reference ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NumericReference:
    values: Floats  # the finite values, sorted
    std: float
    psi_edges: Floats  # inner edges of the reference-quantile bins (Reference's psi_bins)
    psi_counts: npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class CategoricalReference:
    counts: dict[str, int]  # by label (see `label`), nulls left out


class Reference:
    """Reference data prepared once and reused for every window (the monitor caches it)."""

    def __init__(
        self,
        columns: Mapping[str, NumericReference | CategoricalReference],
        rows: int,
        psi_bins: int,
    ) -> None:
        self.columns = dict(columns)
        self.names = list(self.columns)
        self.kinds: dict[str, Kind] = {
            name: "numeric" if isinstance(column, NumericReference) else "categorical"
            for name, column in self.columns.items()
        }
        self.rows = rows
        self.psi_bins = psi_bins

    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, Any],
        kinds: Mapping[str, str] | None = None,
        psi_bins: int = 10,
    ) -> Reference:
        """Prepare named columns: numpy arrays, lists, pyarrow arrays or pandas columns.

        A column's kind is `kinds[name]` when given, else its type's: booleans, text and
        dictionaries are categorical, integers and floats numeric.

        Raises:
            InvalidInput: an unknown kind, a kind for a column not given, a column of another
                type (timestamps, lists...) without a kind, or fewer than 2 PSI bins.
        """
        kinds = dict(kinds or {})
        names = list(columns.keys())
        if psi_bins < 2:
            raise InvalidInput(f"PSI needs at least 2 bins, got psi_bins={psi_bins}")
        for name, kind in kinds.items():
            if kind not in get_args(Kind):
                raise InvalidInput(f"column {name!r}: unknown kind {kind!r}")
            if name not in names:
                raise InvalidInput(f"a kind is given for {name!r}, which is not a column")
        prepared: dict[str, NumericReference | CategoricalReference] = {}
        rows = 0
        for name in names:
            column = as_column(columns[name])
            rows = max(rows, len(column))
            if (kinds.get(name) or kind_of(name, column)) == "numeric":
                prepared[name] = _prepare_numeric(column, psi_bins)
            else:
                prepared[name] = CategoricalReference(counts=category_counts(column))
        return cls(prepared, rows, psi_bins)

    @classmethod
    def from_table(
        cls, table: pa.Table, kinds: Mapping[str, str] | None = None, psi_bins: int = 10
    ) -> Reference:
        return cls.from_columns(
            dict(zip(table.column_names, table.columns, strict=True)), kinds, psi_bins
        )


def _prepare_numeric(column: Column, bins: int) -> NumericReference:
    values = finite_sorted(floats(column))
    edges = quantile_edges(values, bins)
    with np.errstate(over="ignore", invalid="ignore"):  # values near the float limits
        std = float(np.std(values)) if values.size else 0.0
    return NumericReference(
        values=values,
        std=std,
        psi_edges=edges,
        psi_counts=bin_counts(values, edges),
    )


# --- comparing a window -----------------------------------------------------------------------


def compute_drift(
    reference: Reference,
    current: Mapping[str, Any] | pa.Table,
    settings: DriftSettings = DriftSettings(),
    columns: Sequence[str] | None = None,
) -> DriftReport:
    """Test each column of `current` against the reference's.

    `columns` defaults to every reference column; a reference column `current` lacks is
    skipped. Current values of a categorical column are compared as text, so numbers or
    booleans in captured JSON still match a reference of strings.

    Raises:
        InvalidInput: `columns` names a column the reference does not have.
    """
    data: Mapping[str, Any] = (
        dict(zip(current.column_names, current.columns, strict=True))
        if isinstance(current, pa.Table)
        else current
    )
    wanted = reference.names if columns is None else list(columns)
    unknown = [name for name in wanted if name not in reference.columns]
    if unknown:
        raise InvalidInput(f"the reference has no column {unknown[0]!r}")
    features: list[FeatureDrift] = []
    for name in wanted:
        if name not in data:
            continue
        prepared = reference.columns[name]
        column = as_column(data[name])
        if isinstance(prepared, NumericReference):
            features.append(_numeric_feature(name, prepared, column, settings))
        else:
            features.append(_categorical_feature(name, prepared, column, settings))
    drifted, share, verdict = dataset_verdict(features, settings.drift_share)
    if isinstance(current, pa.Table):
        rows = current.num_rows
    else:
        rows = max((len(current[name]) for name in current.keys()), default=0)
    return DriftReport(
        features=features,
        drifted_features=drifted,
        share=share,
        drifted=verdict,
        reference_rows=reference.rows,
        current_rows=rows,
        settings=settings,
    )


def feature_verdict(method: str, score: float | None, threshold: float) -> bool:
    """Whether a feature drifted: a p-value below, or a distance at or above, the threshold."""
    if score is None:
        return False
    return score < threshold if method in P_VALUE_METHODS else score >= threshold


def dataset_verdict(
    features: Iterable[FeatureDrift], drift_share: float
) -> tuple[int, float, bool]:
    """How many features drifted, their share of the features with a score, and whether that
    share reaches `drift_share` (never with no scored feature)."""
    scored = [f for f in features if f.score is not None]
    drifted = sum(f.drifted for f in scored)
    share = drifted / len(scored) if scored else 0.0
    return drifted, share, bool(scored) and share >= drift_share


def _numeric_feature(
    name: str, ref: NumericReference, column: Column, settings: DriftSettings
) -> FeatureDrift:
    values = floats(column)
    cur = finite_sorted(values)
    rows = values.size
    method, threshold = settings.numeric_method, settings.numeric_threshold
    common: dict[str, Any] = {
        "name": name,
        "kind": "numeric",
        "method": method,
        "threshold": threshold,
        "reference_count": int(ref.values.size),
        "current_count": int(cur.size),
        "missing_share": (rows - cur.size) / rows if rows else 0.0,
        "chart": numeric_chart(ref.values, cur),
    }
    if not (ref.values.size and cur.size):
        return FeatureDrift(**common, score=None, drifted=False)
    if settings.psi_bins == ref.psi_counts.size:
        edges, counts = ref.psi_edges, ref.psi_counts
    else:
        edges = quantile_edges(ref.values, settings.psi_bins)
        counts = bin_counts(ref.values, edges)
    # Values near the float limits overflow the distances: they come out None, not as warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        ks_statistic, ks_p_value, w1 = ks_wasserstein(ref.values, cur)
        tests = {
            "ks": ks_p_value,
            "wasserstein": w1 / max(ref.std, MIN_STD) if math.isfinite(ref.std) else math.nan,
            "psi": psi(counts, bin_counts(cur, edges)),
        }
    score = _finite(tests[method])
    return FeatureDrift(
        **common,
        score=score,
        drifted=feature_verdict(method, score, threshold),
        ks_statistic=_finite(ks_statistic),
        ks_p_value=_finite(ks_p_value),
        wasserstein=_finite(tests["wasserstein"]),
        psi=_finite(tests["psi"]),
    )


def _categorical_feature(
    name: str, ref: CategoricalReference, column: Column, settings: DriftSettings
) -> FeatureDrift:
    counts = category_counts(column)
    rows, seen = len(column), sum(counts.values())
    categories = list(ref.counts) + [c for c in counts if c not in ref.counts]
    expected = np.array([ref.counts.get(c, 0) for c in categories], dtype=np.float64)
    actual = np.array([counts.get(c, 0) for c in categories], dtype=np.float64)
    method, threshold = settings.categorical_method, settings.categorical_threshold
    common: dict[str, Any] = {
        "name": name,
        "kind": "categorical",
        "method": method,
        "threshold": threshold,
        "reference_count": int(expected.sum()),
        "current_count": seen,
        "missing_share": (rows - seen) / rows if rows else 0.0,
        "chart": category_chart(categories, expected, actual),
    }
    if not (expected.sum() and seen):
        return FeatureDrift(**common, score=None, drifted=False)
    chi2_statistic, chi2_p_value = chi2_homogeneity(expected, actual)
    tests = {
        "chi2": chi2_p_value,
        "jensenshannon": jensenshannon(expected, actual),
        "psi": psi(expected, actual),
    }
    score = _finite(tests[method])
    return FeatureDrift(
        **common,
        score=score,
        drifted=feature_verdict(method, score, threshold),
        psi=_finite(tests["psi"]),
        chi2_statistic=_finite(chi2_statistic),
        chi2_p_value=_finite(chi2_p_value),
        jensenshannon=_finite(tests["jensenshannon"]),
    )


# --- numbers ----------------------------------------------------------------------------------


def ks_wasserstein(reference: Floats, current: Floats) -> tuple[float, float, float]:
    """scipy.stats.ks_2samp's statistic and p-value (two-sided, method "auto") and
    scipy.stats.wasserstein_distance, of two sorted, non-empty samples of finite values.

    One merge gives both: the two CDFs are compared after each distinct value; the KS statistic
    is their largest gap, W1 the area between them. Up to KS_EXACT_MAX values a side, the exact
    p-value is scipy's own call (which also rounds the statistic to its lattice).
    """
    n, m = reference.size, current.size
    both = np.concatenate((reference, current))
    order = np.argsort(both, kind="stable")  # two sorted runs: timsort merges them in O(n + m)
    merged = np.take(both, order)
    whole = np.int32 if n + m < 2**31 else np.int64  # (an int64 cumsum of bools is 10x slower)
    seen_reference = np.cumsum(order < n, dtype=whole)
    # F_ref - F_cur after each merged value, computed as scipy does (seen / size), in place
    seen_current = np.arange(1, n + m + 1, dtype=whole)
    np.subtract(seen_current, seen_reference, out=seen_current)
    cdf_gap = np.divide(seen_reference, n)
    cdf_gap -= np.divide(seen_current, m, out=both)
    cdf_gap = cdf_gap[:-1]
    steps = np.diff(merged)
    # Only after the last of equal values are both CDFs whole (scipy's searchsorted "right").
    at_steps = cdf_gap if steps.all() else cdf_gap[steps > 0]
    # not np.dot: OpenBLAS wakes its threads for it, 20x slower at this size
    w1 = float(np.multiply(np.abs(cdf_gap, out=merged[:-1]), steps, out=steps).sum())
    if max(n, m) <= KS_EXACT_MAX:
        with warnings.catch_warnings():
            # scipy falls back to the asymptotic p-value, as ks_2samp() does by default
            warnings.filterwarnings("ignore", "ks_2samp: Exact calculation", RuntimeWarning)
            exact = _scipy_stats().ks_2samp(reference, current)
        return float(exact.statistic), float(exact.pvalue), w1
    d = max(float(at_steps.max(initial=0.0)), float(-at_steps.min(initial=0.0)))
    larger, smaller = max(n, m), min(n, m)
    return d, kstwo_sf(d, float(np.round(larger * smaller / (larger + smaller)))), w1


# scipy's smirnov() answers 0 below this log-probability, and approximates above this n.
_MINLOG = -7.08396418532264106224e2
_SMIRNOV_MAX_N = 1_000_000


def kstwo_sf(d: float, n: float) -> float:
    """scipy.stats.kstwo.sf(d, n): scipy's own value, except in the one branch where scipy sums
    Smirnov's series term by term in double-double arithmetic, 75 ms at n = 50 000 (moderately
    drifted columns of large windows land there). That branch, 2 * smirnov(n, d) for
    2.2 <= n d^2 < 370 and n > 140, is summed here in logs, vectorized: within 1e-11.
    """
    t = n * d
    if n > 140 and 1.0 < t < n - 1 and d < 0.5 and 2.2 <= t * d < 370.0 and n <= _SMIRNOV_MAX_N:
        if -2 * n * d * d < _MINLOG:
            return 0.0
        return min(max(2.0 * _smirnov_sf(int(n), d), 0.0), 1.0)
    return float(_scipy_stats().kstwo.sf(d, n))


def _smirnov_sf(n: int, x: float) -> float:
    """One-sided Smirnov P(D+_n >= x) by the Birnbaum-Tingey sum, as scipy.special.smirnov,
    for 1 < n x < n - 1: x * sum over v <= n(1-x) of C(n,v) (1-x-v/n)^(n-v) (x+v/n)^(v-1)."""
    gammaln = _scipy_special().gammaln
    nx = n * x
    last = n - math.floor(nx) - 1  # below n(1-x): the term at a whole n(1-x) is 0
    v = np.arange(last + 1, dtype=np.float64)
    log_terms = (
        gammaln(n + 1.0)
        - gammaln(v + 1.0)
        - gammaln(n - v + 1.0)
        + (n - v) * np.log(((n - v) - nx) / n)
        + (v - 1) * np.log((nx + v) / n)
    )
    return float(x * np.exp(log_terms).sum())


def quantile_edges(values: Floats, bins: int) -> Floats:
    """The inner edges of `bins` equal-frequency bins of sorted values: np.quantile (linear)
    at 1/bins ... (bins-1)/bins, read off the sorted array instead of partitioning it again."""
    if not values.size:
        return np.zeros(0)
    virtual = (values.size - 1) * np.linspace(0, 1, bins + 1)[1:-1]
    below = np.floor(virtual)
    low = np.minimum(below, values.size - 1).astype(np.intp)
    high = np.minimum(below + 1, values.size - 1).astype(np.intp)
    t = virtual - below
    a, b = values[low], values[high]
    with np.errstate(over="ignore", invalid="ignore"):  # values near the float limits
        gap = b - a
        # numpy's lerp: from the nearer end, so the edges stay monotonic
        edges: Floats = np.where(t >= 0.5, b - gap * (1 - t), a + gap * t)
    return edges


def bin_counts(values: Floats, inner_edges: Floats) -> npt.NDArray[np.int64]:
    """How many sorted values fall in each bin: bin i holds edges[i-1] <= x < edges[i] (as
    np.bincount(np.searchsorted(edges, x, side="right"))), the last bin everything above."""
    cuts = np.searchsorted(values, inner_edges, side="left")
    return np.diff(np.concatenate(([0], cuts, [values.size]))).astype(np.int64)


def numeric_chart(reference: Floats, current: Floats) -> dict[str, Any]:
    sides = [side for side in (reference, current) if side.size]
    if not sides:
        return {"edges": [], "reference": [], "current": []}
    low, high = min(s[0] for s in sides), max(s[-1] for s in sides)
    with np.errstate(over="ignore", invalid="ignore"):
        edges = np.linspace(low, high, CHART_BINS + 1) if high > low else np.array([low, high])
    if not np.isfinite(edges).all():  # a range wider than the largest float
        return {"edges": [], "reference": [], "current": []}
    return {
        "edges": [float(e) for e in edges],
        "reference": _shares(bin_counts(reference, edges[1:-1])),
        "current": _shares(bin_counts(current, edges[1:-1])),
    }


# --- counts: categories, and the PSI of numbers' bins ------------------------------------------


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """The population stability index of two counts over the same bins (shares floored)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    e = np.maximum(e / e.sum(), PSI_FLOOR)
    a = np.maximum(a / a.sum(), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def chi2_homogeneity(expected: Floats, actual: Floats) -> tuple[float, float]:
    """scipy.stats.chi2_contingency([expected, actual], correction=False): the two samples
    come from one distribution over the categories. Every category must occur on a side."""
    table = np.vstack((expected, actual))
    if table.shape[1] < 2:
        return 0.0, 1.0
    frequencies = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - frequencies) ** 2 / frequencies))
    return statistic, float(_scipy_stats().chi2.sf(statistic, table.shape[1] - 1))


def jensenshannon(expected: Floats, actual: Floats) -> float:
    """scipy.spatial.distance.jensenshannon (natural log) of two counts' frequencies."""
    p, q = expected / expected.sum(), actual / actual.sum()
    middle = (p + q) / 2.0
    rel_entr = _scipy_special().rel_entr
    divergence = np.sum(rel_entr(p, middle)) + np.sum(rel_entr(q, middle))
    return float(np.sqrt(divergence / 2.0))


def category_chart(categories: list[str], expected: Floats, actual: Floats) -> dict[str, Any]:
    r = expected / expected.sum() if expected.sum() else expected
    c = actual / actual.sum() if actual.sum() else actual
    order = sorted(range(len(categories)), key=lambda i: (-(r[i] + c[i]), categories[i]))
    top, rest = order[:CHART_CATEGORIES], order[CHART_CATEGORIES:]
    chart: dict[str, list[Any]] = {
        "categories": [categories[i] for i in top],
        "reference": [round(float(r[i]), 6) for i in top],
        "current": [round(float(c[i]), 6) for i in top],
    }
    if rest:
        chart["categories"].append(OTHER)
        chart["reference"].append(round(float(r[rest].sum()), 6))
        chart["current"].append(round(float(c[rest].sum()), 6))
    return chart


# --- columns in ---------------------------------------------------------------------------------


def as_column(values: Any) -> Column:
    """A column as numpy (numbers and booleans: numpy arrays, pandas' numpy-backed columns,
    without a copy) or Arrow (the rest: text, lists with None, pandas' Arrow-backed and
    nullable columns). Values of mixed types that Arrow refuses stay numpy objects."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise InvalidInput(f"a column must be one-dimensional, got shape {values.shape}")
        return values
    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        return np.asarray(values)
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return np.asarray(values, dtype=object)


def kind_of(name: str, column: Column) -> Kind:
    if isinstance(column, np.ndarray):
        if column.dtype.kind in "iuf":
            return "numeric"
        if column.dtype.kind in "bOUS":
            return "categorical"
        type_name = str(column.dtype)
    else:
        t = column.type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            return "numeric"
        if (
            pa.types.is_boolean(t)
            or pa.types.is_dictionary(t)
            or pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_null(t)
        ):
            return "categorical"
        type_name = str(t)
    raise InvalidInput(
        f"column {name!r} holds {type_name}, neither numbers nor categories: "
        "leave it out or give its kind"
    )


def floats(column: Column) -> Floats:
    """A column as float64, NaN for nulls; text is parsed value by value (NaN if not a number)."""
    if isinstance(column, np.ndarray):
        if column.dtype.kind in "biuf":
            return column.astype(np.float64, copy=False)
        try:
            column = pa.array(column, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return np.array([_parse_float(v) for v in column.tolist()], dtype=np.float64)
    t = column.type
    if pa.types.is_dictionary(t):
        column, t = pc.cast(column, t.value_type), t.value_type
    if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_duration(t):
        column, t = pc.cast(column, pa.int64()), pa.int64()
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        cast = pc.cast(column, pa.float64())
        if isinstance(cast, pa.ChunkedArray):
            return np.asarray(cast.to_numpy(), dtype=np.float64)
        return np.asarray(cast.to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.array([_parse_float(v) for v in column.to_pylist()], dtype=np.float64)


def finite_sorted(numbers: Floats) -> Floats:
    finite = np.isfinite(numbers)
    return np.sort(numbers if finite.all() else numbers[finite])


def category_counts(column: Column) -> dict[str, int]:
    """How often each label (see `label`) occurs, missing values left out; Arrow counts."""
    if isinstance(column, np.ndarray):
        try:
            column = pa.array(column, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            counts: dict[str, int] = {}
            for value in column.tolist():
                text = label(value)
                if text is not None:
                    counts[text] = counts.get(text, 0) + 1
            return counts
    tallies = pc.value_counts(column)
    counts = {}
    values = tallies.field("values").to_pylist()
    for value, count in zip(values, tallies.field("counts").to_pylist(), strict=True):
        text = label(value)
        if text is not None:
            counts[text] = counts.get(text, 0) + count
    return counts


def label(value: Any) -> str | None:
    """A category's text: booleans as "true"/"false", numbers as str() (whole floats as
    integers, so a class 1 predicted as 1.0 is still "1"); None for missing values (None, NaN,
    infinities)."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return None
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _parse_float(value: Any) -> float:
    if isinstance(value, bool | int | float | np.number):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


# --- numbers out ------------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _shares(counts: npt.NDArray[np.int64]) -> list[float]:
    total = counts.sum()
    shares: list[float] = np.round(counts / total if total else counts * 0.0, 6).tolist()
    return shares
