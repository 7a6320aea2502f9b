"""The SDK's functions logic that needs no server: the handler file is refused before any
request when it cannot work, packaged as predictor.py with what it includes, and served at min
0 with the settings given over the current ones. (Deploying, calling and deleting on a real
server is tests/integration/test_functions.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from stratus.client import Client
from stratus.client._functions import check_handler, package, scaling_of
from stratus.core.errors import InvalidInput
from stratus.endpoints import schemas as ep
from stratus.testing import free_port

HANDLER = "def predict(batch):\n    return batch.matrix().sum(axis=1)\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "handler.py does not exist"),
        ("def load():\n    pass\n", "handler.py defines no function predict(batch) at its top"),
        ("import os\n\ndef predict(batch)\n    pass\n", "handler.py, line 3: expected ':'"),
        (b"\xff\xfe def predict", "handler.py is not UTF-8 text"),
    ],
)
def test_a_handler_that_cannot_work_is_refused_naming_the_file(
    tmp_path: Path, text: str | bytes | None, message: str
) -> None:
    path = tmp_path / "handler.py"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        check_handler(path)
    assert caught.value.detail.startswith(f"{tmp_path}/{message}"), caught.value.detail


def test_a_folder_is_not_a_handler(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="is not a file: give the Python file"):
        check_handler(tmp_path)


def test_deploy_checks_its_arguments_before_any_request(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text("x = 1\n")
    with Client(url=f"http://127.0.0.1:{free_port()}", api_key="nobody") as client:
        with pytest.raises(InvalidInput, match="defines no function predict"):
            client.functions.deploy("adder", tmp_path / "handler.py")
        with pytest.raises(InvalidInput, match="function name 'Adder' is not valid"):
            client.functions.deploy("Adder", tmp_path / "handler.py")


def test_the_package_is_the_handler_as_predictor_py_and_what_it_includes(
    tmp_path: Path,
) -> None:
    (tmp_path / "handler.py").write_text(HANDLER)
    (tmp_path / "weights.txt").write_text("1 2 3")
    assets = tmp_path / "assets"
    (assets / "__pycache__").mkdir(parents=True)
    (assets / "__pycache__" / "x.pyc").write_bytes(b"")
    (assets / "vocab.json").write_text("{}")
    (tmp_path / "out").mkdir()

    folder = package(tmp_path / "handler.py", [tmp_path / "weights.txt", assets], tmp_path / "out")
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == ["assets/vocab.json", "predictor.py", "weights.txt"]
    assert (folder / "predictor.py").read_text() == HANDLER


@pytest.mark.parametrize(
    ("include", "message"),
    [
        ("missing.bin", "missing.bin (included) does not exist"),
        ("predictor.py", "predictor.py (included) would overwrite predictor.py"),
    ],
)
def test_an_include_that_is_missing_or_clashes_is_refused(
    tmp_path: Path, include: str, message: str
) -> None:
    (tmp_path / "handler.py").write_text(HANDLER)
    (tmp_path / "predictor.py").write_text(HANDLER)
    (tmp_path / "out").mkdir()
    with pytest.raises(InvalidInput, match=re.escape(message)):
        package(tmp_path / "handler.py", [tmp_path / include], tmp_path / "out")


def _endpoint(main: dict[str, Any]) -> ep.EndpointRead:
    return ep.EndpointRead.model_validate(
        {
            "metadata": {
                "name": "adder",
                "uid": "u",
                "resource_version": 1,
                "created_at": "2030-01-01T00:00:00Z",
                "updated_at": "2030-01-01T00:00:00Z",
            },
            "spec": {"variants": [{"name": "main", "model": "adder:1", **main}], "revision": 1},
            "status": {"phase": "ready", "observed_revision": 1},
        }
    )


def test_a_new_function_scales_from_zero_with_the_defaults() -> None:
    assert scaling_of(
        None, max_replicas=None, target_concurrency=2, scale_to_zero_after_seconds=None
    ) == {
        "min_replicas": 0,
        "max_replicas": 4,
        "target_concurrency": 2,
        "scale_to_zero_after_seconds": 300.0,
    }


def test_a_redeploy_keeps_the_settings_it_is_not_given() -> None:
    current = _endpoint(
        {
            "autoscaling": {
                "min_replicas": 1,
                "max_replicas": 8,
                "scale_to_zero_after_seconds": 60,
                "stable_window_seconds": 10,
            }
        }
    )
    got = scaling_of(
        current, max_replicas=None, target_concurrency=None, scale_to_zero_after_seconds=5
    )
    assert got["min_replicas"] == 0  # a function always may go to zero
    assert (got["max_replicas"], got["scale_to_zero_after_seconds"]) == (8, 5)
    assert got["stable_window_seconds"] == 10
    fixed = scaling_of(
        _endpoint({"replicas": 3}),
        max_replicas=None,
        target_concurrency=None,
        scale_to_zero_after_seconds=None,
    )
    assert fixed["max_replicas"] == 4 and fixed["min_replicas"] == 0
