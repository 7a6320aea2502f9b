"""The seam between the registry and model libraries: a `Flavor` loads an artifact folder into a
`LoadedModel` that predicts on a `Batch`.

Flavors only look at file names until `load`; libraries are imported inside `load`, so the
registry server needs none of them. Failures inside a library or the user's code become
`ModelLoadError` / `PredictionError`: a one-line `detail` for the caller (no traceback, no file
paths) and the original traceback in `trace`, for the replica's or the job's log only.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from stratus.core.errors import InvalidInput, PermissionDenied, StratusError

if TYPE_CHECKING:
    from typing import TypeAlias

    import numpy as np

    from stratus.registry.batches import Batch
    from stratus.registry.signatures import Signature, TensorSpec

    Predictions: TypeAlias = np.ndarray | dict[str, np.ndarray]

#: Suffixes of files that run code when they are read (pickle and its relatives).
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".cloudpickle", ".dill", ".pt", ".pth")


class ModelLoadError(InvalidInput):
    """A model version's files could not be loaded by its flavor's library or code."""

    code = "model-load-error"
    title = "The model could not be loaded"

    def __init__(self, detail: str, *, trace: str = "", **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.trace = trace  # the library's traceback: for logs, never in the problem body


class PredictionError(InvalidInput):
    """The model (its library or the user's code) failed on a batch."""

    code = "prediction-error"
    title = "The model failed to predict"

    def __init__(self, detail: str, *, trace: str = "", **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.trace = trace  # the library's traceback: for logs, never in the problem body


class LoadedModel(Protocol):
    """One model version in memory, ready to predict. Calls may come from several threads."""

    @property
    def supports_batching(self) -> bool:
        """Whether one call on n rows costs about as much as a call on one row.

        The replica runtime merges concurrent requests into one batch only when this is True.
        """
        ...

    def predict(self, batch: Batch) -> Predictions:
        """Predict one output row per input row.

        Args:
            batch: rows validated against the version's signature.

        Returns:
            An array with one entry per row, or a dict of such arrays for several outputs.

        Raises:
            PredictionError: the library or the user's code failed; its `trace` holds the
                traceback (for logs; the `detail` a caller sees has none).
            InvalidInput: the batch does not suit the model (e.g. strings for a numeric model).
        """
        ...


@runtime_checkable
class GivesProbabilities(Protocol):
    """An optional ability of a `LoadedModel`: a classifier's class probabilities.

    Serving answers them when a request asks (`method: predict_proba`); evaluation jobs use
    them for ROC AUC. A model of a flavor that has the ability may still give none (a
    regressor): its `classes` is then None and `no_probabilities` says why.
    """

    @property
    def classes(self) -> Sequence[Any] | None:
        """The class labels, in the order of `predict_proba`'s columns; None when this model
        gives no probabilities."""
        ...

    @property
    def no_probabilities(self) -> str:
        """Why this model gives no probabilities, completing "the model gives no class
        probabilities: …" (e.g. "it is a regressor (objective reg:squarederror)")."""
        ...

    def predict_proba(self, batch: Batch) -> np.ndarray | None:
        """One row of class probabilities per input row, columns in `classes` order.

        Args:
            batch: rows validated against the version's signature.

        Returns:
            A 2-D array (rows × classes), or None when this model gives no probabilities.

        Raises:
            PredictionError: the library or the user's code failed.
        """
        ...


def probabilities_of(model: LoadedModel) -> tuple[GivesProbabilities, Sequence[Any]] | str:
    """The model and its classes when it gives class probabilities; else why it does not."""
    if not isinstance(model, GivesProbabilities):
        return "its flavor does not give probabilities (only labels or values)"
    classes = model.classes
    if classes is None:
        return model.no_probabilities
    return model, classes


def model_outputs(model: LoadedModel) -> list[TensorSpec]:
    """What a loaded model says it returns: a classifier's label and probabilities (with its
    classes), else nothing (no flavor knows more without predicting)."""
    from stratus.registry.signatures import classifier_outputs

    found = probabilities_of(model)
    if isinstance(found, str):
        return []
    return classifier_outputs(found[1])


class Flavor(Protocol):
    """How to recognise, vet and load one kind of model artifact."""

    @property
    def name(self) -> str:
        """The flavor's registry name, e.g. "sklearn"."""
        ...

    def detect(self, files: Sequence[str]) -> bool:
        """Whether the artifact looks like this flavor, judged from file names alone.

        Args:
            files: the artifact's files, as relative POSIX paths.
        """
        ...

    def unsafe_files(self, files: Sequence[str]) -> list[str]:
        """The files that `load` would read in a way that can run code (pickles, Python).

        Loading them needs the version to be trusted. Judged from file names alone.

        Args:
            files: the artifact's files, as relative POSIX paths.
        """
        ...

    def load(self, path: Path, *, trusted: bool, signature: Signature | None) -> LoadedModel:
        """Load the artifact in the folder `path`.

        Args:
            path: the folder holding the artifact's files.
            trusted: whether an owner marked the version trusted (allows pickles and code).
            signature: the version's signature, when it has one; flavors use it to map inputs.

        Returns:
            The model, ready to predict.

        Raises:
            PermissionDenied: loading would run code from an untrusted version; the message
                names the file.
            ModelLoadError: the files are missing, broken or rejected by the library.
        """
        ...


# --- helpers shared by the flavors ------------------------------------------------------------


def is_pickle(file: str) -> bool:
    return file.lower().endswith(PICKLE_SUFFIXES)


def list_files(path: Path) -> list[str]:
    """The artifact's files under `path`, as sorted relative POSIX paths."""
    if not path.is_dir():
        raise ModelLoadError(f"the model's folder {str(path)!r} does not exist")
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())


def pick_file(files: Sequence[str], suffixes: Sequence[str], flavor: str) -> str:
    """The one model file among `files`; with several, the one named `model.*` at the top."""
    found = [f for f in files if f.lower().endswith(tuple(suffixes))]
    if len(found) > 1:
        top = [
            f for f in found if PurePosixPath(f).name.lower().startswith("model.") and "/" not in f
        ]
        found = top if len(top) == 1 else found
    if not found:
        raise ModelLoadError(f"the {flavor} flavor found no {' or '.join(suffixes)} file")
    if len(found) > 1:
        raise ModelLoadError(
            f"the {flavor} flavor found several model files ({', '.join(found)}); "
            "keep one, or name the one to load model.<suffix> at the top of the artifact"
        )
    return found[0]


def feature_order(
    features: Sequence[str] | None, signature: Signature | None, flavor: str
) -> list[str] | None:
    """The columns to feed a model that knows its feature names, or None for signature order.

    Raises:
        ModelLoadError: the model needs a feature the signature does not have.
    """
    if features is None or signature is None or tuple(features) == signature.input_names:
        return None
    missing = [f for f in features if f not in signature.input_set]
    if missing:
        raise ModelLoadError(
            f"the {flavor} model needs input {missing[0]!r}, which the signature does not have "
            f"(inputs: {', '.join(signature.input_names)})"
        )
    return list(features)


def require_trust(files: Sequence[str], trusted: bool, why: str) -> None:
    """Raise PermissionDenied naming `files` unless the version is trusted.

    `why` completes "…: 'model.pkl'", e.g. "pickles run code when they are read".
    """
    if files and not trusted:
        names = ", ".join(repr(f) for f in files)
        raise PermissionDenied(
            f"{why}: {names}; an owner of the project must mark the model version trusted "
            "before it can be loaded",
            files=list(files),
        )


def user_traceback(exc: BaseException) -> str:
    """The exception's traceback, without the Stratus frame that caught it."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    return "".join(traceback.format_exception(type(exc), exc, tb))


@contextmanager
def loading(flavor: str, file: str) -> Iterator[None]:
    """Turn any failure of a library or user code while loading into a ModelLoadError.

    SystemExit counts as a failure too: user code that calls `sys.exit()` or parses the command
    line at import must not stop the replica.
    """
    try:
        yield
    except StratusError:
        raise
    except (Exception, SystemExit) as exc:
        raise ModelLoadError(
            f"the {flavor} flavor could not load {file!r}: {describe(exc)}",
            trace=user_traceback(exc),
        ) from exc


def prediction_failed(exc: BaseException) -> PredictionError:
    """The error to raise when a model's predict raised `exc` (callers use `raise ... from`)."""
    return PredictionError(
        f"the model failed to predict: {describe(exc)}", trace=user_traceback(exc)
    )


# an absolute or home- or dot-relative path (/a/b, C:\\x, ~/y, ./z), or a source file with or
# without its folder and line (onnxruntime/core/gemm.h:14, model.py)
_PATH = re.compile(
    r"(?:\b[A-Za-z]:\\|(?<![\w.])~?/|(?<![\w.])\.\.?/)[^\s'\"),;]*"
    r"|\b[\w./\\-]*\.(?:py|pyx|so|c|cc|cpp|h|hpp|dll|dylib)(?::\d+)?\b"
)
_DETAIL_LIMIT = 500


def describe(exc: BaseException) -> str:
    """A library's or user code's exception as one line a caller may read: its type and
    message, without a traceback, file paths or source locations, and at most ~500 characters.
    (The whole traceback goes to the log, through `trace`.)"""
    message = str(exc)
    lines = message.splitlines()
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        message = lines[-1] if lines else ""  # a traceback inside the message: its last line
    message = _PATH.sub("<path>", message)
    message = " ".join(message.split())
    if len(message) > _DETAIL_LIMIT:
        message = message[: _DETAIL_LIMIT - 1] + "…"
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def as_predictions(result: Any, n_rows: int) -> Predictions:
    """Bring what user code or MLflow returned into the shape of `LoadedModel.predict`.

    Accepts arrays, lists, pandas Series/DataFrames and dicts of those; checks the row count.
    """
    if hasattr(result, "to_numpy") and hasattr(result, "columns"):  # a DataFrame
        columns = list(result.columns)
        if len(columns) == 1:
            result = result[columns[0]]
        else:
            result = {str(name): result[name] for name in columns}
    if isinstance(result, dict):
        outputs = {str(k): _as_array(v) for k, v in result.items()}
        lengths = {len(v) for v in outputs.values()}
        predictions: Predictions = outputs
    else:
        predictions = _as_array(result)
        lengths = {len(predictions)}
    if lengths != {n_rows}:
        got = " or ".join(str(n) for n in sorted(lengths)) or "no"
        raise PredictionError(f"the model returned {got} predictions for {n_rows} rows")
    return predictions


def _as_array(value: Any) -> np.ndarray:
    import numpy as np

    array = value.to_numpy() if hasattr(value, "to_numpy") else np.asarray(value)
    if array.ndim == 0:
        raise PredictionError(
            f"the model returned a single {type(value).__name__}, not one per row"
        )
    return array
