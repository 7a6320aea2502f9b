"""The MLflow flavor: an MLflow model folder (an `MLmodel` file at the top), loaded as a pyfunc.

MLflow loads a model by importing the loader module its `MLmodel` names and, for most flavors,
unpickling files, so an MLflow model always needs the version to be trusted. MLflow itself is
imported only here, on load (`pip install 'stratus[mlflow]'`). Tabular batches are passed as a
pandas DataFrame, tensors as numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratus.core.errors import StratusError
from stratus.registry.flavors.base import (
    ModelLoadError,
    as_predictions,
    is_pickle,
    list_files,
    loading,
    prediction_failed,
    require_trust,
)

if TYPE_CHECKING:
    from stratus.registry.batches import Batch
    from stratus.registry.flavors.base import Predictions
    from stratus.registry.signatures import Signature


class MlflowFlavor:
    name = "mlflow"

    def detect(self, files: Sequence[str]) -> bool:
        return "MLmodel" in files

    def unsafe_files(self, files: Sequence[str]) -> list[str]:
        if not self.detect(files):
            return []
        return ["MLmodel", *(f for f in files if f.endswith(".py") or is_pickle(f))]

    def load(self, path: Path, *, trusted: bool, signature: Signature | None) -> MlflowModel:
        files = list_files(path)
        if not self.detect(files):
            raise ModelLoadError("the mlflow flavor found no MLmodel file at the artifact's top")
        require_trust(
            self.unsafe_files(files),
            trusted,
            "MLflow runs the loader the MLmodel names, which may unpickle files",
        )
        try:
            import mlflow.pyfunc
        except ImportError as exc:
            raise ModelLoadError(
                f"the mlflow flavor needs MLflow where the model is loaded ({exc}); "
                "install it with: pip install 'stratus[mlflow]'"
            ) from exc
        with loading(self.name, "MLmodel"):
            model = mlflow.pyfunc.load_model(str(path))
        return MlflowModel(model)


class MlflowModel:
    """A pyfunc model. It supports batching unless its MLmodel metadata says
    `supports_batching: false` (pass `metadata={"supports_batching": False}` when saving)."""

    def __init__(self, model: Any) -> None:
        self._predict = model.predict
        metadata = getattr(model.metadata, "metadata", None) or {}
        self._supports_batching = bool(metadata.get("supports_batching", True))

    @property
    def supports_batching(self) -> bool:
        return self._supports_batching

    def predict(self, batch: Batch) -> Predictions:
        try:
            columns = batch.columns
            if all(column.ndim == 1 for column in columns.values()):
                data: Any = batch.frame()
            elif len(columns) == 1:
                (data,) = columns.values()
            else:
                data = dict(columns)
            result = self._predict(data)
        except StratusError:
            raise
        except Exception as exc:
            raise prediction_failed(exc) from exc
        return as_predictions(result, batch.n_rows)
