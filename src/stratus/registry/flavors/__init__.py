"""Model flavors: which library loads a version's files, chosen by name or detected from them.

Detection looks at file names only, first match wins, in this order:

    mlflow     an `MLmodel` file at the top of the artifact (an MLflow model folder)
    python     a `predictor.py` at the top, defining `class Predictor` with `load(self, path)`
               and `predict(self, batch)`, or module-level `predict(batch)` and `load()`;
               sibling modules import relatively (`from . import x`)
    onnx       a `*.onnx` file
    xgboost    a `*.ubj`, `*.xgb`, `*.xgb.json` or `*.xgboost.json` file (XGBoost's own formats)
    lightgbm   a `*.lgb`, `*.lgbm` or `*.lgb.txt` file (LightGBM's text model)
    sklearn    a `*.skops` file, else a pickle (`*.joblib`, `*.pkl`, `*.pickle`; trusted only)

Each flavor's module imports its library only in `load`, so `get_flavor` and `detect_flavor` are
cheap and need none of the libraries installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from functools import cache

from stratus.core.errors import InvalidInput
from stratus.registry.flavors.base import (
    Flavor,
    LoadedModel,
    ModelLoadError,
    PredictionError,
)

__all__ = [
    "FLAVORS",
    "Flavor",
    "LoadedModel",
    "ModelLoadError",
    "PredictionError",
    "detect_flavor",
    "get_flavor",
]


def _lazy(module: str, cls: str) -> Callable[[], Flavor]:
    def factory() -> Flavor:
        flavor: Flavor = getattr(importlib.import_module(module), cls)()
        return flavor

    factory.__qualname__ = f"{module}:{cls}"
    return factory


#: name → factory, in order of detection precedence.
FLAVORS: dict[str, Callable[[], Flavor]] = {
    "mlflow": _lazy("stratus.registry.flavors.mlflow", "MlflowFlavor"),
    "python": _lazy("stratus.registry.flavors.python", "PythonFlavor"),
    "onnx": _lazy("stratus.registry.flavors.onnx", "OnnxFlavor"),
    "xgboost": _lazy("stratus.registry.flavors.xgboost", "XGBoostFlavor"),
    "lightgbm": _lazy("stratus.registry.flavors.lightgbm", "LightGBMFlavor"),
    "sklearn": _lazy("stratus.registry.flavors.sklearn", "SklearnFlavor"),
}


@cache
def get_flavor(name: str) -> Flavor:
    """The flavor called `name`.

    Raises:
        InvalidInput: no flavor has that name (the message lists the known ones).
    """
    factory = FLAVORS.get(name)
    if factory is None:
        raise InvalidInput(f"unknown flavor {name!r}; known flavors: {', '.join(FLAVORS)}")
    return factory()


def detect_flavor(files: Sequence[str]) -> str:
    """The name of the first flavor, in precedence order, that recognises `files`.

    Raises:
        InvalidInput: no flavor recognises the files (the message lists the known ones).
    """
    for name in FLAVORS:
        if get_flavor(name).detect(files):
            return name
    raise InvalidInput(
        "no flavor recognises the model's files; name one explicitly, or add a file one of "
        f"them recognises (known flavors: {', '.join(FLAVORS)}; see stratus.registry.flavors)"
    )
