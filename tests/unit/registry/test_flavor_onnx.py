"""The ONNX flavor: matrix and by-name feeding, tensor and ZipMap outputs, broken files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from registry_samples import ArtifactMaker, Cancer, single
from skl2onnx import to_onnx

from stratus.core.errors import InvalidInput
from stratus.registry.batches import Batch
from stratus.registry.flavors import ModelLoadError, PredictionError, detect_flavor, get_flavor
from stratus.registry.signatures import Signature, TensorSpec


def save(model: onnx.ModelProto, folder: Path) -> Path:
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    return folder


def session(folder: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def lr_onnx(lr_pipeline: Any, cancer: Cancer, artifact_dir: ArtifactMaker) -> Path:
    # float32 input and the default ZipMap probability output (a list of dicts)
    return save(to_onnx(lr_pipeline, cancer.X[:1].astype(np.float32)), artifact_dir("lr-onnx"))


@pytest.fixture(scope="module")
def rf_onnx(forest: Any, cancer: Cancer, artifact_dir: ArtifactMaker) -> Path:
    # float64 input, two tensor outputs (labels and probabilities)
    onx = to_onnx(forest, cancer.X[:1], options={"zipmap": False})
    return save(onx, artifact_dir("rf-onnx"))


@pytest.mark.parametrize("n_rows", [1, 64])
def test_a_zipmap_model_returns_its_labels(lr_onnx: Path, cancer: Cancer, n_rows: int) -> None:
    assert detect_flavor(["model.onnx", "README.md"]) == "onnx"
    model = get_flavor("onnx").load(lr_onnx, trusted=False, signature=cancer.signature)

    got = model.predict(cancer.batch(n_rows, start=200))

    rows = cancer.X[200 : 200 + n_rows].astype(np.float32)
    labels, _ = session(lr_onnx).run(None, {"X": rows})
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(single(got), labels)


@pytest.mark.parametrize("n_rows", [1, 64])
def test_a_classifier_without_zipmap_answers_its_labels(
    rf_onnx: Path, forest: Any, cancer: Cancer, n_rows: int
) -> None:
    # its probabilities, a second tensor output, come through predict_proba only
    model = get_flavor("onnx").load(rf_onnx, trusted=False, signature=cancer.signature)

    got = model.predict(cancer.batch(n_rows))

    np.testing.assert_array_equal(single(got), forest.predict(cancer.X[:n_rows]))


def test_several_tensor_outputs_come_back_as_a_dict(artifact_dir: ArtifactMaker) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, 2])
    outputs = [helper.make_tensor_value_info(n, TensorProto.DOUBLE, [None, 2]) for n in "ab"]
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["a"]), helper.make_node("Mul", ["x", "x"], ["b"])],
        "two",
        [x],
        outputs,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    loaded = get_flavor("onnx").load(
        save(model, artifact_dir("two-outputs")), trusted=False, signature=None
    )

    got = loaded.predict(Batch.from_rows([[1.0, 3.0]]))

    assert isinstance(got, dict)
    np.testing.assert_allclose(got["a"], [[2.0, 6.0]])
    np.testing.assert_allclose(got["b"], [[1.0, 9.0]])


def test_a_tensor_batch_is_fed_as_is(rf_onnx: Path, forest: Any, cancer: Cancer) -> None:
    signature = Signature(inputs=[TensorSpec(name="X", dtype="float64", shape=[-1, 30])])
    model = get_flavor("onnx").load(rf_onnx, trusted=False, signature=signature)
    got = model.predict(Batch.from_tensor("X", cancer.X[:10], signature))
    np.testing.assert_array_equal(single(got), forest.predict(cancer.X[:10]))


def two_inputs_model() -> onnx.ModelProto:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 1])
    b = helper.make_tensor_value_info("b", TensorProto.INT64, [None, 1])
    total = helper.make_tensor_value_info("total", TensorProto.FLOAT, [None, 1])
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["a", "b_float"], ["total"]),
        ],
        "sum",
        [a, b],
        [total],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_several_inputs_are_fed_by_name(artifact_dir: ArtifactMaker) -> None:
    folder = save(two_inputs_model(), artifact_dir("two-inputs"))
    # The signature's order differs from the model's: names decide.
    signature = Signature(
        inputs=[TensorSpec(name="b", dtype="int64"), TensorSpec(name="a", dtype="float64")]
    )
    model = get_flavor("onnx").load(folder, trusted=False, signature=signature)

    got = model.predict(Batch.from_rows([{"a": 0.5, "b": 2}, {"a": 1.5, "b": -1}], signature))
    np.testing.assert_allclose(single(got), [[2.5], [0.5]])

    other = Signature(inputs=[TensorSpec(name="a", dtype="float64")])
    with pytest.raises(ModelLoadError, match="input 'b' is not in the signature"):
        get_flavor("onnx").load(folder, trusted=False, signature=other)
    unchecked = get_flavor("onnx").load(folder, trusted=False, signature=None)
    with pytest.raises(InvalidInput, match="missing input 'b'"):
        unchecked.predict(Batch.from_rows([{"a": 0.5}]))


def test_broken_files_and_bad_batches(
    rf_onnx: Path, cancer: Cancer, artifact_dir: ArtifactMaker
) -> None:
    folder = artifact_dir("broken-onnx")
    (folder / "model.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelLoadError, match=r"could not load 'model\.onnx'") as caught:
        get_flavor("onnx").load(folder, trusted=False, signature=None)
    assert caught.value.trace

    with pytest.raises(ModelLoadError, match="found no .onnx file"):
        get_flavor("onnx").load(artifact_dir("empty-onnx"), trusted=False, signature=None)

    model = get_flavor("onnx").load(rf_onnx, trusted=False, signature=None)
    with pytest.raises(InvalidInput, match=r"input 'X' takes shape \[-1, 30\]") as shape:
        model.predict(Batch.from_rows([[1.0, 2.0]]))
    assert not isinstance(shape.value, PredictionError)  # checked before onnxruntime runs


def test_a_wrong_shape_is_named_in_the_callers_terms(rf_onnx: Path) -> None:
    model = get_flavor("onnx").load(rf_onnx, trusted=False, signature=None)
    with pytest.raises(InvalidInput) as caught:
        model.predict(Batch.from_rows([[0.5] * 5, [0.5] * 5]))
    problem = caught.value.to_problem()
    assert problem["detail"] == (
        "input 'X' takes shape [-1, 30] of float64 (-1: any size); the request gave shape "
        "[2, 5]: dimension 1 is 5, not 30"
    )
    assert (problem["input"], problem["expected_shape"], problem["received_shape"]) == (
        "X",
        [-1, 30],
        [2, 5],
    )
    assert "traceback" not in problem and "Traceback" not in str(problem)


def test_an_onnxruntime_failure_reaches_the_caller_without_traceback_or_paths(
    rf_onnx: Path,
) -> None:
    model = get_flavor("onnx").load(rf_onnx, trusted=False, signature=None)

    def fail(*_: Any) -> Any:
        raise RuntimeError(
            "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while "
            "running Gemm node. Status Message: /onnxruntime_src/onnxruntime/core/providers/"
            "cpu/math/gemm_helper.h:14 GemmHelper left.NumDimensions() == 2 was false"
        )

    model._run = fail  # type: ignore[attr-defined]
    with pytest.raises(PredictionError) as caught:
        model.predict(Batch.from_rows([[0.5] * 30]))
    body = str(caught.value.to_problem())
    assert "Gemm node" in body and "RuntimeError" in body
    assert "/onnxruntime_src" not in body and "gemm_helper.h" not in body, body
    assert "Traceback" not in body and "traceback" not in body
    assert "Traceback" in caught.value.trace  # kept for the replica's log
