"""Functions end to end on a real control plane, driven by the CLI as a user would: one command
deploys a handler file (with a file it loads) at zero replicas; the first call through the
gateway starts a replica (`X-Stratus-Cold-Start: true`); a changed file rolls the function
over to a new version, the same file again pushes nothing; list, invoke and delete work, and a
name taken by a plain endpoint is refused in one line."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.client import Client
from stratus.core.errors import NotFound
from stratus.testing import LocalPlatform, wait_for

HANDLER = """
offset = None


def load(folder):
    global offset
    offset = float((folder / "offset.txt").read_text())


def predict(batch):
    if (batch["x"] < 0).any():
        raise ValueError("x must not be negative")
    return batch["x"] * {factor} + offset
"""
ROWS = [{"x": 1.0}, {"x": 2.0}]
CliRunner = Callable[..., Any]  # the `cli` fixture: cli("functions", "list") -> CliResult


def handler(folder: Path, factor: int) -> Path:
    path = folder / "handler.py"
    path.write_text(textwrap.dedent(HANDLER.format(factor=factor)))
    return path


def test_a_function_deploys_in_one_command_answers_from_zero_and_rolls_over(
    platform: LocalPlatform, admin: Client, cli: CliRunner, tmp_path: Path
) -> None:
    name = f"fn-{uuid.uuid4().hex[:8]}"
    (tmp_path / "offset.txt").write_text("0.5")
    deploy = ("functions", "deploy", name, "--include", str(tmp_path / "offset.txt"))
    scaling = ("--max-replicas", "2", "--scale-to-zero-after", "2", "--wait", "--timeout", "60")
    try:
        first = cli(*deploy, "--file", str(handler(tmp_path, 2)), *scaling)
        assert first.code == 0, first.stderr
        assert f"function {name}: {name}:1 pushed from handler.py" in first.stdout
        assert "0-2 replicas" in first.stdout and "to zero after 2 s idle" in first.stdout

        at_zero = admin.functions.get(name)
        assert at_zero.status.phase == "ready" and at_zero.status.replicas == []
        assert at_zero.metadata.labels == {"stratus.io/kind": "function"}

        url = f"{platform.url}/inference/default/{name}/predict"
        headers = {"Authorization": f"Bearer {platform.api_key}"}
        answer = httpx.post(url, json={"instances": ROWS}, headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-stratus-cold-start"] == "true"
        assert answer.headers["x-stratus-model-version"] == f"{name}:1"
        assert answer.json()["predictions"] == [2.5, 4.5]
        refused = httpx.post(url, json={"instances": [{"x": -1.0}]}, headers=headers, timeout=60)
        assert refused.status_code == 400
        assert "ValueError: x must not be negative" in refused.json()["detail"]

        second = cli(*deploy, "--file", str(handler(tmp_path, 3)), *scaling)
        assert second.code == 0, second.stderr
        assert f"{name}:2 pushed from handler.py" in second.stdout
        invoked = cli("functions", "invoke", name, "--data", '[{"x": 1.0}]', "-o", "json")
        assert invoked.code == 0, invoked.stderr
        assert '"predictions": [\n    3.5\n  ]' in invoked.stdout
        assert admin.functions.invoke(name, ROWS).model_version == f"{name}:2"

        again = cli(*deploy, "--file", str(handler(tmp_path, 3)), *scaling)
        assert again.code == 0, again.stderr
        assert f"{name}:2 again (handler.py holds the same files" in again.stdout
        assert admin.models.get(name).status.versions == 2

        listed = cli("functions", "list")
        assert listed.code == 0 and name in listed.stdout, listed.stderr
        assert [f.metadata.name for f in admin.functions.list()].count(name) == 1
        shown = cli("functions", "show", name)
        assert shown.code == 0 and f"{name}:2" in shown.stdout and "handler.py" in shown.stdout

        # idle: back to zero replicas, by itself
        wait_for(
            "the function back at zero replicas",
            lambda: (
                not [
                    r
                    for r in admin.functions.get(name).status.replicas
                    if r.phase in ("starting", "ready")
                ]
            ),
            60,
            0.2,
        )
    finally:
        gone = cli("functions", "delete", name, "-y")
    assert gone.code == 0, gone.stderr
    with pytest.raises(NotFound):
        admin.endpoints.get(name)
    with pytest.raises(NotFound):
        admin.models.get(name)


def test_a_function_never_takes_over_a_plain_endpoint(
    admin: Client, cli: CliRunner, tiny_model: Path, tmp_path: Path
) -> None:
    name = f"plain-{uuid.uuid4().hex[:8]}"
    admin.models.push(tiny_model, name)
    admin.endpoints.create(name, [{"name": "main", "model": f"{name}:1", "replicas": 0}])
    try:
        taken = cli("functions", "deploy", name, "--file", str(handler(tmp_path, 2)))
        assert taken.code == 1
        assert taken.stderr.strip() == (
            f"error: endpoint {name!r} exists and is not a function: pick another name, or "
            "delete the endpoint first"
        )
        assert admin.models.get(name).status.versions == 1  # nothing was pushed
        assert name not in [f.metadata.name for f in admin.functions.list()]
        missing = cli("functions", "show", name)
        assert missing.code == 1 and "no function" in missing.stderr
    finally:
        admin.endpoints.delete(name)
        admin.models.delete(name, force=True)
