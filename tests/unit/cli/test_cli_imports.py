"""The CLI starts fast: `stratus --version`, `--help` and the commands that only talk to the API
load none of the server (SQLAlchemy, FastAPI, uvicorn) and none of the numerics (numpy,
pandas, pyarrow, scikit-learn). Read from what a real run imported (`python -X importtime`),
never from a timing; `.importlinter` says the same of the code (`light-cli`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stratus.testing import free_port

HEAVY = {
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "prometheus_client",
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "sklearn",
    "onnxruntime",
}


def imported(args: list[str], home: Path) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The top-level packages a run of `stratus ARGS` imported, against a closed port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    env.update(STRATUS_HOME=str(home), STRATUS_URL=f"http://127.0.0.1:{free_port()}")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "stratus", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    packages = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return packages, done


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        ["endpoints", "list", "--help"],
        ["endpoints", "list"],
        ["predict", "demo", "--json", '{"instances": [[1, 2]]}'],
        ["models", "list"],
        ["monitors", "list"],
        ["pipelines", "list"],
        ["data", "list"],
    ],
    ids=" ".join,
)
def test_api_commands_load_no_server_and_no_numerics(args: list[str], tmp_path: Path) -> None:
    packages, done = imported(args, tmp_path)
    if not args[-1].startswith("-"):  # a call: it tried the API and said it is not there
        assert done.returncode == 1, done.stderr[-2000:]
        assert "cannot reach Stratus" in done.stderr
    else:
        assert done.returncode == 0, done.stderr[-2000:]
    assert packages & HEAVY == set()


def test_the_check_sees_a_heavy_import(tmp_path: Path) -> None:
    """`stratus db current` runs the database code, so it loads SQLAlchemy: seen."""
    packages, _ = imported(["db", "current", "--db", "sqlite:///:memory:"], tmp_path)
    assert "sqlalchemy" in packages


def test_a_typo_suggests_the_command_without_importing_every_command(tmp_path: Path) -> None:
    """ "Did you mean" comes from the names alone: a mistyped command does not import the
    module of every command (the server's and the numerics' among them) to suggest one."""
    packages, done = imported(["endpoint", "list"], tmp_path)
    assert done.returncode == 2
    assert "No such command 'endpoint'. Did you mean 'endpoints'?" in done.stderr
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert not {m for m in modules if m.startswith("stratus.cli.") and m != "stratus.cli.main"} - {
        "stratus.cli.context",
        "stratus.cli.lazy_group",
        "stratus.cli.output",
    }
    assert packages & HEAVY == set()
