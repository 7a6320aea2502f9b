"""Drift statistics against scipy's own tests, the edge cases of live traffic, and the verdicts."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial import distance

from stratus.core.errors import InvalidInput
from stratus.monitoring.statistics import (
    DriftReport,
    DriftSettings,
    FeatureDrift,
    Reference,
    compute_drift,
    dataset_verdict,
    feature_verdict,
    kstwo_sf,
    quantile_edges,
)


def drift_of(reference: dict[str, Any], current: dict[str, Any], **kw: Any) -> DriftReport:
    kinds = kw.pop("kinds", None)
    return compute_drift(Reference.from_columns(reference, kinds=kinds), current, **kw)


def feature(report: DriftReport, name: str) -> FeatureDrift:
    return next(f for f in report.features if f.name == name)


def samples(n: int, m: int, law: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if law == "normal":
        return rng.standard_normal(n), rng.standard_normal(m)
    if law == "shifted":
        return rng.standard_normal(n), rng.standard_normal(m) * 1.05 + 0.04
    if law == "ties":  # few distinct values, shared by both sides
        return rng.integers(0, 6, n).astype(float), rng.integers(0, 7, m).astype(float)
    raise AssertionError(law)


# --- numbers against scipy ----------------------------------------------------------------------

SIZES = [
    (50, 70, "normal"),  # exact p-value
    (70, 70, "shifted"),  # exact, equal sizes
    (3000, 10_000, "ties"),  # exact at the largest size "auto" keeps exact
    (10_001, 10_001, "normal"),  # asymptotic from here on, equal sizes
    (10_001, 300, "shifted"),
    (12_000, 30_000, "ties"),
    (30_000, 20_000, "shifted"),  # p-value in the series branch scipy sums slowly
    (1, 20_000, "normal"),
]


@pytest.mark.parametrize(("n", "m", "law"), SIZES)
def test_ks_and_wasserstein_equal_scipy(n: int, m: int, law: str) -> None:
    ref, cur = samples(n, m, law)
    f = feature(drift_of({"x": ref}, {"x": cur}), "x")
    expected = stats.ks_2samp(ref, cur)
    assert f.ks_statistic == pytest.approx(float(expected.statistic), abs=1e-9)
    assert f.ks_p_value == pytest.approx(float(expected.pvalue), abs=1e-9)
    w1 = stats.wasserstein_distance(ref, cur)
    assert f.wasserstein == pytest.approx(w1 / max(float(np.std(ref)), 0.001), rel=1e-9)
    assert (f.reference_count, f.current_count, f.missing_share) == (n, m, 0.0)


def test_large_windows_do_not_call_ks_2samp(monkeypatch: pytest.MonkeyPatch) -> None:
    ref, cur = samples(20_000, 15_000, "shifted")
    expected = stats.ks_2samp(ref, cur)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("ks_2samp called for an asymptotic size")

    monkeypatch.setattr(stats, "ks_2samp", refuse)  # the module statistics imports lazily
    f = feature(drift_of({"x": ref}, {"x": cur}), "x")
    assert f.ks_p_value == pytest.approx(float(expected.pvalue), abs=1e-9)
    assert f.ks_statistic == pytest.approx(float(expected.statistic), abs=1e-9)


@pytest.mark.parametrize("n", [141, 400, 5_000, 50_000])
def test_kstwo_sf_equals_scipy_in_every_branch(n: int) -> None:
    # n d^2 from below the series branch (Pelz-Good, DMTW) through it (2.2 to 370) to beyond
    for nd2 in (0.05, 1.0, 2.2, 3.0, 6.0, 15.0, 40.0, 369.0, 400.0):
        d = math.sqrt(nd2 / n)
        assert kstwo_sf(d, float(n)) == pytest.approx(float(stats.kstwo.sf(d, n)), abs=1e-9)
    for d in (0.5 / n, 1.0 / n, 0.6, 1.0, 40 / n):  # special cases at both ends; a whole n d
        assert kstwo_sf(d, float(n)) == pytest.approx(float(stats.kstwo.sf(d, n)), abs=1e-9)


@pytest.mark.parametrize("size", [1, 2, 7, 100, 1001])
def test_quantile_edges_are_numpys(size: int) -> None:
    values = np.sort(np.random.default_rng(size).standard_normal(size))
    for bins in (2, 10, 13):
        expected = np.quantile(values, np.linspace(0, 1, bins + 1))[1:-1]
        np.testing.assert_array_equal(quantile_edges(values, bins), expected)


def anchor_psi(ref: np.ndarray, cur: np.ndarray, bins: int) -> float:
    """PSI as ../shared/bench/drift_anchor.py's own_ks_psi_chi2 computes it."""
    inner = np.quantile(np.sort(ref), np.linspace(0, 1, bins + 1))[1:-1]
    er = np.bincount(np.searchsorted(inner, ref, side="right"), minlength=bins) / ref.size
    ec = np.bincount(np.searchsorted(inner, cur, side="right"), minlength=bins) / cur.size
    er, ec = np.clip(er, 1e-4, None), np.clip(ec, 1e-4, None)
    return float(np.sum((ec - er) * np.log(ec / er)))


