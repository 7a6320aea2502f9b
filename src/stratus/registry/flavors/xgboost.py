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
    supports_batching = True

    def __init__(self, booster: Any, signature: Signature | None) -> None:
        self._predict = booster.inplace_predict
        self._features = feature_order(booster.feature_names, signature, "xgboost")

    def predict(self, batch: Batch) -> Predictions:
        try:
            if self._features is not None:
                batch = batch.select(self._features)
            return self._predict(batch.matrix(), validate_features=False)  # type: ignore[no-any-return]
        except StratusError:
            raise
        except Exception as exc:
            raise prediction_failed(exc) from exc
