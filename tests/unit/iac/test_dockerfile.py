"""The build context of a model version: a Dockerfile that installs this Stratus with the
flavor's extras and starts the standalone replica, the version's facts in serving.json, and
the refusals (uncommitted, rejected, untrusted pickles) before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stratus.core.errors import Conflict, PermissionDenied
from stratus.iac.dockerfile import (
    INSTALL_CHECK,
    MODEL_DIR,
    SPEC_FILE,
    build_context,
    runtime_command,
)
from stratus.registry.schemas import VersionRead
from stratus.serving.standalone_spec import StandaloneSpec

NOW = datetime(2026, 12, 1, tzinfo=UTC)
SIGNATURE = {"inputs": [{"name": "a", "type": "double"}, {"name": "b", "type": "double"}]}


def version(**fields: Any) -> VersionRead:
    values: dict[str, Any] = {
        "model": "churn", "project": "risk", "version": 3, "state": "ready",
        "flavor": "sklearn", "trusted": False, "needs_trust": [],
        "files": [{"path": "model.skops", "sha256": "0" * 64, "size": 10, "stored": True}],
        "size": 10, "signature": SIGNATURE, "metrics": {}, "params": {}, "tags": {},
        "lineage": {}, "description": "", "aliases": [], "created_at": NOW,
        "created_by": "alice", "committed_at": NOW,
    }  # fmt: skip
    values.update(fields)
    return VersionRead.model_validate(values)


def instructions(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if line and not line.startswith("#")]


def test_the_image_installs_this_stratus_and_starts_the_standalone_replica() -> None:
    context = build_context(version(), stratus_version="0.9.1", python_version="3.12")
    assert set(context.files()) == {"Dockerfile", ".dockerignore", "serving.json"}
    lines = instructions(context.dockerfile)
    assert lines[0] == "FROM python:3.12-slim"
    assert 'ARG STRATUS_REQUIREMENT="stratus[sklearn,pandas]==0.9.1"' in lines
    assert 'RUN pip install --only-binary stratus "$STRATUS_REQUIREMENT"' in lines
    assert "RUN " + json.dumps(["python", "-c", INSTALL_CHECK]) in lines
    assert f"COPY serving.json {SPEC_FILE}" in lines
    assert f"COPY model/ {MODEL_DIR}/" in lines
    assert "USER 10001" in lines
    assert "EXPOSE 8080" in lines
    (cmd,) = [line for line in lines if line.startswith("CMD ")]
    assert json.loads(cmd[4:]) == runtime_command()
    assert json.loads(cmd[4:])[:3] == ["python", "-m", "stratus.serving.standalone"]
    (check,) = [line for line in lines if line.startswith("HEALTHCHECK ")]
    assert "/v2/health/ready" in check
    assert StandaloneSpec.model_validate_json(context.spec) == StandaloneSpec(
        model_name="churn", model_version=3, flavor="sklearn", trusted=False, signature=SIGNATURE
    )
    assert context.dockerignore.splitlines()[1:] == [
        "*",
        "!serving.json",
        "!model",
        "!wheels",
    ]


@pytest.mark.parametrize(
    ("flavor", "package"),
    [
        ("onnx", "stratus[onnx]"),
        ("xgboost", "stratus[xgboost]"),
        ("lightgbm", "stratus[lightgbm]"),
        ("mlflow", "stratus[mlflow]"),
        ("python", "stratus[pandas]"),
        ("someday", "stratus"),
    ],
)
def test_each_flavor_gets_its_extras(flavor: str, package: str) -> None:
    context = build_context(version(flavor=flavor), stratus_version="1.0.0")
    assert f'ARG STRATUS_REQUIREMENT="{package}==1.0.0"' in context.dockerfile


def test_a_wheel_replaces_the_package_index_and_more_packages_are_installed() -> None:
    context = build_context(
        version(),
        stratus_version="0.1.0",
        wheel="stratus-0.1.0-py3-none-any.whl",
        packages=["scikit-learn==1.5.2", "pandas>=2"],
    )
    lines = instructions(context.dockerfile)
    assert "COPY wheels/ /tmp/wheels/" in lines
    assert (
        'ARG STRATUS_REQUIREMENT="stratus[sklearn,pandas] @ '
        'file:///tmp/wheels/stratus-0.1.0-py3-none-any.whl"'
    ) in lines
    assert "RUN pip install 'scikit-learn==1.5.2' 'pandas>=2'" in lines


def test_a_trusted_pickle_stays_trusted_in_the_image() -> None:
    trusted = version(
        trusted=True,
        needs_trust=["model.joblib"],
        files=[{"path": "model.joblib", "sha256": "0" * 64, "size": 1, "stored": True}],
    )
    context = build_context(trusted, stratus_version="0.1.0")
    assert StandaloneSpec.model_validate_json(context.spec).trusted is True


@pytest.mark.parametrize(
    ("fields", "error", "words"),
    [
        (
            {"trusted": False, "needs_trust": ["model.joblib"]},
            PermissionDenied,
            "stratus models trust churn:3",
        ),
        ({"state": "pending"}, Conflict, "not committed"),
        (
            {
                "state": "rejected",
                "verdict": {
                    "status": "rejected",
                    "reason": "accuracy 0.71 < 0.8",
                    "source": "gate",
                    "time": NOW,
                },  # fmt: skip
            },
            Conflict,
            "stratus models accept churn:3",
        ),
    ],
)
def test_a_version_the_image_could_not_serve_is_refused(
    fields: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        build_context(version(**fields), stratus_version="0.1.0")


def _installed(root: Path, files: list[str]) -> Path:
    """A site folder holding a `stratus` distribution made of `files`."""
    info = root / "stratus-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stratus\nVersion: 0.1.0\n")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files))
    return root


@pytest.mark.parametrize(
    ("files", "code"),
    [
        (["stratus/__init__.py", "stratus/serving/standalone.py"], 0),
        (["stratus/__init__.py", "stratus/server.py"], 1),  # another project of that name
    ],
)
def test_the_install_check_tells_this_stratus_from_another(
    tmp_path: Path, files: list[str], code: int
) -> None:
    site = _installed(tmp_path / "site", files)
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-S", "-c", INSTALL_CHECK],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code, done.stderr
    if code:
        assert "not the Stratus ML platform" in done.stderr
