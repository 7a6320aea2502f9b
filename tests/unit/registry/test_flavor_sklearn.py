"""The sklearn flavor: skops by default, pickles only when trusted, the library's own answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from registry_samples import ArtifactMaker, Cancer
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from stratus.core.errors import InvalidInput, PermissionDenied
from stratus.registry.batches import Batch
from stratus.registry.flavors import ModelLoadError, PredictionError, detect_flavor, get_flavor
from stratus.registry.signatures import Signature, TensorSpec


class Doubler(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # skops does not know it
    def fit(self, X: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, X: Any) -> Any:
        return X * 2


def save_skops(model: Any, folder: Path, name: str = "model.skops") -> Path:
    skops.io.dump(model, folder / name)
    return folder


@pytest.fixture(scope="module")
def lr_skops(lr_pipeline: Any, artifact_dir: ArtifactMaker) -> Path:
    return save_skops(lr_pipeline, artifact_dir("lr-skops"))


@pytest.fixture(scope="module")
def rf_skops(forest: Any, artifact_dir: ArtifactMaker) -> Path:
    return save_skops(forest, artifact_dir("rf-skops"))


@pytest.fixture(scope="module")
def lr_joblib(lr_pipeline: Any, artifact_dir: ArtifactMaker) -> Path:
    import joblib

    folder = artifact_dir("lr-joblib")
    joblib.dump(lr_pipeline, folder / "model.joblib")
    return folder


@pytest.mark.parametrize("model_fixture", ["lr_skops", "rf_skops"])
@pytest.mark.parametrize("n_rows", [1, 64])
def test_skops_predicts_like_the_model_itself(
    request: pytest.FixtureRequest, cancer: Cancer, model_fixture: str, n_rows: int
) -> None:
    folder: Path = request.getfixturevalue(model_fixture)
    reference = skops.io.load(
        folder / "model.skops", trusted=skops.io.get_untrusted_types(file=folder / "model.skops")
    )
    assert detect_flavor(["model.skops"]) == "sklearn"

    model = get_flavor("sklearn").load(folder, trusted=False, signature=cancer.signature)

    start = 100
    got = model.predict(cancer.batch(n_rows, start))
    np.testing.assert_array_equal(got, reference.predict(cancer.X[start : start + n_rows]))
    assert model.supports_batching


def test_a_pickle_needs_a_trusted_version_and_the_error_names_the_file(
    lr_joblib: Path, cancer: Cancer, lr_pipeline: Any
) -> None:
    flavor = get_flavor("sklearn")
    assert flavor.unsafe_files(["model.joblib", "README.md"]) == ["model.joblib"]

    with pytest.raises(PermissionDenied, match=r"'model\.joblib'.*trusted") as caught:
        flavor.load(lr_joblib, trusted=False, signature=cancer.signature)
    assert caught.value.extra["files"] == ["model.joblib"]

    model = flavor.load(lr_joblib, trusted=True, signature=cancer.signature)
    np.testing.assert_array_equal(
        model.predict(cancer.batch(64)), lr_pipeline.predict(cancer.X[:64])
    )


def test_skops_with_a_type_from_outside_sklearn_needs_trust(
    cancer: Cancer, artifact_dir: ArtifactMaker
) -> None:
    pipeline = make_pipeline(Doubler(), StandardScaler(), LogisticRegression())
    pipeline.fit(cancer.X, cancer.y)
    folder = save_skops(pipeline, artifact_dir("custom-skops"))
    flavor = get_flavor("sklearn")
    assert flavor.unsafe_files(["model.skops"]) == []  # only loading can tell

    with pytest.raises(PermissionDenied, match=r"Doubler.*: 'model\.skops'; .* trusted"):
        flavor.load(folder, trusted=False, signature=None)

    model = flavor.load(folder, trusted=True, signature=None)
    np.testing.assert_array_equal(model.predict(cancer.batch(8)), pipeline.predict(cancer.X[:8]))


def test_a_model_fitted_on_a_dataframe_gets_its_columns_by_name(
    cancer: Cancer, artifact_dir: ArtifactMaker
) -> None:
    import pandas as pd

    frame = pd.DataFrame(cancer.X[:, :3], columns=["a", "b", "c"])
    fitted = LogisticRegression(max_iter=5000).fit(frame, cancer.y)
    folder = save_skops(fitted, artifact_dir("frame-skops"))
    # The signature lists the columns in another order: the model still gets a, b, c.
    signature = Signature(
        inputs=[TensorSpec(name=n, dtype="float64", shape=[-1]) for n in ["c", "a", "b"]]
    )
    model = get_flavor("sklearn").load(folder, trusted=False, signature=signature)

    batch = Batch.from_columns(
        {"c": cancer.X[:20, 2], "a": cancer.X[:20, 0], "b": cancer.X[:20, 1]}, signature
    )
    np.testing.assert_array_equal(model.predict(batch), fitted.predict(frame[:20]))

    wrong = Signature(inputs=[TensorSpec(name=n, dtype="float64", shape=[-1]) for n in "abx"])
    with pytest.raises(ModelLoadError, match="needs input 'c'"):
        get_flavor("sklearn").load(folder, trusted=False, signature=wrong)


def test_a_broken_file_is_a_model_load_error_with_the_traceback(
    artifact_dir: ArtifactMaker,
) -> None:
    folder = artifact_dir("broken-skops")
    (folder / "model.skops").write_bytes(b"this is not a zip file")

    with pytest.raises(ModelLoadError, match=r"could not load 'model\.skops'") as caught:
        get_flavor("sklearn").load(folder, trusted=False, signature=None)
    assert "Traceback" in caught.value.trace
    assert caught.value.status == 400


def test_a_failing_predict_is_a_prediction_error(lr_skops: Path, cancer: Cancer) -> None:
    model = get_flavor("sklearn").load(lr_skops, trusted=False, signature=None)
    with pytest.raises(PredictionError, match="29 features") as caught:
        model.predict(Batch.from_rows([cancer.X[0, :29].tolist()]))
    assert "ValueError" in caught.value.trace
    assert "Traceback" not in str(caught.value.to_problem())  # the trace is for logs only
    with pytest.raises(InvalidInput, match="input 'f0' holds strings"):
        model.predict(Batch.from_rows([["a"]]))


def test_several_model_files_must_be_told_apart(
    lr_pipeline: Any, artifact_dir: ArtifactMaker
) -> None:
    folder = artifact_dir("two-skops")
    save_skops(lr_pipeline, folder, "one.skops")
    save_skops(lr_pipeline, folder, "two.skops")
    with pytest.raises(ModelLoadError, match="several model files"):
        get_flavor("sklearn").load(folder, trusted=False, signature=None)

    save_skops(lr_pipeline, folder, "model.skops")  # the conventional name settles it
    get_flavor("sklearn").load(folder, trusted=False, signature=None)


def test_numpy_ufuncs_load_without_trust_but_other_functions_need_it(
    cancer: Cancer, artifact_dir: ArtifactMaker
) -> None:
    from sklearn.preprocessing import FunctionTransformer

    flavor = get_flavor("sklearn")
    safe = make_pipeline(FunctionTransformer(np.abs), StandardScaler(), LogisticRegression())
    safe.fit(cancer.X, cancer.y)
    model = flavor.load(
        save_skops(safe, artifact_dir("ufunc-skops")), trusted=False, signature=None
    )
    np.testing.assert_array_equal(model.predict(cancer.batch(4)), safe.predict(cancer.X[:4]))

    # numpy.load is no arithmetic: a file that names it must be trusted before it loads
    risky = make_pipeline(FunctionTransformer(np.load), LogisticRegression())
    folder = save_skops(risky, artifact_dir("function-skops"))
    with pytest.raises(PermissionDenied, match=r"numpy.*load.*trusted"):
        flavor.load(folder, trusted=False, signature=None)