@pytest.mark.parametrize("law", ["shifted", "ties"])
def test_numeric_psi_over_reference_quantile_bins(law: str) -> None:
    ref, cur = samples(4000, 3000, law)
    reference = Reference.from_columns({"x": ref})
    for bins in (10, 5):  # 5: not the Reference's own bins, computed on the way
        f = feature(compute_drift(reference, {"x": cur}, DriftSettings(psi_bins=bins)), "x")
        assert f.psi == pytest.approx(anchor_psi(ref, cur, bins), abs=1e-12)


# --- categories against scipy -------------------------------------------------------------------


def test_categorical_tests_equal_scipy_with_a_category_only_in_current() -> None:
    rng = np.random.default_rng(3)
    ref = rng.choice(["a", "b", "c"], size=900, p=[0.5, 0.3, 0.2])
    cur = rng.choice(["a", "b", "c", "new"], size=700, p=[0.4, 0.3, 0.2, 0.1])
    f = feature(drift_of({"c": ref}, {"c": cur}), "c")
    counts_r = np.array([np.sum(ref == k) for k in ("a", "b", "c", "new")], dtype=float)
    counts_c = np.array([np.sum(cur == k) for k in ("a", "b", "c", "new")], dtype=float)
    chi2 = stats.chi2_contingency(np.vstack((counts_r, counts_c)), correction=False)
    assert f.chi2_statistic == pytest.approx(float(chi2.statistic), abs=1e-9)
    assert f.chi2_p_value == pytest.approx(float(chi2.pvalue), abs=1e-9)
    js = distance.jensenshannon(counts_r / counts_r.sum(), counts_c / counts_c.sum())
    assert f.jensenshannon == pytest.approx(float(js), abs=1e-9)
    r = np.maximum(counts_r / counts_r.sum(), 1e-4)
    c = np.maximum(counts_c / counts_c.sum(), 1e-4)
    assert f.psi == pytest.approx(float(np.sum((c - r) * np.log(c / r))), abs=1e-12)
    assert f.score == f.jensenshannon and f.drifted == (f.jensenshannon >= 0.1)
    assert "new" in f.chart["categories"]


def test_two_categories_chi2_has_no_yates_correction() -> None:
    ref = ["a"] * 60 + ["b"] * 40
    cur = ["a"] * 45 + ["b"] * 55
    f = feature(drift_of({"c": ref}, {"c": cur}), "c")
    expected = stats.chi2_contingency([[60, 40], [45, 55]], correction=False)
    assert f.chi2_statistic == pytest.approx(float(expected.statistic), abs=1e-9)
    assert f.chi2_p_value == pytest.approx(float(expected.pvalue), abs=1e-9)


def test_one_category_on_both_sides_is_no_drift() -> None:
    f = feature(drift_of({"c": ["a"] * 5}, {"c": ["a"] * 3}), "c")
    assert (f.chi2_statistic, f.chi2_p_value, f.jensenshannon, f.drifted) == (0.0, 1.0, 0.0, False)


