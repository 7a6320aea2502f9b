"""Class probabilities per flavor: scikit-learn, XGBoost and LightGBM boosters, ONNX with and
without ZipMap; regressors say why they give none; an ONNX graph describes its signature."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
import skops.io
import xgboost
from registry_samples import ArtifactMaker, Cancer, single
from skl2onnx import to_onnx

from stratus.registry.flavors import get_flavor
from stratus.registry.flavors.base import GivesProbabilities, model_outputs, probabilities_of
from stratus.registry.flavors.onnx_graph import (
    described,
    read_chunks,
    read_graph,
    signature_of,
)
from stratus.registry.signatures import Signature, TensorSpec, class_name, infer_signature


def _load(flavor: str, folder: Path, signature: Signature | None = None) -> Any:
    return get_flavor(flavor).load(folder, trusted=False, signature=signature)


# --- scikit-learn ------------------------------------------------------------------------------


def test_a_sklearn_classifier_gives_probabilities_in_class_order(
    lr_pipeline: Any, cancer: Cancer, artifact_dir: ArtifactMaker
) -> None:
    folder = artifact_dir("sk-proba")
    skops.io.dump(lr_pipeline, folder / "model.skops")
    model = _load("sklearn", folder, cancer.signature)

    assert isinstance(model, GivesProbabilities)
    assert model.classes == [0, 1]
    got = model.predict_proba(cancer.batch(7, start=40))
    np.testing.assert_allclose(got, lr_pipeline.predict_proba(cancer.X[40:47]))
    label, probabilities = model_outputs(model)
    assert (label.name, label.dtype) == ("label", "int64")
    assert probabilities.classes == [0, 1] and probabilities.shape == [-1, 2]


def test_string_classes_keep_their_names(cancer: Cancer, artifact_dir: ArtifactMaker) -> None:
    from sklearn.tree import DecisionTreeClassifier

    y = np.array(["benign", "malignant"])[cancer.y]
    folder = artifact_dir("sk-strings")
    skops.io.dump(DecisionTreeClassifier(max_depth=2).fit(cancer.X, y), folder / "model.skops")
    model = _load("sklearn", folder, cancer.signature)
    assert model.classes == ["benign", "malignant"]
    assert model_outputs(model)[0].dtype == "string"


def test_a_sklearn_regressor_says_why_it_gives_no_probabilities(
    cancer: Cancer, artifact_dir: ArtifactMaker
) -> None:
    from sklearn.linear_model import Ridge

    folder = artifact_dir("sk-regressor")
    skops.io.dump(Ridge().fit(cancer.X, cancer.y.astype(float)), folder / "model.skops")
    model = _load("sklearn", folder, cancer.signature)

    assert model.classes is None
    assert model.predict_proba(cancer.batch(2)) is None
    assert probabilities_of(model) == "it is a regressor (Ridge)"
    assert model_outputs(model) == []


# --- boosters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("objective", "extra"),
    [("binary:logistic", {}), ("binary:logitraw", {}), ("multi:softprob", {"num_class": 3})],
)
def test_xgboost_classifiers_give_one_column_per_class(
    cancer: Cancer, artifact_dir: ArtifactMaker, objective: str, extra: dict[str, Any]
) -> None:
    y = cancer.y if not extra else (cancer.X[:, 0] > 12).astype(int) + (cancer.X[:, 0] > 17)
    params = {"objective": objective, "max_depth": 3, "nthread": 1, **extra}
    booster = xgboost.train(params, xgboost.DMatrix(cancer.X, label=y), 5)
    folder = artifact_dir("xgb-proba")
    booster.save_model(folder / "model.ubj")
    model = _load("xgboost", folder, cancer.signature)

    got = model.predict_proba(cancer.batch(6, start=100))

    n_classes = extra.get("num_class", 2)
    assert model.classes == list(range(n_classes))
    assert got.shape == (6, n_classes)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)
    raw = booster.inplace_predict(cancer.X[100:106])
    if objective == "binary:logistic":
        np.testing.assert_allclose(got, np.column_stack((1 - raw, raw)), rtol=1e-6)
    elif objective == "binary:logitraw":  # raw margins: their sigmoid
        np.testing.assert_allclose(got[:, 1], 1 / (1 + np.exp(-raw)), rtol=1e-6)
    else:
        np.testing.assert_allclose(got, raw, rtol=1e-6)


def test_an_xgboost_regressor_gives_none(cancer: Cancer, artifact_dir: ArtifactMaker) -> None:
    params = {"objective": "reg:squarederror", "max_depth": 2, "nthread": 1}
    booster = xgboost.train(params, xgboost.DMatrix(cancer.X, label=cancer.y), 3)
    folder = artifact_dir("xgb-reg")
    booster.save_model(folder / "model.ubj")
    model = _load("xgboost", folder, cancer.signature)
    assert model.predict_proba(cancer.batch(1)) is None
    assert probabilities_of(model) == "it is not a classifier (objective reg:squarederror)"


@pytest.mark.parametrize("objective", ["binary", "multiclass"])
def test_lightgbm_classifiers_give_one_column_per_class(
    cancer: Cancer, artifact_dir: ArtifactMaker, objective: str
) -> None:
    multi = objective == "multiclass"
    y = (cancer.X[:, 0] > 12).astype(int) + (cancer.X[:, 0] > 17) if multi else cancer.y
    params = {"objective": objective, "num_leaves": 7, "verbose": -1, "num_threads": 1}
    if multi:
        params["num_class"] = 3
    booster = lightgbm.train(params, lightgbm.Dataset(cancer.X, y), 5)
    folder = artifact_dir("lgb-proba")
    booster.save_model(folder / "model.lgb")
    model = _load("lightgbm", folder, cancer.signature)

    got = model.predict_proba(cancer.batch(5, start=10))

    expected = booster.predict(cancer.X[10:15])
    if not multi:
        expected = np.column_stack((1 - expected, expected))
    assert model.classes == ([0, 1, 2] if multi else [0, 1])
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    # the label path is what the booster answers, as before
    np.testing.assert_allclose(single(model.predict(cancer.batch(5, start=10))), booster.predict(
        cancer.X[10:15]), rtol=1e-9)  # fmt: skip


def test_a_lightgbm_regressor_gives_none(cancer: Cancer, artifact_dir: ArtifactMaker) -> None:
    params = {"objective": "regression", "num_leaves": 7, "verbose": -1, "num_threads": 1}
    booster = lightgbm.train(params, lightgbm.Dataset(cancer.X, cancer.y.astype(float)), 3)
    folder = artifact_dir("lgb-reg")
    booster.save_model(folder / "model.lgb")
    model = _load("lightgbm", folder, cancer.signature)
    assert model.predict_proba(cancer.batch(1)) is None
    assert probabilities_of(model) == "it is not a classifier (objective regression)"


# --- ONNX ----------------------------------------------------------------------------------------


def _onnx(model: Any, sample: np.ndarray, folder: Path, zipmap: bool) -> Path:
    options = None if zipmap else {"zipmap": False}
    onx = to_onnx(model, sample, options=options)
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    return folder


@pytest.mark.parametrize("zipmap", [True, False])
def test_onnx_classifiers_answer_labels_and_give_probabilities(
    forest: Any, cancer: Cancer, artifact_dir: ArtifactMaker, zipmap: bool
) -> None:
    folder = _onnx(forest, cancer.X[:1].astype(np.float32), artifact_dir("onnx-proba"), zipmap)
    model = _load("onnx", folder, cancer.signature)

    labels = model.predict(cancer.batch(9, start=20))
    got = model.predict_proba(cancer.batch(9, start=20))

    assert model.classes == [0, 1]
    np.testing.assert_array_equal(single(labels), forest.predict(cancer.X[20:29]))
    assert got.shape == (9, 2) and got.dtype == np.float32
    expected = forest.predict_proba(cancer.X[20:29].astype(np.float32))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_onnx_string_classes_come_from_the_graph(
    cancer: Cancer, artifact_dir: ArtifactMaker
) -> None:
    from sklearn.linear_model import LogisticRegression

    y = np.array(["no", "yes"])[cancer.y]
    fitted = LogisticRegression(max_iter=3000).fit(cancer.X, y)
    sample = cancer.X[:1].astype(np.float32)  # ZipMap takes float probabilities only
    folder = _onnx(fitted, sample, artifact_dir("onnx-strings"), zipmap=True)
    model = _load("onnx", folder)
    assert model.classes == ["no", "yes"]
    np.testing.assert_allclose(
        model.predict_proba(cancer.batch(3)), fitted.predict_proba(cancer.X[:3]), atol=1e-4
    )


def test_an_onnx_model_without_probabilities_says_so(
    cancer: Cancer, artifact_dir: ArtifactMaker
) -> None:
    from sklearn.linear_model import LinearRegression

    regressor = LinearRegression().fit(cancer.X, cancer.y.astype(float))
    folder = artifact_dir("onnx-regressor")
    (folder / "model.onnx").write_bytes(to_onnx(regressor, cancer.X[:1]).SerializeToString())
    model = _load("onnx", folder)
    assert model.predict_proba(cancer.batch(2)) is None
    assert "not a classifier" in str(probabilities_of(model))


@pytest.mark.parametrize("zipmap", [True, False])
def test_an_onnx_graph_spells_its_signature(
    forest: Any, cancer: Cancer, artifact_dir: ArtifactMaker, zipmap: bool
) -> None:
    folder = _onnx(forest, cancer.X[:1].astype(np.float32), artifact_dir("onnx-graph"), zipmap)
    data = (folder / "model.onnx").read_bytes()

    graph = read_graph(data)
    signature = signature_of(graph)

    assert signature is not None
    assert signature.model_dump(mode="json") == {
        "inputs": [{"name": "X", "dtype": "float32", "shape": [-1, 30]}],
        "outputs": [
            {"name": "label", "dtype": "int64", "shape": [-1]},
            {"name": "probabilities", "dtype": "float32", "shape": [-1, 2], "classes": [0, 1]},
        ],
        "description": "",
    }
    # the same from chunks of a stored blob, and from a stream
    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    assert read_chunks(chunks) == graph
    assert read_graph(io.BytesIO(data)) == graph


def test_a_declared_signature_gets_the_graphs_outputs(
    forest: Any, cancer: Cancer, artifact_dir: ArtifactMaker
) -> None:
    folder = _onnx(forest, cancer.X[:1].astype(np.float32), artifact_dir("onnx-declared"), True)
    graph = read_graph((folder / "model.onnx").read_bytes())
    declared = cancer.signature.model_dump(mode="json")

    merged = described(graph, declared)

    assert merged is not None
    assert merged["inputs"] == declared["inputs"]
    assert [o["name"] for o in merged["outputs"]] == ["label", "probabilities"]
    assert described(graph, merged) is None  # outputs declared: nothing to add


def test_a_graph_with_several_inputs_and_no_classifier(artifact_dir: ArtifactMaker) -> None:
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.DOUBLE, [None, 1])
    b = helper.make_tensor_value_info("b", TensorProto.INT64, ["batch"])
    total = helper.make_tensor_value_info("total", TensorProto.DOUBLE, [None, 1])
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.DOUBLE),
            helper.make_node("Unsqueeze", ["b_float", "axes"], ["b_col"]),
            helper.make_node("Add", ["a", "b_col"], ["total"]),
        ],
        "sum",
        [a, b],
        [total],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)

    signature = signature_of(read_graph(model.SerializeToString()))

    assert signature is not None
    assert [(i.name, i.dtype, i.shape) for i in signature.inputs] == [
        ("a", "float64", [-1]),
        ("b", "int64", [-1]),
    ]
    assert [(o.name, o.classes) for o in signature.outputs] == [("total", None)]


def test_bytes_that_are_no_onnx_model_are_refused() -> None:
    for data in (b"\x08\x07garbage", b"", b"\x3a\xff\xff\xff\x0f"):
        with pytest.raises(ValueError):
            read_graph(data)


# --- signatures --------------------------------------------------------------------------------


def test_class_names_and_classifier_signatures() -> None:
    assert [class_name(c) for c in (1, 1.0, 2.5, True, "yes", np.int64(3))] == [
        "1",
        "1",
        "2.5",
        "true",
        "yes",
        "3",
    ]
    signature = infer_signature({"x": [1.0, 2.0]}, classes=np.array(["a", "b", "c"]))
    assert signature.classes == ["a", "b", "c"]
    assert signature.outputs[0].dtype == "string"
    with pytest.raises(ValueError, match="must be \\[-1, 2\\]"):
        TensorSpec(name="p", dtype="float64", shape=[-1, 3], classes=[0, 1])
    with pytest.raises(ValueError, match="the same class twice"):
        TensorSpec(name="p", dtype="float64", shape=[-1, 2], classes=[1, 1.0])
    # inputs keep their JSON as before: no "classes" key
    assert "classes" not in signature.inputs[0].model_dump()
