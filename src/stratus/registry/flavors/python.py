"""The python flavor: the user's own code, shipped in the artifact, in one of two styles.

The artifact holds a `predictor.py` at its top. Either it defines `class Predictor`: built
without arguments, then `load(self, path)` (optional) gets the artifact folder, and
`predict(self, batch)` answers. Or, with no such class, it defines module-level functions (the
style of `stratus functions`): `predict(batch)`, and optionally `load()`, called once when the
model loads, before the first request; a `load` that takes one argument gets the artifact
folder. Either `predict` gets a `stratus.registry.batches.Batch` (call `.matrix()` or `.frame()`)
and returns one prediction per row. `supports_batching = False` (on the class, or at the
module's top) keeps requests unmerged. Other modules in the artifact import relatively
(`from . import features`). Loading runs the code, so the version must be trusted; the user's
exceptions become ModelLoadError / PredictionError. `python_source.py` checks a file's source
for this contract without running it (the SDK does, before it uploads).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import itertools
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
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
from stratus.registry.flavors.python_source import CLASS_NAME, ENTRY_POINT, FUNCTION_NAME

if TYPE_CHECKING:
    from stratus.registry.batches import Batch
    from stratus.registry.flavors.base import Predictions
    from stratus.registry.signatures import Signature

_loads = itertools.count()


class PythonFlavor:
    name = "python"

    def detect(self, files: Sequence[str]) -> bool:
        return ENTRY_POINT in files

    def unsafe_files(self, files: Sequence[str]) -> list[str]:
        if not self.detect(files):
            return []
        return [f for f in files if f.endswith(".py") or is_pickle(f)]

    def load(self, path: Path, *, trusted: bool, signature: Signature | None) -> PythonModel:
        files = list_files(path)
        if not self.detect(files):
            raise ModelLoadError(f"the python flavor found no {ENTRY_POINT} at the artifact's top")
        require_trust(
            self.unsafe_files(files), trusted, "the model's Python code runs when it loads"
        )
        with loading(self.name, ENTRY_POINT):
            module = _import(path)
            cls = getattr(module, CLASS_NAME, None)
            if isinstance(cls, type):
                predictor = cls()
                if callable(getattr(predictor, "load", None)):
                    predictor.load(path)
                if not callable(getattr(predictor, "predict", None)):
                    raise ModelLoadError(f"{CLASS_NAME} in {ENTRY_POINT} has no predict method")
            elif callable(getattr(module, FUNCTION_NAME, None)):
                predictor = module
                if inspect.iscoroutinefunction(module.predict):
                    raise ModelLoadError(
                        f"{FUNCTION_NAME} in {ENTRY_POINT} is an async def; make it a plain def"
                    )
                load = getattr(module, "load", None)
                if callable(load) and _takes_an_argument(load):
                    load(path)
                elif callable(load):
                    load()
            else:
                raise ModelLoadError(
                    f"{ENTRY_POINT} defines no class {CLASS_NAME} and no function "
                    f"{FUNCTION_NAME}(batch)"
                )
        return PythonModel(predictor)


def _takes_an_argument(function: Any) -> bool:
    """Whether a module-level `load` wants the artifact folder: it has a positional parameter."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin or C function: call it as documented, bare
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(
        p.kind in positional or p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters
    )


def _import(path: Path) -> ModuleType:
    """Import predictor.py as a package rooted at the artifact folder, under a unique name."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"stratus_predictor_{digest}_{next(_loads)}"
    spec = importlib.util.spec_from_file_location(
        name, path / ENTRY_POINT, submodule_search_locations=[str(path)]
    )
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {ENTRY_POINT} from {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # relative imports and pickling find the package here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


class PythonModel:
    def __init__(self, predictor: Any) -> None:
        self._predict = predictor.predict
        self._supports_batching = bool(getattr(predictor, "supports_batching", True))

    @property
    def supports_batching(self) -> bool:
        return self._supports_batching

    def predict(self, batch: Batch) -> Predictions:
        try:
            result = self._predict(batch)
        except StratusError:
            raise
        except (Exception, SystemExit) as exc:
            raise prediction_failed(exc) from exc
        return as_predictions(result, batch.n_rows)