def test_prediction_of_int_classes_compares_as_text() -> None:
    reference = Reference.from_columns(
        {"prediction": np.array([0, 1, 1, 2, 2, 2])}, kinds={"prediction": "categorical"}
    )
    assert reference.kinds == {"prediction": "categorical"}
    as_ints = compute_drift(reference, {"prediction": pa.array([2, 2, 1, 1, 1, 0])})
    as_text = compute_drift(reference, {"prediction": ["2", "2", "1", "1", "1", "0"]})
    for report in (as_ints, as_text):
        f = feature(report, "prediction")
        assert f.kind == "categorical" and f.current_count == 6
        assert sorted(f.chart["categories"]) == ["0", "1", "2"]
        expected = distance.jensenshannon([1, 2, 3], [1, 3, 2])
        assert f.jensenshannon == pytest.approx(float(expected), abs=1e-12)


def test_booleans_are_true_and_false() -> None:
    report = drift_of({"b": np.array([True, False, True])}, {"b": ["true", "true", None]})
    f = feature(report, "b")
    assert f.kind == "categorical" and f.jensenshannon is not None
    assert sorted(f.chart["categories"]) == ["false", "true"]
    assert f.missing_share == pytest.approx(1 / 3)


def test_more_than_twenty_categories_chart_the_rest_as_other() -> None:
    ref = [f"k{i:02d}" for i in range(30) for _ in range(30 - i)]
    f = feature(drift_of({"c": ref}, {"c": ref}), "c")
    assert len(f.chart["categories"]) == 21 and f.chart["categories"][-1] == "(other)"
    assert f.chart["categories"][0] == "k00"
    assert sum(f.chart["reference"]) == pytest.approx(1.0, abs=1e-5)


# --- live traffic's edge cases ------------------------------------------------------------------


def test_nan_inf_and_nulls_count_as_missing() -> None:
    ref, cur = samples(500, 400, "shifted")
    dirty = cur.astype(object)
    dirty[:3] = [math.nan, math.inf, None]
    f = feature(drift_of({"x": ref}, {"x": list(dirty)}), "x")
    assert f.current_count == 397 and f.missing_share == pytest.approx(3 / 400)
    expected = stats.ks_2samp(ref, cur[3:])
    assert f.ks_p_value == pytest.approx(float(expected.pvalue), abs=1e-9)


def test_empty_and_all_null_current_have_no_score() -> None:
    reference = Reference.from_columns({"x": np.arange(10.0), "c": ["a", "b"] * 5})
    for current, missing in (
        ({"x": np.array([]), "c": []}, 0.0),
        ({"x": [None, None], "c": [None, None]}, 1.0),
        ({"x": np.array([np.nan, -np.inf]), "c": pa.array([None, None], pa.string())}, 1.0),
    ):
        report = compute_drift(reference, current)
        for f in report.features:
            assert (f.score, f.drifted, f.current_count) == (None, False, 0)
            assert f.missing_share == missing
        assert (report.drifted, report.share, report.drifted_features) == (False, 0.0, 0)


def test_all_null_reference_has_no_score() -> None:
    report = drift_of({"x": [None, None, None]}, {"x": [1.0, 2.0]}, kinds={"x": "numeric"})
    assert feature(report, "x").score is None


def test_constant_reference_norms_by_the_floor() -> None:
    ref = np.full(200, 3.0)
    cur = np.r_[np.full(150, 3.0), np.full(50, 3.5)]
    f = feature(drift_of({"x": ref}, {"x": cur}), "x")
    w1 = stats.wasserstein_distance(ref, cur)
    assert f.wasserstein == pytest.approx(w1 / 0.001, rel=1e-9)
    assert f.ks_statistic == pytest.approx(0.25, abs=1e-12) and f.drifted
    assert f.chart["edges"][0] == 3.0 and f.chart["edges"][-1] == 3.5


def test_constant_on_both_sides_is_no_drift() -> None:
    f = feature(drift_of({"x": np.full(20, 7.0)}, {"x": np.full(9, 7.0)}), "x")
    assert (f.wasserstein, f.ks_statistic, f.ks_p_value, f.drifted) == (0.0, 0.0, 1.0, False)
    assert f.chart["edges"] == [7.0, 7.0] and f.chart["current"] == [1.0]


