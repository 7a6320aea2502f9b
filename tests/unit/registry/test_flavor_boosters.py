"""The xgboost and lightgbm flavors: their own file formats, their own predictions."""

from __future__ import annotations

from typing import Any

import lightgbm
import numpy as np
import pytest
import xgboost
from registry_samples import ArtifactMaker, Cancer, single

from stratus.registry.batches import Batch
from stratus.registry.flavors import ModelLoadError, detect_flavor, get_flavor
from stratus.registry.signatures import Signature, TensorSpec

XGB_PARAMS = {"objective": "binary:logistic", "max_depth": 3, "nthread": 1}
LGB_PARAMS = {"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1}


@pytest.fixture(scope="module")
def xgb_booster(cancer: Cancer) -> Any:
    return xgboost.train(XGB_PARAMS, xgboost.DMatrix(cancer.X, label=cancer.y), 10)


@pytest.fixture(scope="module")
def lgb_booster(cancer: Cancer) -> Any:
    return lightgbm.train(LGB_PARAMS, lightgbm.Dataset(cancer.X, cancer.y), 10)


@pytest.mark.parametrize("file", ["model.ubj", "model.xgb.json", "booster.xgb"])
@pytest.mark.parametrize("n_rows", [1, 64])
def test_xgboost_predicts_like_the_booster(
    xgb_booster: Any, cancer: Cancer, artifact_dir: ArtifactMaker, file: str, n_rows: int
) -> None:
    folder = artifact_dir("xgb")
    # .xgb is no suffix XGBoost knows: it would warn when saving by name, so write bytes.
    (folder / file).write_bytes(xgb_booster.save_raw("json" if file.endswith("json") else "ubj"))
    assert detect_flavor([file]) == "xgboost"
    assert get_flavor("xgboost").unsafe_files([file]) == []

    model = get_flavor("xgboost").load(folder, trusted=False, signature=cancer.signature)

    got = model.predict(cancer.batch(n_rows, start=300))
    expected = xgb_booster.inplace_predict(cancer.X[300 : 300 + n_rows])
    np.testing.assert_allclose(single(got), expected, rtol=1e-6)


def test_xgboost_feature_names_pick_the_columns(
    cancer: Cancer, artifact_dir: ArtifactMaker
) -> None:
    data = xgboost.DMatrix(cancer.X[:, :3], label=cancer.y, feature_names=["a", "b", "c"])
    booster = xgboost.train(XGB_PARAMS, data, 5)
    folder = artifact_dir("xgb-names")
    booster.save_model(folder / "model.ubj")
    signature = Signature(inputs=[TensorSpec(name=n, dtype="float64") for n in ["c", "b", "a"]])

    model = get_flavor("xgboost").load(folder, trusted=False, signature=signature)

    batch = Batch.from_columns(
        {"a": cancer.X[:9, 0], "b": cancer.X[:9, 1], "c": cancer.X[:9, 2]}, signature
    )
    expected = booster.predict(xgboost.DMatrix(cancer.X[:9, :3], feature_names=["a", "b", "c"]))
    np.testing.assert_allclose(single(model.predict(batch)), expected, rtol=1e-6)


@pytest.mark.parametrize("file", ["model.lgb", "model.lgb.txt"])
@pytest.mark.parametrize("n_rows", [1, 64])
def test_lightgbm_predicts_like_the_booster(
    lgb_booster: Any, cancer: Cancer, artifact_dir: ArtifactMaker, file: str, n_rows: int
) -> None:
    folder = artifact_dir("lgb")
    lgb_booster.save_model(folder / file)
    assert detect_flavor([file]) == "lightgbm"

    model = get_flavor("lightgbm").load(folder, trusted=False, signature=cancer.signature)

    got = model.predict(cancer.batch(n_rows, start=400))
    np.testing.assert_allclose(
        single(got), lgb_booster.predict(cancer.X[400 : 400 + n_rows]), rtol=1e-9
    )


def test_lightgbm_feature_names_must_be_in_the_signature(
    cancer: Cancer, artifact_dir: ArtifactMaker
) -> None:
    data = lightgbm.Dataset(cancer.X[:, :2], cancer.y, feature_name=["a", "b"])
    booster = lightgbm.train(LGB_PARAMS, data, 3)
    folder = artifact_dir("lgb-names")
    booster.save_model(folder / "model.lgb")

    signature = Signature(inputs=[TensorSpec(name=n, dtype="float64") for n in ["b", "a"]])
    model = get_flavor("lightgbm").load(folder, trusted=False, signature=signature)
    batch = Batch.from_rows([[cancer.X[0, 1], cancer.X[0, 0]]], signature)
    np.testing.assert_allclose(single(model.predict(batch)), booster.predict(cancer.X[:1, :2]))

    wrong = Signature(inputs=[TensorSpec(name=n, dtype="float64") for n in ["a", "z"]])
    with pytest.raises(ModelLoadError, match="needs input 'b'"):
        get_flavor("lightgbm").load(folder, trusted=False, signature=wrong)


@pytest.mark.parametrize(("flavor", "file"), [("xgboost", "model.ubj"), ("lightgbm", "model.lgb")])
def test_a_broken_booster_is_a_model_load_error(
    flavor: str, file: str, artifact_dir: ArtifactMaker
) -> None:
    folder = artifact_dir(f"broken-{flavor}")
    (folder / file).write_text("not a model\n")
    with pytest.raises(
        ModelLoadError, match=f"the {flavor} flavor could not load '{file}'"
    ) as caught:
        get_flavor(flavor).load(folder, trusted=False, signature=None)
    assert "Traceback" in caught.value.trace
