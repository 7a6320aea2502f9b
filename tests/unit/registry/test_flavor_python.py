"""The python flavor: the user's Predictor class, run only when trusted, its errors kept."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from registry_samples import ArtifactMaker, Cancer, single

from stratus.core.errors import PermissionDenied
from stratus.registry.batches import Batch
from stratus.registry.flavors import ModelLoadError, PredictionError, detect_flavor, get_flavor
from stratus.registry.flavors.python_source import source_problem

PREDICTOR = """
from pathlib import Path

import numpy as np

from . import scoring


class Predictor:
    def load(self, path: Path) -> None:
        self.weights = np.load(path / "weights.npy", allow_pickle=False)
        self.mean, self.scale = np.load(path / "scaling.npy", allow_pickle=False)

    def predict(self, batch):
        if batch.n_rows == 13:
            raise RuntimeError("unlucky batch size")
        return scoring.classify((batch.matrix() - self.mean) / self.scale, self.weights)
"""

SCORING = """
import numpy as np


def classify(x, weights):
    return (x @ weights[1:] + weights[0] > 0).astype(np.int64)
"""


def write_predictor(folder: Path, predictor: str, **extra: str) -> Path:
    (folder / "predictor.py").write_text(textwrap.dedent(predictor))
    for name, text in extra.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


@pytest.fixture(scope="module")
def linear(lr_pipeline: Any) -> dict[str, np.ndarray]:
    scaler, logistic = lr_pipeline[0], lr_pipeline[1]
    return {
        "weights": np.concatenate([logistic.intercept_, logistic.coef_[0]]),
        "scaling": np.stack([scaler.mean_, scaler.scale_]),
    }


@pytest.fixture(scope="module")
def python_model(linear: dict[str, np.ndarray], artifact_dir: ArtifactMaker) -> Path:
    folder = write_predictor(artifact_dir("python"), PREDICTOR, **{"scoring.py": SCORING})
    np.save(folder / "weights.npy", linear["weights"])
    np.save(folder / "scaling.npy", linear["scaling"])
    return folder


def test_user_code_needs_a_trusted_version(python_model: Path, cancer: Cancer) -> None:
    files = ["predictor.py", "scoring.py", "weights.npy", "scaling.npy"]
    assert detect_flavor(files) == "python"
    assert get_flavor("python").unsafe_files(files) == ["predictor.py", "scoring.py"]

    with pytest.raises(
        PermissionDenied, match=r"Python code runs .*: 'predictor\.py', 'scoring\.py'; .* trusted"
    ):
        get_flavor("python").load(python_model, trusted=False, signature=cancer.signature)


@pytest.mark.parametrize("n_rows", [1, 64])
def test_it_predicts_like_the_model_it_reimplements(
    python_model: Path, lr_pipeline: Any, cancer: Cancer, n_rows: int
) -> None:
    model = get_flavor("python").load(python_model, trusted=True, signature=cancer.signature)
    got = model.predict(cancer.batch(n_rows, start=7))
    np.testing.assert_array_equal(single(got), lr_pipeline.predict(cancer.X[7 : 7 + n_rows]))
    assert model.supports_batching


def test_an_exception_in_predict_keeps_the_users_traceback(
    python_model: Path, cancer: Cancer
) -> None:
    model = get_flavor("python").load(python_model, trusted=True, signature=cancer.signature)
    with pytest.raises(PredictionError, match="RuntimeError: unlucky batch size") as caught:
        model.predict(cancer.batch(13))
    trace = caught.value.trace
    assert "predictor.py" in trace
    assert 'raise RuntimeError("unlucky batch size")' in trace
    assert "stratus/registry" not in trace  # the user's frames, not ours


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "import no_such_module_here\n",
            "ModuleNotFoundError: No module named 'no_such_module_here'",
        ),
        ("class Other:\n    pass\n", "predictor.py defines no class Predictor"),
        (
            "class Predictor:\n    def load(self, path):\n        raise OSError('no weights')\n",
            "OSError: no weights",
        ),
        ("class Predictor:\n    pass\n", "Predictor in predictor.py has no predict method"),
        ("import sys\nsys.exit(2)\n", "SystemExit: 2"),
    ],
)
def test_load_failures_are_model_load_errors(
    source: str, message: str, artifact_dir: ArtifactMaker
) -> None:
    folder = write_predictor(artifact_dir("python-broken"), source)
    with pytest.raises(ModelLoadError, match=message):
        get_flavor("python").load(folder, trusted=True, signature=None)


def test_results_are_checked_and_batching_is_the_users_choice(artifact_dir: ArtifactMaker) -> None:
    source = """
    import pandas as pd

    class Predictor:
        supports_batching = False

        def predict(self, batch):
            frame = batch.frame()
            if len(frame) == 3:
                return [1, 2]  # one short
            return pd.DataFrame({"double": frame["x"] * 2, "label": ["a"] * len(frame)})
    """
    folder = write_predictor(artifact_dir("python-frame"), source)
    model = get_flavor("python").load(folder, trusted=True, signature=None)
    assert model.supports_batching is False

    got = model.predict(Batch.from_rows([{"x": 1.5}, {"x": 2.0}]))
    assert isinstance(got, dict)
    np.testing.assert_array_equal(got["double"], [3.0, 4.0])
    assert list(got["label"]) == ["a", "a"]

    with pytest.raises(PredictionError, match="returned 2 predictions for 3 rows"):
        model.predict(Batch.from_rows([{"x": 1.0}] * 3))


# --- the function style: module-level predict(batch) and load() --------------------------------

FUNCTIONS = """
import numpy as np

