"""Performance metrics against scikit-learn's on random labels, scores and values."""

from __future__ import annotations

import numpy as np
import pytest

from stratus.monitoring import performance

metrics = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_classification_matches_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, 500)
    scores = np.clip(truth * 0.3 + rng.random(500) * 0.7, 0, 1).round(2)  # ties on purpose
    predicted = (scores > 0.5).astype(int)
    got = performance.classification(truth.tolist(), predicted.tolist(), scores.tolist())
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(truth, predicted))
    assert got["precision"] == pytest.approx(metrics.precision_score(truth, predicted))
    assert got["recall"] == pytest.approx(metrics.recall_score(truth, predicted))
    assert got["f1"] == pytest.approx(metrics.f1_score(truth, predicted))
    assert got["roc_auc"] == pytest.approx(metrics.roc_auc_score(truth, scores), abs=1e-12)


def test_without_scores_auc_comes_from_the_predicted_labels() -> None:
    truth = [0, 0, 1, 1, 1]
    predicted = [0, 1, 1, 1, 0]
    got = performance.classification(truth, predicted)
    assert got["roc_auc"] == pytest.approx(metrics.roc_auc_score(truth, predicted))


def test_multiclass_is_macro_averaged() -> None:
    truth = ["a", "b", "c", "a", "b", "c", "a"]
    predicted = ["a", "b", "b", "a", "c", "c", "b"]
    got = performance.classification(truth, predicted)
    assert got["precision"] == pytest.approx(
        metrics.precision_score(truth, predicted, average="macro")
    )
    assert got["recall"] == pytest.approx(metrics.recall_score(truth, predicted, average="macro"))
    assert got["f1"] == pytest.approx(metrics.f1_score(truth, predicted, average="macro"))
    assert got["roc_auc"] is None


def test_labels_compare_by_value_and_the_positive_class_can_be_named() -> None:
    got = performance.classification([True, False, "true", 1.0], [1, 0, 1, 1])
    assert got["accuracy"] == 1.0
    named = performance.classification(["no", "yes", "yes"], ["no", "yes", "no"], positive="yes")
    assert named["recall"] == pytest.approx(0.5)
    assert named["precision"] == pytest.approx(1.0)


def test_regression_matches_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    truth = rng.normal(size=200)
    predicted = truth + rng.normal(scale=0.3, size=200)
    got = performance.regression(truth.tolist(), predicted.tolist())
    assert got["rmse"] == pytest.approx(np.sqrt(metrics.mean_squared_error(truth, predicted)))
    assert got["mae"] == pytest.approx(metrics.mean_absolute_error(truth, predicted))
    assert got["r2"] == pytest.approx(metrics.r2_score(truth, predicted))


def test_the_task_is_inferred_from_the_labels() -> None:
    assert performance.infer_task([0, 1, 1]) == "classification"
    assert performance.infer_task(["a", "b"]) == "classification"
    assert performance.infer_task([0.5, 1.25]) == "regression"
    assert performance.infer_task(list(range(100))) == "regression"


def test_one_class_has_no_auc() -> None:
    assert performance.classification([1, 1], [1, 0])["roc_auc"] is None
    assert performance.classification([], []) == {}
