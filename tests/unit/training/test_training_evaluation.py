"""Evaluation jobs' pure parts: classification or regression, which columns feed the model,
the label, the metrics, and scoring a model loaded through its registry flavor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stratus.core.errors import InvalidInput, PermissionDenied
from stratus.registry.signatures import Signature, TensorSpec
from stratus.training import evaluation
from stratus.training.evaluation import (
    evaluate,
    evaluation_features,
    is_classification,
    load_version,
)
from stratus.training.trainers import choose_label, metrics_of

pd = pytest.importorskip("pandas")
skops_io = pytest.importorskip("skops.io")

MANY = list(range(100))


@pytest.mark.parametrize(
    ("labels", "predictions", "expected"),
    [
        ([0, 1, 1, 0], [0, 1, 0, 0], True),  # integer classes
        ([True, False, True], [True, True, False], True),  # bool
        (["yes", "no", "no"], ["no", "no", "yes"], True),  # text
        (["yes", "no"], [0.3, 0.7], True),  # text is never a regression target
        ([0.0, 1.0, 1.0], [0, 1, 1], True),  # whole floats: classes read from a CSV with NaN
        ([0, 1, 1, 0], [0.2, 0.9, 0.7, 0.1], False),  # fractional predictions: a regressor
        ([0.5, 1.25, 3.0], [0.4, 1.3, 2.9], False),  # fractional labels
        (MANY, MANY, False),  # more than MAX_CLASSES whole numbers: a regression target
        (MANY[:50], MANY[:50], True),  # exactly MAX_CLASSES
    ],
)
def test_classification_is_read_from_the_label_and_the_predictions(
    labels: list[Any], predictions: list[Any], expected: bool
) -> None:
    assert is_classification(np.asarray(labels), np.asarray(predictions)) is expected


COLUMNS = ["patient_id", "email", "age", "income", "seen_at", "churned"]
TAGS = {
    "patient_id": ["id"],
    "email": ["pii"],
    "seen_at": ["timestamp"],
    "churned": ["label"],
}


def signature_of(*names: str) -> Signature:
    return Signature(inputs=[TensorSpec(name=n, dtype="float64") for n in names])


@pytest.mark.parametrize(
    ("signature", "features", "expected"),
    [
        (None, None, ["age", "income"]),  # every column but the label and id/pii/timestamp
        (signature_of("income", "age"), None, ["income", "age"]),  # the signature's, in order
        (signature_of("income", "age"), ["age"], ["age"]),  # named features win
        (None, ["seen_at", "age"], ["seen_at", "age"]),  # even tagged ones, when named
    ],
)
def test_the_features_come_from_the_request_the_signature_or_the_tags(
    signature: Signature | None, features: list[str] | None, expected: list[str]
) -> None:
    assert evaluation_features(COLUMNS, "churned", TAGS, signature, features) == expected


@pytest.mark.parametrize(
    ("signature", "features", "error"),
    [
        (signature_of("age", "tenure"), None, "not in the dataset: tenure"),
        (None, ["age", "height"], "not in the dataset: height"),
        (None, ["age", "churned"], "label column 'churned' cannot be a feature"),
        (None, [], "no feature columns"),
        (
            Signature(inputs=[TensorSpec(name="x", dtype="float64", shape=[-1, 4])]),
            None,
            "tensor per row",
        ),
    ],
)
def test_features_that_cannot_be_fed_are_refused(
    signature: Signature | None, features: list[str] | None, error: str
) -> None:
    with pytest.raises(InvalidInput, match=error):
        evaluation_features(COLUMNS, "churned", TAGS, signature, features)


def test_the_label_is_named_or_tagged() -> None:
    assert choose_label(COLUMNS, TAGS, None) == "churned"
    assert choose_label(COLUMNS, TAGS, "income") == "income"
    with pytest.raises(InvalidInput, match="no column tagged label"):
        choose_label(COLUMNS, {}, None)
    with pytest.raises(InvalidInput, match="several: a, b"):
        choose_label(COLUMNS, {"a": ["label"], "b": ["label"]}, None)
    with pytest.raises(InvalidInput, match="'height' is not in the dataset"):
        choose_label(COLUMNS, TAGS, "height")


def test_metrics_are_the_trainers() -> None:
    y = np.array([0, 1, 1, 0])
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    both = metrics_of(y, np.array([0, 1, 0, 0]), probabilities, classifier=True)
    assert both == {"accuracy": 0.75, "f1": pytest.approx(0.7333, abs=1e-4), "roc_auc": 1.0}
    assert "roc_auc" not in metrics_of(y, y, None, classifier=True)
    three = np.array([0, 1, 2])
    assert "roc_auc" not in metrics_of(three, three, np.eye(3), classifier=True)  # binary only
    truth, predicted = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0])
    regression = metrics_of(truth, predicted, None, classifier=False)
    assert set(regression) == {"r2", "mae", "rmse"}
    assert regression["mae"] == pytest.approx(1 / 3)


# --- scoring a model loaded through its flavor ------------------------------------------------


@pytest.fixture(scope="module")
def cancer() -> Any:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.insert(0, "patient_id", [f"p{i}" for i in range(len(frame))])
    return frame


@pytest.fixture(scope="module")
def features(cancer: Any) -> list[str]:
    return [c for c in cancer.columns if c not in ("patient_id", "target")]


def saved(model: Any, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    skops_io.dump(model, folder / "model.skops")
    return folder


def test_a_classifier_is_scored_with_roc_auc_from_its_probabilities(
    cancer: Any, features: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn import metrics as m
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(max_iter=5000).fit(cancer[features], cancer["target"])
    model = load_version(saved(fitted, tmp_path / "lr"), flavor=None, trusted=False,
                         signature=None)  # fmt: skip
    monkeypatch.setattr(evaluation, "BATCH_ROWS", 100)  # several batches, same answer
    done = evaluate(model, cancer, label="target", features=features, signature=None)
    assert done.classification and done.rows == len(cancer)
    expected = m.roc_auc_score(cancer["target"], fitted.predict_proba(cancer[features])[:, 1])
    assert done.metrics["roc_auc"] == pytest.approx(expected)
    assert done.metrics["accuracy"] == pytest.approx(
        fitted.score(cancer[features], cancer["target"])
    )
    assert set(done.metrics) == {"accuracy", "f1", "roc_auc"}


def test_a_model_without_probabilities_gets_no_roc_auc(
    cancer: Any, features: list[str], tmp_path: Path
) -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    fitted = make_pipeline(StandardScaler(), LinearSVC()).fit(
        cancer[features].to_numpy(), cancer["target"]
    )
    signature = Signature(inputs=[TensorSpec(name=f, dtype="float64") for f in features])
    model = load_version(saved(fitted, tmp_path / "svc"), flavor="sklearn", trusted=False,
                         signature=signature.model_dump())  # fmt: skip
    done = evaluate(model, cancer, label="target", features=features, signature=signature)
    assert set(done.metrics) == {"accuracy", "f1"} and done.metrics["accuracy"] > 0.9


def test_a_regressor_is_scored_with_r2_mae_rmse(
    cancer: Any, features: list[str], tmp_path: Path
) -> None:
    from sklearn.linear_model import Ridge

    frame = cancer.assign(size=cancer["mean radius"] * 2.0 + 0.1)
    inputs = [f for f in features if f != "mean radius"]
    fitted = Ridge().fit(frame[inputs], frame["size"])
    model = load_version(saved(fitted, tmp_path / "ridge"), flavor=None, trusted=False,
                         signature=None)  # fmt: skip
    done = evaluate(model, frame, label="size", features=inputs, signature=None)
    assert not done.classification
    assert set(done.metrics) == {"r2", "mae", "rmse"} and done.metrics["r2"] > 0.9


def test_rows_without_a_label_are_left_out_and_none_left_is_an_error(
    cancer: Any, features: list[str], tmp_path: Path
) -> None:
    from sklearn.tree import DecisionTreeClassifier

    fitted = DecisionTreeClassifier(max_depth=2).fit(cancer[features], cancer["target"])
    model = load_version(saved(fitted, tmp_path / "tree"), flavor=None, trusted=False,
                         signature=None)  # fmt: skip
    partial = cancer.astype({"target": float})
    partial.loc[:99, "target"] = np.nan
    done = evaluate(model, partial, label="target", features=features, signature=None)
    assert done.rows == len(cancer) - 100 and done.classification
    with pytest.raises(InvalidInput, match="no row of the dataset has a value"):
        evaluate(model, partial.assign(target=np.nan), label="target", features=features,
                 signature=None)  # fmt: skip


def test_an_untrusted_pickle_is_not_loaded(tmp_path: Path) -> None:
    import joblib
    from sklearn.dummy import DummyClassifier

    folder = tmp_path / "pickled"
    folder.mkdir()
    joblib.dump(DummyClassifier().fit([[0]], [0]), folder / "model.joblib")
    with pytest.raises(PermissionDenied, match="model.joblib"):
        load_version(folder, flavor="sklearn", trusted=False, signature=None)
    assert load_version(folder, flavor="sklearn", trusted=True, signature=None) is not None
