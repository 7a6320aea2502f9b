"""`stratus functions deploy` refuses a handler that cannot work with one line and exit code 1,
before it reaches any server (the URL here answers nothing), and never with a traceback;
`invoke` takes rows or a whole body."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stratus.cli.functions import _payload
from stratus.testing import free_port


@pytest.fixture
def closed_cli(run_cli: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    env = {
        "STRATUS_HOME": str(tmp_path / "home"),
        "STRATUS_URL": f"http://127.0.0.1:{free_port()}",
        "STRATUS_API_KEY": "nobody",
    }
    return lambda *args: run_cli(*args, env=env)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "handler.py does not exist"),
        ("def load():\n    pass\n", "handler.py defines no function predict(batch) at its top"),
        ("import os\n\n\ndef predict(batch)\n    return 1\n", "handler.py, line 4: expected ':'"),
        ("def predict(batch):\n  return (1,\n", "handler.py, line 2: '(' was never closed"),
    ],
)
def test_a_bad_handler_is_one_line_and_exit_code_1(
    closed_cli: Callable[..., Any], tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "handler.py"
    if text is not None:
        path.write_text(text)
    done = closed_cli("functions", "deploy", "adder", "--file", str(path))
    assert done.code == 1
    assert done.stderr.startswith(f"error: {path.parent}/{message}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_deploy_needs_a_file(closed_cli: Callable[..., Any]) -> None:
    done = closed_cli("functions", "deploy", "adder")
    assert done.code == 2 and "--file" in done.stderr


def test_a_missing_include_is_one_line(closed_cli: Callable[..., Any], tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text("def predict(batch):\n    return [1] * batch.n_rows\n")
    done = closed_cli(
        "functions", "deploy", "adder", "-f", str(tmp_path / "handler.py"),
        "--include", str(tmp_path / "weights.npy"),
    )  # fmt: skip
    assert done.code == 1
    assert done.stderr == f"error: {tmp_path}/weights.npy (included) does not exist\n"


@pytest.mark.parametrize(
    ("data", "payload"),
    [
        ('[{"x": 1}, {"x": 2}]', [{"x": 1}, {"x": 2}]),
        ('{"instances": [[1, 2]]}', {"instances": [[1, 2]]}),
    ],
)
def test_invoke_takes_rows_or_a_body(data: str, payload: Any) -> None:
    assert _payload(data) == payload


def test_invoke_refuses_what_is_neither(closed_cli: Callable[..., Any]) -> None:
    done = closed_cli("functions", "invoke", "adder", "--data", "3")
    assert done.code == 2 and "a list of rows or a request body" in done.stderr
    done = closed_cli("functions", "invoke", "adder", "--data", "[1,")
    assert done.code == 2 and "not valid JSON" in done.stderr
