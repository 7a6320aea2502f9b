"""Choosing a flavor from file names: precedence, unknown artifacts, and no eager imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stratus.core.errors import InvalidInput
from stratus.registry.flavors import FLAVORS, detect_flavor, get_flavor


@pytest.mark.parametrize(
    ("files", "flavor"),
    [
        (["MLmodel", "model.pkl", "conda.yaml"], "mlflow"),
        (["MLmodel", "predictor.py"], "mlflow"),
        (["predictor.py", "model.onnx"], "python"),
        (["predictor.py", "weights/model.skops"], "python"),
        (["model.onnx", "model.skops"], "onnx"),
        (["sub/dir/net.ONNX"], "onnx"),
        (["model.ubj"], "xgboost"),
        (["model.xgb"], "xgboost"),
        (["booster.xgboost.json", "model.lgb"], "xgboost"),
        (["model.lgb"], "lightgbm"),
        (["trees.lgb.txt", "model.pkl"], "lightgbm"),
        (["model.skops", "README.md"], "sklearn"),
        (["model.joblib"], "sklearn"),
        (["model.pickle"], "sklearn"),
        (["nested/MLmodel.txt", "model.pkl"], "sklearn"),  # MLmodel only counts at the top
    ],
)
def test_the_first_flavor_in_precedence_order_wins(files: list[str], flavor: str) -> None:
    assert detect_flavor(files) == flavor


def test_nothing_recognisable_lists_the_known_flavors() -> None:
    with pytest.raises(InvalidInput) as caught:
        detect_flavor(["model.json", "weights.bin", "sub/predictor.py"])
    for name in FLAVORS:
        assert name in str(caught.value)


def test_an_unknown_flavor_name_is_invalid_input() -> None:
    with pytest.raises(
        InvalidInput, match=r"unknown flavor 'torch'; known flavors: mlflow, python"
    ):
        get_flavor("torch")


@pytest.mark.parametrize(
    ("flavor", "files", "unsafe"),
    [
        ("sklearn", ["model.skops", "model.pkl"], []),  # the skops file is the one loaded
        ("sklearn", ["model.pkl", "notes.txt"], ["model.pkl"]),
        ("sklearn", ["notes.txt"], []),
        ("sklearn", ["a.pkl", "b/c.joblib"], ["a.pkl", "b/c.joblib"]),  # cannot tell which loads
        ("onnx", ["model.onnx"], []),
        ("xgboost", ["model.ubj"], []),
        ("lightgbm", ["model.lgb"], []),
        (
            "python",
            ["predictor.py", "lib/util.py", "w.npy", "m.pkl"],
            ["predictor.py", "lib/util.py", "m.pkl"],
        ),
        ("mlflow", ["MLmodel", "model.pkl", "conda.yaml"], ["MLmodel", "model.pkl"]),
        ("mlflow", ["model.pkl"], []),
    ],
)
def test_unsafe_files_are_those_loading_would_unpickle_or_run(
    flavor: str, files: list[str], unsafe: list[str]
) -> None:
    assert get_flavor(flavor).unsafe_files(files) == unsafe


def test_choosing_and_vetting_a_flavor_imports_no_library() -> None:
    # The registry server calls these on every push; it must not need numpy or any ML library.
    script = (
        "import sys\n"
        "from stratus.registry.flavors import FLAVORS, detect_flavor, get_flavor\n"
        "from stratus.registry.signatures import Signature\n"
        "for name in FLAVORS:\n"
        "    get_flavor(name).unsafe_files(['model.pkl', 'MLmodel', 'predictor.py'])\n"
        "detect_flavor(['model.skops'])\n"
        "Signature.model_validate({'inputs': [{'name': 'x', 'dtype': 'float64', 'shape': [-1]}]})\n"
        "heavy = {'numpy', 'pandas', 'pyarrow', 'sklearn', 'skops', 'onnxruntime', 'xgboost',\n"
        "         'lightgbm', 'mlflow', 'joblib'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