def test_values_near_the_float_limits_give_no_score_not_warnings() -> None:
    ref, cur = np.array([-1e308, 1e308, 0.0]), np.array([0.0, 1.7e308])
    report = drift_of({"x": ref}, {"x": cur})  # warnings would fail the test (pytest config)
    f = feature(report, "x")
    assert f.score is None and f.wasserstein is None and f.drifted is False
    assert f.ks_statistic == pytest.approx(float(stats.ks_2samp(ref, cur).statistic))
    assert f.chart["edges"] == []
    assert (
        DriftReport.from_json(json.loads(json.dumps(report.as_json(), allow_nan=False))) == report
    )


def test_columns_missing_from_current_are_skipped_and_unknown_ones_refused() -> None:
    reference = Reference.from_columns({"x": np.arange(5.0), "y": np.arange(5.0)})
    report = compute_drift(reference, {"y": np.arange(3.0)})
    assert [f.name for f in report.features] == ["y"] and report.current_rows == 3
    with pytest.raises(InvalidInput):
        compute_drift(reference, {"y": np.arange(3.0)}, columns=["z"])


def test_arrow_tables_and_lists_on_either_side() -> None:
    table = pa.table(
        {
            "n": pa.array([1.0, 2.0, None, 4.0]),
            "i": pa.array([1, 2, 3, 4]),
            "s": pa.array(["a", "b", "a", None]).dictionary_encode(),
        }
    )
    reference = Reference.from_table(table)
    assert reference.kinds == {"n": "numeric", "i": "numeric", "s": "categorical"}
    assert reference.rows == 4
    report = compute_drift(reference, table)
    assert report.current_rows == 4 and all(f.score is not None for f in report.features)
    assert feature(report, "n").missing_share == 0.25
    assert all(not f.drifted for f in report.features)
    as_lists = compute_drift(reference, {"n": [1.0, 2.0, 4.0], "i": [1, 2, 3, 4], "s": ["a"]})
    assert feature(as_lists, "s").current_count == 1


def test_pandas_frames_are_columns_too() -> None:
    pd = pytest.importorskip("pandas")
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", None]})
    cur = pd.DataFrame({"x": [1.5, 2.5, np.nan, 4.5], "c": ["b", "b", "a", "a"]})
    report = drift_of(ref, cur)
    assert [f.kind for f in report.features] == ["numeric", "categorical"]
    assert feature(report, "x").missing_share == 0.25
    assert feature(report, "c").reference_count == 3


def test_kinds_are_checked() -> None:
    with pytest.raises(InvalidInput):
        Reference.from_columns({"t": pa.array([1, 2], pa.timestamp("s"))})
    with pytest.raises(InvalidInput):
        Reference.from_columns({"x": [1.0]}, kinds={"y": "numeric"})
    with pytest.raises(InvalidInput):
        Reference.from_columns({"x": [1.0]}, kinds={"x": "ordinal"})
    timestamps = Reference.from_columns(
        {"t": pa.array([1, 2], pa.timestamp("s"))}, kinds={"t": "numeric"}
    )
    assert timestamps.kinds == {"t": "numeric"}


# --- verdicts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "score", "threshold", "drifted"),
    [
        ("ks", 0.049, 0.05, True),
        ("ks", 0.05, 0.05, False),
        ("chi2", 0.001, 0.05, True),
        ("chi2", 0.2, 0.05, False),
        ("wasserstein", 0.1, 0.1, True),
        ("wasserstein", 0.0999, 0.1, False),
        ("jensenshannon", 0.12, 0.1, True),
        ("jensenshannon", 0.05, 0.1, False),
        ("psi", 0.25, 0.2, True),
        ("psi", 0.1, 0.2, False),
        ("ks", None, 0.05, False),
        ("wasserstein", None, 0.1, False),
    ],
)
def test_feature_verdict(method: str, score: float | None, threshold: float, drifted: bool) -> None:
    assert feature_verdict(method, score, threshold) is drifted


