"""The XGBoost flavor: a Booster saved in XGBoost's own JSON or UBJSON format.

These formats hold trees and parameters only, so they need no trust. Files are recognised as
`*.ubj`, `*.xgb`, `*.xgb.json` or `*.xgboost.json` (a bare `*.json` could be anything). Predictions
use `inplace_predict` on the batch's float64 matrix, one thread per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratus.core.errors import StratusError
from stratus.registry.flavors.base import (
    feature_order,
    list_files,
    loading,
    pick_file,
    prediction_failed,
)

if TYPE_CHECKING:
    import numpy as np

    from stratus.registry.batches import Batch
    from stratus.registry.flavors.base import Predictions
    from stratus.registry.signatures import Signature

SUFFIXES = (".ubj", ".xgb", ".xgb.json", ".xgboost.json")


class XGBoostFlavor:
    name = "xgboost"

    def detect(self, files: Sequence[str]) -> bool:
        return any(f.lower().endswith(SUFFIXES) for f in files)

    def unsafe_files(self, files: Sequence[str]) -> list[str]:
        return []

    def load(self, path: Path, *, trusted: bool, signature: Signature | None) -> XGBoostModel:
        file = pick_file(list_files(path), SUFFIXES, self.name)
        with loading(self.name, file):
            import xgboost

            booster = xgboost.Booster(params={"nthread": 1})
            # From bytes, XGBoost tells JSON from UBJSON by content rather than by suffix.
            booster.load_model(bytearray((path / file).read_bytes()))
            booster.set_param({"nthread": 1})
        return XGBoostModel(booster, signature)


class XGBoostModel:
    """A Booster: `predict` answers what the booster's own predict gives (for binary:logistic,
    the probability of class 1; for multi:softprob, a row of probabilities), and
    `predict_proba` one column per class, classes 0..k-1, for the classification objectives
    whose output is a probability (binary:logistic, binary:logitraw, multi:softprob and
    multi:softmax)."""

    supports_batching = True

    def __init__(self, booster: Any, signature: Signature | None) -> None:
        self._predict = booster.inplace_predict
        self._features = feature_order(booster.feature_names, signature, "xgboost")
        self.objective, n_classes = _objective(booster)
        self.classes: list[int] | None = None
        self.no_probabilities = ""
        if self.objective in _BINARY:
            self.classes = [0, 1]
        elif self.objective in _MULTI and n_classes >= 2:
            self.classes = list(range(n_classes))
        elif self.objective.startswith(("binary:", "multi:")):
            self.no_probabilities = f"its objective {self.objective} gives no probabilities"
        else:
            self.no_probabilities = f"it is not a classifier (objective {self.objective})"

    def predict(self, batch: Batch) -> Predictions:
        try:
            if self._features is not None:
                batch = batch.select(self._features)
            return self._predict(batch.matrix(), validate_features=False)  # type: ignore[no-any-return]
        except StratusError:
            raise
        except Exception as exc:
            raise prediction_failed(exc) from exc

    def predict_proba(self, batch: Batch) -> np.ndarray | None:
        if self.classes is None:
            return None
        import numpy as np

        margin = self.objective in _MARGINS  # these answer raw scores or labels: take margins
        try:
            if self._features is not None:
                batch = batch.select(self._features)
            kind = "margin" if margin else "value"
            out = self._predict(batch.matrix(), validate_features=False, predict_type=kind)
        except StratusError:
            raise
        except Exception as exc:
            raise prediction_failed(exc) from exc
        out = np.asarray(out, dtype=np.float64)
        if len(self.classes) == 2 and out.ndim == 1:
            if margin:
                out = 1.0 / (1.0 + np.exp(-out))
            return np.column_stack((1.0 - out, out))
        if margin:  # softmax of the margins, row by row
            shifted = np.exp(out - out.max(axis=1, keepdims=True))
            out = shifted / shifted.sum(axis=1, keepdims=True)
        return out  # type: ignore[no-any-return]


_BINARY = frozenset({"binary:logistic", "binary:logitraw"})
_MULTI = frozenset({"multi:softprob", "multi:softmax"})
_MARGINS = frozenset({"binary:logitraw", "multi:softmax"})


def _objective(booster: Any) -> tuple[str, int]:
    """The booster's objective and its number of classes (0 when it says none)."""
    import json

    try:
        learner = json.loads(booster.save_config())["learner"]
        name = str(learner["objective"]["name"])
        n_classes = int(learner["learner_model_param"].get("num_class", 0))
    except (ValueError, KeyError, TypeError):
        return "unknown", 0
    return name, n_classes
