"""How well predictions matched the ground truth: pure numpy functions, no I/O.

Classifiers get accuracy, precision, recall and F1 (of the positive class when there are two
classes, else macro-averaged over the classes seen) and ROC AUC (two classes: from a score
when the answer carried one, a probability say, else from the predicted labels). Regressors get
RMSE, MAE and R². The formulas are scikit-learn's, which the unit tests check against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

Task = Literal["classification", "regression"]
_MAX_CLASSES = 50


def infer_task(labels: Sequence[Any]) -> Task:
    """Classification for booleans, strings and few distinct integers; else regression."""
    values = [v for v in labels if v is not None]
    if not values:
        return "classification"
    if any(isinstance(v, (bool, str)) for v in values):
        return "classification"
    if all(isinstance(v, int) or (isinstance(v, float) and v.is_integer()) for v in values):
        return "classification" if len(set(values)) <= _MAX_CLASSES else "regression"
    return "regression"


def classification(
    truth: Sequence[Any],
    predicted: Sequence[Any],
    scores: Sequence[float] | None = None,
    positive: Any = None,
) -> dict[str, float | None]:
    """Accuracy, precision, recall, F1 and ROC AUC of predicted labels against the truth."""
    y = [_key(v) for v in truth]
    p = [_key(v) for v in predicted]
    n = len(y)
    if n == 0:
        return {}
    classes = sorted(set(y) | set(p), key=str)
    accuracy = sum(a == b for a, b in zip(y, p, strict=True)) / n
    out: dict[str, float | None] = {"accuracy": accuracy}
    if len(classes) <= 2:
        pos = _positive(classes, positive)
        precision, recall, f1 = _prf(y, p, pos)
        out.update(precision=precision, recall=recall, f1=f1)
        truth_bits = np.array([v == pos for v in y], dtype=bool)
        score = (
            np.asarray(scores, dtype=np.float64)
            if scores is not None
            else np.array([v == pos for v in p], dtype=np.float64)
        )
        out["roc_auc"] = roc_auc(truth_bits, score)
    else:
        per_class = [_prf(y, p, c) for c in sorted(set(y), key=str)]
        out["precision"] = float(np.mean([c[0] for c in per_class]))
        out["recall"] = float(np.mean([c[1] for c in per_class]))
        out["f1"] = float(np.mean([c[2] for c in per_class]))
        out["roc_auc"] = None
    return out


def regression(truth: Sequence[float], predicted: Sequence[float]) -> dict[str, float | None]:
    """RMSE, MAE and R² of numeric predictions."""
    y = np.asarray(truth, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if y.size == 0:
        return {}
    error = p - y
    rmse = float(np.sqrt(np.mean(error**2)))
    mae = float(np.mean(np.abs(error)))
    spread = float(np.sum((y - y.mean()) ** 2))
    r2 = None if spread == 0 else 1.0 - float(np.sum(error**2)) / spread
    return {"rmse": rmse, "mae": mae, "r2": r2}


def roc_auc(truth: np.ndarray, score: np.ndarray) -> float | None:
    """The area under the ROC curve (the Mann–Whitney statistic, ties counted half); None
    when only one class is present."""
    positives = int(truth.sum())
    negatives = truth.size - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(score.size, dtype=np.float64)
    sorted_scores = score[order]
    # average ranks over ties
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], score.size]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    rank_sum = float(ranks[truth].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def _prf(y: list[Any], p: list[Any], cls: Any) -> tuple[float, float, float]:
    tp = sum(a == cls and b == cls for a, b in zip(y, p, strict=True))
    fp = sum(a != cls and b == cls for a, b in zip(y, p, strict=True))
    fn = sum(a == cls and b != cls for a, b in zip(y, p, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _positive(classes: list[Any], positive: Any) -> Any:
    if positive is not None:
        return _key(positive)
    for candidate in (True, 1, "1", "true", "yes"):
        if candidate in classes:
            return candidate
    return classes[-1]


def _key(value: Any) -> Any:
    """Labels compare by value: 1, 1.0 and True are the same class; strings stay strings."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return int(value.lower() == "true")
    return value