@pytest.mark.parametrize(
    ("settings", "kind", "field"),
    [
        (DriftSettings(numeric_method="ks", numeric_threshold=0.05), "numeric", "ks_p_value"),
        (DriftSettings(numeric_method="psi", numeric_threshold=0.05), "numeric", "psi"),
        (DriftSettings(), "numeric", "wasserstein"),
        (
            DriftSettings(categorical_method="chi2", categorical_threshold=0.05),
            "cat",
            "chi2_p_value",
        ),
        (DriftSettings(categorical_method="psi", categorical_threshold=0.1), "cat", "psi"),
        (DriftSettings(), "cat", "jensenshannon"),
    ],
)
def test_each_method_scores_and_decides(settings: DriftSettings, kind: str, field: str) -> None:
    rng = np.random.default_rng(11)
    if kind == "numeric":
        ref, same, moved = rng.normal(0, 1, 3000), rng.normal(0, 1, 3000), rng.normal(0.5, 1, 3000)
    else:
        ref = rng.choice(["a", "b", "c"], 3000, p=[0.6, 0.3, 0.1])
        same = rng.choice(["a", "b", "c"], 3000, p=[0.6, 0.3, 0.1])
        moved = rng.choice(["a", "b", "c"], 3000, p=[0.2, 0.3, 0.5])
    reference = Reference.from_columns({"v": ref})
    for current, drifted in ((same, False), (moved, True)):
        f = feature(compute_drift(reference, {"v": current}, settings), "v")
        assert f.method == (
            settings.numeric_method if kind == "numeric" else settings.categorical_method
        )
        assert f.score == getattr(f, field)
        assert f.drifted is drifted


def scored(drifted: bool, score: float | None = 0.5) -> FeatureDrift:
    return FeatureDrift("f", "numeric", "wasserstein", score, 0.1, drifted, 1, 1, 0.0)


@pytest.mark.parametrize(
    ("features", "share", "expected"),
    [
        ([scored(True), scored(True), scored(False), scored(False)], 0.5, (2, 0.5, True)),
        ([scored(True), scored(True), scored(False), scored(False)], 0.51, (2, 0.5, False)),
        (
            [scored(True), scored(False), scored(False, None), scored(False, None)],
            0.5,
            (1, 0.5, True),
        ),
        ([scored(False, None)], 0.0, (0, 0.0, False)),
        ([], 0.0, (0, 0.0, False)),
        ([scored(False)], 0.0, (0, 0.0, True)),
    ],
)
def test_dataset_verdict_at_the_share_threshold(
    features: list[FeatureDrift], share: float, expected: tuple[int, float, bool]
) -> None:
    assert dataset_verdict(features, share) == expected


def test_the_report_carries_the_dataset_verdict() -> None:
    rng = np.random.default_rng(2)
    ref = {"a": rng.normal(0, 1, 2000), "b": rng.normal(0, 1, 2000)}
    cur = {"a": rng.normal(1, 1, 2000), "b": rng.normal(0, 1, 2000)}
    half = compute_drift(Reference.from_columns(ref), cur, DriftSettings(drift_share=0.5))
    assert (half.drifted_features, half.share, half.drifted) == (1, 0.5, True)
    more = compute_drift(Reference.from_columns(ref), cur, DriftSettings(drift_share=0.6))
    assert more.drifted is False and (half.reference_rows, half.current_rows) == (2000, 2000)


@pytest.mark.parametrize(
    "changes",
    [
        {"numeric_method": "mean"},
        {"categorical_method": "ks"},
        {"numeric_threshold": -1.0},
        {"categorical_threshold": math.nan},
        {"drift_share": 1.5},
        {"psi_bins": 1},
    ],
)
def test_settings_are_checked(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        DriftSettings(**changes)


# --- JSON ---------------------------------------------------------------------------------------


def test_json_round_trip_without_nan() -> None:
    ref, cur = samples(300, 200, "shifted")
    report = drift_of(
        {"x": ref, "c": ["a", "b", "c"] * 100, "empty": np.arange(5.0)},
        {"x": cur, "c": ["a", "d"] * 100, "empty": [math.nan] * 200},
        settings=DriftSettings(numeric_method="ks", numeric_threshold=0.01, drift_share=0.3),
    )
    body = report.as_json()
    text = json.dumps(body, allow_nan=False)
    assert DriftReport.from_json(json.loads(text)) == report
    body["reference"] = "iris:3"  # what the monitor adds beside the report
    body["features"][0]["a_later_field"] = 1
    assert DriftReport.from_json(body) == report
    assert feature(report, "empty").score is None
