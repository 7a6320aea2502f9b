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
    supports_batching = True

    def __init__(self, booster: Any, signature: Signature | None) -> None:
        self._predict = booster.predict
        names = booster.feature_name()
        named = not all(_DEFAULT_NAME.fullmatch(n) for n in names)
        self._features = feature_order(names if named else None, signature, "lightgbm")

    def predict(self, batch: Batch) -> Predictions:
        try:
            if self._features is not None:
                batch = batch.select(self._features)
            return self._predict(batch.matrix(), num_threads=1)  # type: ignore[no-any-return]
        except StratusError:
            raise
        except Exception as exc:
            raise prediction_failed(exc) from exc
