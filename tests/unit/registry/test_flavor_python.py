"""The python flavor: the user's Predictor class, run only when trusted, its errors kept."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from registry_samples import ArtifactMaker, Cancer, single

from stratus.core.errors import PermissionDenied
from stratus.registry.batches import Batch
from stratus.registry.flavors import ModelLoadError, PredictionError, detect_flavor, get_flavor

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
