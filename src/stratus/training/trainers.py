"""The built-in trainer: fit a scikit-learn estimator (by import path) on a dataset version.

The runner pulls the dataset's files, and `train` reads them with pyarrow, picks the label
(the column tagged `label` unless named) and the features (every other column except those
tagged `id`, `pii` or `timestamp`, unless named), splits train/test reproducibly, fits,
scores on the test split and saves the fitted model as skops (a safe format: no pickle).
Text columns are one-hot encoded inside the saved pipeline, so the endpoint takes raw rows.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stratus.core.errors import InvalidInput

SKIPPED_TAGS = {"id", "pii", "timestamp"}
DATA_SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson")


@dataclass
class TrainResult:
    metrics: dict[str, float]
    params: dict[str, Any]
    features: list[str]
    label: str
    sample: Any = field(repr=False)  # a few training rows, for the model's signature


def is_text(column: Any) -> bool:
    """Whether a frame column holds text (object, `string` or pandas 3's `str`), to one-hot
    encode, rather than numbers or booleans."""
    import pandas as pd

    dtype = column.dtype
    return not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))


def load_estimator(path: str, params: dict[str, Any]) -> Any:
    module_name, _, attr = path.rpartition(".")
    if not module_name.startswith("sklearn.") and module_name.split(".")[0] not in (
        "xgboost",
        "lightgbm",
    ):
        raise InvalidInput(
            f"estimator {path!r}: the built-in trainer takes scikit-learn compatible estimators "
            "from sklearn, xgboost or lightgbm; run other code as a code job"
        )
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        raise InvalidInput(f"estimator {path!r} cannot be imported") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise InvalidInput(f"estimator {path!r} refuses its params: {exc}") from None


def read_frame(folder: Path) -> Any:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    tables = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in DATA_SUFFIXES):
        suffix = path.suffix.lower()
        if suffix == ".csv":
            tables.append(pa_csv.read_csv(path))
        elif suffix in (".parquet", ".pq"):
            tables.append(pq.read_table(path))
        else:
            tables.append(pa_json.read_json(path))
    if not tables:
        raise InvalidInput(f"the dataset in {folder} holds no data files")
    table = pa.concat_tables(tables, promote_options="permissive")
    frame: pd.DataFrame = table.to_pandas()
    return frame


def choose_label(columns: list[str], column_tags: dict[str, list[str]], label: str | None) -> str:
    """The label column: `label` if named, else the one column tagged `label`."""
    if label is None:
        tagged = [c for c, tags in column_tags.items() if "label" in tags]
        if len(tagged) != 1:
            raise InvalidInput(
                "name the label column (`label`): the dataset has "
                + ("no column tagged label" if not tagged else f"several: {', '.join(tagged)}")
            )
        label = tagged[0]
    if label not in columns:
        raise InvalidInput(f"label column {label!r} is not in the dataset")
    return label


def default_features(
    columns: list[str], label: str, column_tags: dict[str, list[str]]
) -> list[str]:
    """Every column but the label and those tagged `id`, `pii` or `timestamp`."""
    skipped = {c for c, tags in column_tags.items() if SKIPPED_TAGS & set(tags)}
    return [c for c in columns if c != label and c not in skipped]


def check_features(columns: list[str], features: list[str]) -> None:
    missing = [c for c in features if c not in columns]
    if missing:
        raise InvalidInput(f"feature columns not in the dataset: {', '.join(missing)}")
    if not features:
        raise InvalidInput("no feature columns are left to use")


def train(
    data_dir: Path,
    model_dir: Path,
    *,
    estimator: str,
    params: dict[str, Any],
    label: str | None,
    features: list[str] | None,
    column_tags: dict[str, list[str]],
    test_size: float,
    random_state: int,
) -> TrainResult:
    import skops.io
    from sklearn.base import is_classifier as sklearn_is_classifier
    from sklearn.compose import ColumnTransformer
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = read_frame(data_dir)
    label = choose_label(list(frame.columns), column_tags, label)
    if features is None:
        features = default_features(list(frame.columns), label, column_tags)
    check_features(list(frame.columns), features)
    frame = frame.dropna(subset=[label])
    x, y = frame[features], frame[label]
    text = [c for c in features if is_text(x[c])]
    model = load_estimator(estimator, params)
    if text:
        encode = ColumnTransformer(
            [("text", OneHotEncoder(handle_unknown="ignore"), text)], remainder="passthrough"
        )
        model = Pipeline([("encode", encode), ("model", model)])
    is_classifier = sklearn_is_classifier(model)
    stratify = y if is_classifier and y.value_counts().min() >= 2 else None
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=random_state, stratify=stratify
    )
    print(
        f"stratus: training {estimator} on {len(x_train)} rows, {len(features)} features; "
        f"testing on {len(x_test)} rows",
        flush=True,
    )
    model.fit(x_train, y_train)
    metrics = score(model, x_test, y_test, classifier=is_classifier)
    for name, value in metrics.items():
        print(f"stratus: {name} = {value:.6g}", flush=True)
    model_dir.mkdir(parents=True, exist_ok=True)
    skops.io.dump(model, model_dir / "model.skops")
    return TrainResult(
        metrics=metrics,
        params={"estimator": estimator, **params, "label": label, "test_size": test_size},
        features=features,
        label=label,
        sample=x_train.head(50),
    )


def score(model: Any, x: Any, y: Any, *, classifier: bool) -> dict[str, float]:
    """Test-split metrics: accuracy, F1 (macro) and ROC AUC (binary) for classifiers; R², MAE
    and RMSE for regressors."""
    binary = classifier and hasattr(model, "predict_proba") and len(set(y)) == 2
    probabilities = model.predict_proba(x) if binary else None
    return metrics_of(y, model.predict(x), probabilities, classifier=classifier)


def metrics_of(
    y: Any, predicted: Any, probabilities: Any | None, *, classifier: bool
) -> dict[str, float]:
    """`score`'s metrics from the labels, the predictions and, for ROC AUC, the class
    probabilities (rows × sorted classes; used when there are two classes). Non-finite values
    are left out."""
    from sklearn import metrics as m

    out: dict[str, float] = {}
    if classifier:
        out["accuracy"] = float(m.accuracy_score(y, predicted))
        out["f1"] = float(m.f1_score(y, predicted, average="macro"))
        binary = len(set(y)) == 2
        if binary and probabilities is not None and probabilities.shape[1:] == (2,):
            out["roc_auc"] = float(m.roc_auc_score(y, probabilities[:, 1]))
    else:
        out["r2"] = float(m.r2_score(y, predicted))
        out["mae"] = float(m.mean_absolute_error(y, predicted))
        out["rmse"] = float(math.sqrt(m.mean_squared_error(y, predicted)))
    return {k: v for k, v in out.items() if math.isfinite(v)}