calls = {"load": 0, "predict": 0}
offset = None


def load(folder):
    calls["load"] += 1
    global offset
    offset = float((folder / "offset.txt").read_text())


def predict(batch):
    calls["predict"] += 1
    if batch.n_rows == 13:
        raise ValueError("unlucky batch size")
    return batch["x"] * 2 + offset
"""


def test_module_level_functions_load_once_then_predict_on_batches(
    artifact_dir: ArtifactMaker,
) -> None:
    folder = write_predictor(artifact_dir("python-functions"), FUNCTIONS)
    (folder / "offset.txt").write_text("0.5")
    model = get_flavor("python").load(folder, trusted=True, signature=None)
    module = sys.modules[model._predict.__module__]
    assert module.calls == {"load": 1, "predict": 0}  # loaded before the first request

    got = model.predict(Batch.from_rows([{"x": 1.0}, {"x": 2.0}]))
    np.testing.assert_array_equal(single(got), [2.5, 4.5])
    model.predict(Batch.from_rows([{"x": 3.0}]))
    assert module.calls == {"load": 1, "predict": 2}
    assert model.supports_batching

    with pytest.raises(PredictionError, match="ValueError: unlucky batch size") as caught:
        model.predict(Batch.from_rows([{"x": 1.0}] * 13))
    assert "predictor.py" in caught.value.trace


def test_a_load_without_arguments_and_a_module_that_opts_out_of_batching(
    artifact_dir: ArtifactMaker,
) -> None:
    source = """
    from stratus.registry.batches import Batch

    supports_batching = False
    seen = []


    def load():
        seen.append("loaded")


    def predict(batch):
        assert isinstance(batch, Batch), type(batch)
        return [f"{seen[0]}:{len(batch.columns)}"] * batch.n_rows
    """
    folder = write_predictor(artifact_dir("python-bare-load"), source)
    model = get_flavor("python").load(folder, trusted=True, signature=None)
    assert model.supports_batching is False
    got = model.predict(Batch.from_rows([{"a": 1, "b": 2}]))
    assert list(single(got)) == ["loaded:2"]


def test_functions_need_a_trusted_version_too(artifact_dir: ArtifactMaker) -> None:
    folder = write_predictor(artifact_dir("python-untrusted"), FUNCTIONS)
    with pytest.raises(PermissionDenied, match=r"'predictor\.py'"):
        get_flavor("python").load(folder, trusted=False, signature=None)


def test_a_class_predictor_wins_over_module_functions(artifact_dir: ArtifactMaker) -> None:
    source = """
    def predict(batch):
        return ["function"] * batch.n_rows


    class Predictor:
        def predict(self, batch):
            return ["class"] * batch.n_rows
    """
    folder = write_predictor(artifact_dir("python-both"), source)
    model = get_flavor("python").load(folder, trusted=True, signature=None)
    assert list(single(model.predict(Batch.from_rows([{"x": 1}])))) == ["class"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def load():\n    pass\n", r"defines no class Predictor and no function predict\(batch\)"),
        ("predict = 3\n", "defines no class Predictor and no function predict"),
        (
            "def load(path):\n    raise OSError('no weights')\n\ndef predict(batch):\n    pass\n",
            "OSError: no weights",
        ),
        ("async def predict(batch):\n    return []\n", "is an async def; make it a plain def"),
    ],
)
def test_function_style_load_failures_are_model_load_errors(
    source: str, message: str, artifact_dir: ArtifactMaker
) -> None:
    folder = write_predictor(artifact_dir("python-functions-broken"), source)
    with pytest.raises(ModelLoadError, match=message) as caught:
        get_flavor("python").load(folder, trusted=True, signature=None)
    if "OSError" in message:
        assert "raise OSError('no weights')" in caught.value.trace


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def predict(batch):\n    return batch.matrix()\n", None),
        ("class Predictor:\n    pass\n", None),
        ("from .model import predict\n", None),
        ("import numpy as np\n\n\ndef predict(batch)\n    return 1\n", "h.py, line 4: "),
        ("x = (\n", "h.py, line 1: '(' was never closed"),
        ("def load():\n    pass\n", "h.py defines no function predict(batch) at its top"),
        ("def outer():\n    def predict(batch):\n        pass\n", "h.py defines no function"),
        ("async def predict(batch):\n    pass\n", "h.py, line 1: predict must be a def"),
    ],
)
def test_the_contract_is_checked_from_the_source_alone(source: str, problem: str | None) -> None:
    found = source_problem(source, "h.py")
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found
