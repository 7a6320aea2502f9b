"""The LightGBM flavor: a Booster saved with `save_model` as LightGBM's text format.

The text format holds trees and parameters only, so it needs no trust. Files are recognised as
`*.lgb`, `*.lgbm` or `*.lgb.txt`. Predictions use the batch's float64 matrix, one thread per call.
"""

from __future__ import annotations

import re
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

SUFFIXES = (".lgb", ".lgbm", ".lgb.txt")
_DEFAULT_NAME = re.compile(r"Column_\d+")  # what LightGBM calls the columns of an unnamed matrix


class LightGBMFlavor:
    name = "lightgbm"

    def detect(self, files: Sequence[str]) -> bool:
        return any(f.lower().endswith(SUFFIXES) for f in files)

    def unsafe_files(self, files: Sequence[str]) -> list[str]:
        return []

    def load(self, path: Path, *, trusted: bool, signature: Signature | None) -> LightGBMModel:
        file = pick_file(list_files(path), SUFFIXES, self.name)
        with loading(self.name, file):
            import lightgbm

            booster = lightgbm.Booster(model_file=path / file)
        return LightGBMModel(booster, signature)


class LightGBMModel:
    """A Booster: `predict` answers what the booster's own predict gives (for `binary`, the
    probability of class 1; for `multiclass`, a row of probabilities), and `predict_proba` one
    column per class, classes 0..k-1, for the `binary`, `multiclass` and `multiclassova`
    objectives."""

    supports_batching = True

    def __init__(self, booster: Any, signature: Signature | None) -> None:
        self._predict = booster.predict
        names = booster.feature_name()
        named = not all(_DEFAULT_NAME.fullmatch(n) for n in names)
        self._features = feature_order(names if named else None, signature, "lightgbm")
        objective = str(booster.params.get("objective") or _objective_of(booster))
        self.objective = objective.split()[0] if objective.strip() else "unknown"
        n_classes = int(booster.num_model_per_iteration())
        self.classes: list[int] | None = None
        self.no_probabilities = f"it is not a classifier (objective {self.objective})"
        if self.objective == "binary":
            self.classes = [0, 1]
        elif self.objective in ("multiclass", "multiclassova", "softmax", "ova") and n_classes > 1:
            self.classes = list(range(n_classes))

    def predict_proba(self, batch: Batch) -> np.ndarray | None:
        if self.classes is None:
            return None
        import numpy as np

        out = np.asarray(self.predict(batch), dtype=np.float64)
        if out.ndim == 1:
            return np.column_stack((1.0 - out, out))
        return out

    def predict(self, batch: Batch) -> Predictions:
        try:
            if self._features is not None:
                batch = batch.select(self._features)
            return self._predict(batch.matrix(), num_threads=1)  # type: ignore[no-any-return]
        except StratusError:
            raise
        except Exception as exc:
            raise prediction_failed(exc) from exc


def _objective_of(booster: Any) -> str:
    """The objective a model file names (`objective=binary sigmoid:1`), when `params` has none."""
    for line in booster.model_to_string(num_iteration=1).splitlines():
        if line.startswith("objective="):
            return str(line.partition("=")[2])
        if line.startswith("Tree="):
            break
    return ""
