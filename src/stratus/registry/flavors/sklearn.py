"""The scikit-learn flavor: a `*.skops` file (safe by default), or a pickle when trusted.

skops refuses types it does not know; types from scikit-learn, numpy and scipy are trusted
automatically, anything else (a custom transformer, an xgboost estimator) needs the version to be
trusted. joblib and pickle files run code when read, so they always need trust.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratus.core.errors import StratusError
from stratus.registry.flavors.base import (
    PICKLE_SUFFIXES,
    ModelLoadError,
    feature_order,
    is_pickle,
    list_files,
    loading,
    pick_file,
    prediction_failed,
    require_trust,
)

if TYPE_CHECKING:
    import numpy as np

    from stratus.registry.batches import Batch
    from stratus.registry.flavors.base import Predictions
    from stratus.registry.signatures import Signature

#: Top-level packages whose types a skops file may hold without the version being trusted.
AUTO_TRUSTED_PACKAGES = frozenset({"sklearn", "numpy", "scipy"})


class SklearnFlavor:
    name = "sklearn"

    def detect(self, files: Sequence[str]) -> bool:
        return any(f.lower().endswith(".skops") or is_pickle(f) for f in files)

    def unsafe_files(self, files: Sequence[str]) -> list[str]:
        if any(f.lower().endswith(".skops") for f in files):
            return []  # skops is loaded in preference; its types are vetted at load time
        return [f for f in files if is_pickle(f)]  # never raises: the registry lists these

    def load(self, path: Path, *, trusted: bool, signature: Signature | None) -> SklearnModel:
        files = list_files(path)
        if any(f.lower().endswith(".skops") for f in files):
            file = pick_file(files, [".skops"], self.name)
            model = _load_skops(path / file, file, trusted)
        else:
            file = pick_file(files, PICKLE_SUFFIXES, self.name)
            require_trust([file], trusted, "pickles run code when they are read")
            with loading(self.name, file):
                import joblib

                model = joblib.load(path / file)
        if not callable(getattr(model, "predict", None)):
            raise ModelLoadError(f"{file!r} holds a {type(model).__name__}, which has no predict")
        return SklearnModel(model, signature)


def _load_skops(file_path: Path, file: str, trusted: bool) -> Any:
    with loading("sklearn", file):
        import skops.io

        untrusted = skops.io.get_untrusted_types(file=file_path)
        unknown = [t for t in untrusted if not _auto_trusted(t)]
        require_trust(
            [file] if unknown else [],
            trusted,
            "the skops file holds types or functions that are not plain scikit-learn, numpy "
            f"or scipy classes ({', '.join(unknown)})",
        )
        return skops.io.load(file_path, trusted=untrusted)


def _auto_trusted(name: str) -> bool:
    """Classes from scikit-learn, numpy and scipy, and numpy ufuncs (pure arithmetic), load
    without trust; any other function (e.g. `numpy.load` in a FunctionTransformer) does not."""
    if name.split(".", 1)[0] not in AUTO_TRUSTED_PACKAGES:
        return False
    found = _resolve(name)
    if isinstance(found, type):
        return True
    import numpy as np

    return isinstance(found, np.ufunc)


def _resolve(dotted: str) -> object | None:
    """The object a dotted name names, importing only its (trusted) package's modules."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                found = getattr(found, attribute)
        except AttributeError:
            return None
        return found
    return None


class SklearnModel:
    """A fitted estimator or pipeline; `predict` gets the batch's float64 matrix.

    With a string input in the signature the matrix holds Python objects instead. A model
    fitted on a DataFrame (it has `feature_names_in_`) gets a DataFrame with its columns in the
    model's order, which costs pandas on every call but keeps the names checked.
    """

    supports_batching = True

    def __init__(self, model: Any, signature: Signature | None) -> None:
        import numpy as np

        self._predict = model.predict
        self._predict_proba = getattr(model, "predict_proba", None)
        classes = getattr(model, "classes_", None)
        self.classes: list[Any] | None = None
        self.no_probabilities = _why_no_probabilities(model)
        if self._predict_proba is not None and classes is not None and np.ndim(classes) == 1:
            self.classes = list(classes)
        elif self._predict_proba is not None:
            self._predict_proba = None
            self.no_probabilities = f"{type(model).__name__} lists no classes (classes_)"
        strings = signature is not None and any(s.dtype == "string" for s in signature.inputs)
        self._dtype: type = object if strings else np.float64
        names = getattr(model, "feature_names_in_", None)
        self._frame = names is not None
        # None when the batch's columns already come in the model's order (or cannot be known)
        self._order = feature_order(
            None if names is None else [str(n) for n in names], signature, "sklearn"
        )

    def predict(self, batch: Batch) -> Predictions:
        try:
            return self._predict(self._inputs(batch))  # type: ignore[no-any-return]
        except StratusError:
            raise
        except Exception as exc:
            raise prediction_failed(exc) from exc

    def predict_proba(self, batch: Batch) -> np.ndarray | None:
        """Class probabilities (columns in the estimator's sorted `classes_`), or None for an
        estimator without `predict_proba` (a regressor, an SVC without probability=True: both
        scikit-learn and its pipelines hide the method then)."""
        if self._predict_proba is None:
            return None
        try:
            return self._predict_proba(self._inputs(batch))  # type: ignore[no-any-return]
        except StratusError:
            raise
        except Exception as exc:
            raise prediction_failed(exc) from exc

    def _inputs(self, batch: Batch) -> Any:
        if not self._frame:
            return batch.matrix(self._dtype)
        if self._order is not None:
            batch = batch.select(self._order)
        return batch.frame()


def _why_no_probabilities(model: Any) -> str:
    """Why an estimator gives no probabilities, naming it (a pipeline by its last step)."""
    estimator = getattr(model, "_final_estimator", model)
    name = type(estimator).__name__
    try:
        from sklearn.base import is_regressor

        if is_regressor(model):
            return f"it is a regressor ({name})"
    except Exception:  # an estimator that sklearn cannot classify: say what it lacks
        pass
    return f"{name} has no predict_proba"
