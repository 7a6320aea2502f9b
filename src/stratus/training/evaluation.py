"""An evaluation job's work: metrics of registered model versions on a dataset version.

The runner pulls the dataset and each pinned model version. `load_version` loads a version's
folder through its registry flavor, as a serving replica does (flavor, signature, trusted flag);
`evaluate` picks the features, feeds the rows in signature-checked batches, decides whether the
task is classification or regression, and scores like the built-in trainer (`metrics_of`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratus.core.errors import InvalidInput
from stratus.registry.batches import Batch
from stratus.registry.flavors import LoadedModel, detect_flavor, get_flavor
from stratus.registry.flavors.base import GivesProbabilities, list_files
from stratus.registry.signatures import Signature, infer_signature
from stratus.training.trainers import check_features, default_features, metrics_of

#: A numeric label with more distinct values than this is a regression target.
MAX_CLASSES = 50
#: Rows per call to the model.
BATCH_ROWS = 10_000


@dataclass
class Evaluation:
    metrics: dict[str, float]
    rows: int
    classification: bool
    features: list[str]


def load_version(
    folder: Path, *, flavor: str | None, trusted: bool, signature: dict[str, Any] | None
) -> LoadedModel:
    """Load a pulled model version with its flavor (detected from its files when unnamed).

    Raises:
        PermissionDenied: the version would run code and is not trusted.
        ModelLoadError: the flavor's library could not load the files.
    """
    parsed = Signature.model_validate(signature) if signature else None
    name = flavor or detect_flavor(list_files(folder))
    return get_flavor(name).load(folder, trusted=trusted, signature=parsed)


def signature_columns(signature: Signature, job: str) -> list[str]:
    """The columns a signature takes, for a `job` (an evaluation, a batch prediction) that
    feeds the model a dataset's columns.

    Raises:
        InvalidInput: the signature takes a tensor per row, not columns.
    """
    if not signature.is_tabular:
        raise InvalidInput(
            "the model takes a tensor per row (its signature's inputs are not columns); "
            f"{job} feeds it a dataset's columns"
        )
    return list(signature.input_names)


def evaluation_features(
    columns: list[str],
    label: str,
    column_tags: dict[str, list[str]],
    signature: Signature | None,
    features: list[str] | None,
) -> list[str]:
    """The columns to feed the model: `features` if given, else the signature's inputs, else
    every column but the label and those tagged id/pii/timestamp (as the trainer chose)."""
    if features is None and signature is not None:
        features = signature_columns(signature, "an evaluation")
    if features is None:
        features = default_features(columns, label, column_tags)
    check_features(columns, features)
    if label in features:
        raise InvalidInput(f"the label column {label!r} cannot be a feature too")
    return features


def is_classification(labels: Any, predictions: Any) -> bool:
    """Whether to score as a classifier: the label is bool or text, or holds whole numbers with
    at most MAX_CLASSES distinct values — unless the model predicts fractions (a regressor)."""
    import numpy as np
    import pandas as pd

    y = pd.Series(labels)
    if pd.api.types.is_bool_dtype(y.dtype) or not pd.api.types.is_numeric_dtype(y.dtype):
        return True
    predicted = np.asarray(predictions)
    if predicted.dtype.kind == "f" and not _whole(predicted):
        return False
    values = y.dropna().to_numpy()
    if values.dtype.kind == "f" and not _whole(values):
        return False
    return bool(y.nunique(dropna=True) <= MAX_CLASSES)


def _whole(values: Any) -> bool:
    import numpy as np

    finite = values[np.isfinite(values)]
    return len(finite) == len(values) and bool(np.all(finite == np.trunc(finite)))


def evaluate(
    model: LoadedModel,
    frame: Any,
    *,
    label: str,
    features: list[str],
    signature: Signature | None,
) -> Evaluation:
    """Score `model` on the rows of `frame` that have a label.

    Raises:
        InvalidInput: no row has a label, the columns do not fit the signature, or the model
            returns several outputs.
        PredictionError: the model failed on a batch.
    """
    import numpy as np

    frame = frame.dropna(subset=[label])
    if len(frame) == 0:
        raise InvalidInput(f"no row of the dataset has a value in the label column {label!r}")
    x, y = frame[features], frame[label].to_numpy()
    signature = signature or infer_signature(x)
    batches = [
        Batch.from_columns({c: part[c].to_numpy() for c in features}, signature)
        for part in (x.iloc[i : i + BATCH_ROWS] for i in range(0, len(x), BATCH_ROWS))
    ]
    predicted = np.concatenate([_single_output(model.predict(batch)) for batch in batches])
    classification = is_classification(y, predicted)
    probabilities = None
    if classification and len(set(y.tolist())) == 2 and isinstance(model, GivesProbabilities):
        parts = [model.predict_proba(batch) for batch in batches]
        if all(p is not None for p in parts):
            probabilities = np.concatenate([np.asarray(p) for p in parts])
    metrics = metrics_of(y, predicted, probabilities, classifier=classification)
    return Evaluation(metrics, len(frame), classification, features)


def _single_output(predictions: Any) -> Any:
    if isinstance(predictions, dict):
        if len(predictions) != 1:
            raise InvalidInput(
                f"the model returns several outputs ({', '.join(predictions)}); an evaluation "
                "scores models with one"
            )
        (predictions,) = predictions.values()
    return predictions
