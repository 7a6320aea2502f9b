"""The mlflow flavor: an MLflow model folder loaded as a pyfunc, only from a trusted version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from registry_samples import ArtifactMaker, Cancer, single

from stratus.core.errors import PermissionDenied
from stratus.registry.flavors import ModelLoadError, PredictionError, detect_flavor, get_flavor

pytest.importorskip("mlflow")

pytestmark = [
    # mlflow.pyfunc warns about its own type hints when it is first imported (MLflow 3.x)
    pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning"),
]


@pytest.fixture(scope="module")
def frame_pipeline(cancer: Cancer) -> Any:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = pd.DataFrame(cancer.X, columns=cancer.names)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, cancer.y)


@pytest.fixture(scope="module")
def mlflow_model(frame_pipeline: Any, artifact_dir: ArtifactMaker) -> Path:
    import mlflow.sklearn

    folder = artifact_dir("mlflow") / "model"
    # Naming the requirements skips MLflow's slow inference of them.
    mlflow.sklearn.save_model(
        frame_pipeline,
        str(folder),
        pip_requirements=["scikit-learn"],
        metadata={"supports_batching": False},
    )
    return folder


def files_of(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_an_mlflow_folder_is_detected_and_needs_trust(mlflow_model: Path, cancer: Cancer) -> None:
    files = files_of(mlflow_model)
    assert detect_flavor(files) == "mlflow"
    assert get_flavor("mlflow").unsafe_files(files)[0] == "MLmodel"

    with pytest.raises(PermissionDenied, match="'MLmodel'.*trusted"):
        get_flavor("mlflow").load(mlflow_model, trusted=False, signature=cancer.signature)


@pytest.mark.parametrize("n_rows", [1, 64])
def test_it_predicts_like_the_pyfunc(
    mlflow_model: Path, frame_pipeline: Any, cancer: Cancer, n_rows: int
) -> None:
    model = get_flavor("mlflow").load(mlflow_model, trusted=True, signature=cancer.signature)

    got = model.predict(cancer.batch(n_rows, start=50))

    import pandas as pd

    rows = pd.DataFrame(cancer.X[50 : 50 + n_rows], columns=cancer.names)
    np.testing.assert_array_equal(single(got), frame_pipeline.predict(rows))
    assert model.supports_batching is False  # from the model's MLmodel metadata


def test_failures_keep_the_library_traceback(
    mlflow_model: Path, cancer: Cancer, artifact_dir: ArtifactMaker
) -> None:
    from stratus.registry.batches import Batch

    model = get_flavor("mlflow").load(mlflow_model, trusted=True, signature=None)
    with pytest.raises(PredictionError) as caught:
        model.predict(Batch.from_rows([{"mean radius": 1.0}]))
    assert "Traceback" in caught.value.trace

    broken = artifact_dir("mlflow-broken")
    (broken / "MLmodel").write_text("flavors: {}\n")
    with pytest.raises(ModelLoadError, match="could not load 'MLmodel'"):
        get_flavor("mlflow").load(broken, trusted=True, signature=None)


def test_without_mlflow_the_error_says_what_to_install(
    mlflow_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "mlflow.pyfunc", None)  # makes the import fail
    with pytest.raises(ModelLoadError, match=r"pip install 'stratus\[mlflow\]'"):
        get_flavor("mlflow").load(mlflow_model, trusted=True, signature=None)
