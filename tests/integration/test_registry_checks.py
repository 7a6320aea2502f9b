"""What a push proves before a version is registered: it loads (in a child process, under
limits; untrusted code never runs), and the dataset version its lineage names exists in the
project."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.client import Client
from stratus.core.errors import Conflict, InvalidInput, NotFound
from stratus.registry.flavors import ModelLoadError
from stratus.testing import LocalPlatform

pytest.importorskip("sklearn")


@pytest.fixture
def project(admin: Client) -> Iterator[str]:
    name = f"chk-{uuid.uuid4().hex[:8]}"
    admin.projects.create(name)
    yield name


def broken(tmp_path: Path, name: str, data: bytes = b"this is not a zip file") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_corrupt_skops_push_is_a_400_and_leaves_no_version(
    admin: Client, platform: LocalPlatform, project: str, tmp_path: Path, tiny_model: Path
) -> None:
    with pytest.raises(ModelLoadError) as refused:
        admin.models.push(broken(tmp_path, "model.skops"), "churn", project=project)
    detail = refused.value.detail
    assert detail.startswith("churn:1 does not load, so it was not registered: ")
    assert "'model.skops'" in detail and "BadZipFile" in detail
    assert platform.home.name not in detail and "Traceback" not in detail
    assert admin.models.versions("churn", project=project) == []
    # the same model's next push, a good one, is ready at once
    good = admin.models.push(tiny_model, "churn", project=project)
    assert good.version == 2 and good.state == "ready"
    assert admin.models.get("churn", project=project).status.latest_version == 2


def test_the_commit_answers_problem_json(
    platform: LocalPlatform, project: str, admin: Client
) -> None:
    bad = b"PK\x03\x04 but no zip"
    admin.models.create("raw", project=project)
    base = f"/api/v1/projects/{project}/models/raw/versions"
    digest = hashlib.sha256(bad).hexdigest()
    body = {"files": [{"path": "model.skops", "sha256": digest, "size": len(bad)}]}
    with httpx.Client(
        base_url=platform.url, headers={"authorization": f"Bearer {platform.api_key}"}
    ) as http:
        assert http.post(base, json=body).status_code == 201
        assert http.put(f"{base}/1/files/model.skops", content=bad).status_code == 200
        refused = http.post(f"{base}/1/commit")
        assert refused.status_code == 400, refused.text
        problem = refused.json()
        assert problem["code"] == "model-load-error" and problem["version"] == 1
        assert "does not load" in problem["detail"]
        assert http.get(f"{base}/1").status_code == 404


def test_a_corrupt_onnx_push_is_refused(admin: Client, project: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model = broken(tmp_path, "model.onnx", b"\x08\x07not a graph")
    with pytest.raises(ModelLoadError, match="the onnx flavor could not load 'model.onnx'"):
        admin.models.push(model, "scorer", project=project)


def test_the_cli_says_why_a_push_was_refused(cli: Any, project: str, tmp_path: Path) -> None:
    pushed = cli("models", "push", str(broken(tmp_path, "model.skops")), "-n", "m", "-p", project)
    assert pushed.code == 1
    assert "m:1 does not load" in pushed.stderr and "Traceback" not in pushed.stderr


def test_untrusted_pickles_are_kept_unloaded_and_checked_when_trusted(
    admin: Client, project: str, tmp_path: Path
) -> None:
    ran = tmp_path / "unpickled"
    folder = tmp_path / "pickled"
    folder.mkdir()
    # a pickle that would leave a file behind if anything unpickled it
    payload = b"cbuiltins\nopen\n(S" + repr(str(ran)).encode() + b"\nS'w'\ntR."  # open(ran, "w")
    (folder / "model.pkl").write_bytes(payload)
    version = admin.models.push(folder, "pickled", project=project)
    assert version.state == "ready" and version.needs_trust == ["model.pkl"]
    assert not ran.exists()  # never loaded untrusted, not even to check it
    # trusting it loads it (in the check's child): it holds no model, so trust is refused
    with pytest.raises(ModelLoadError, match="pickled:1 does not load, so it was not marked"):
        admin.models.update_version("pickled:1", project=project, trusted=True)
    assert not admin.models.version("pickled:1", project=project).trusted


def test_lineage_names_a_dataset_version_of_the_project(
    admin: Client, project: str, tmp_path: Path, tiny_model: Path
) -> None:
    admin.buckets.create("raw-data", project=project)
    with pytest.raises(NotFound) as missing:
        admin.models.push(tiny_model, "lr", project=project, dataset_version="raw-data:1")
    assert missing.value.detail == (
        f"dataset version 'raw-data:1' not found in project {project!r}"
    )
    rows = tmp_path / "train.csv"
    rows.write_text("a,b,y\n0,1,0\n1,0,1\n")
    admin.datasets.push(rows, "train", project=project)
    with pytest.raises(NotFound, match="'train:2' not found"):
        admin.models.push(tiny_model, "lr", project=project, dataset_version="train:2")
    with pytest.raises(InvalidInput, match="NAME:VERSION"):
        admin.models.push(tiny_model, "lr", project=project, dataset_version="train:first")
    exact = admin.models.push(tiny_model, "lr", project=project, dataset_version="train:1")
    assert exact.lineage.dataset_version == "train:1"
    pinned = admin.models.push(tiny_model, "lr", project=project, dataset_version="train")
    assert pinned.lineage.dataset_version == "train:1"  # the newest version, pinned
    # a dataset of another project is not this project's
    other = f"chk-{uuid.uuid4().hex[:8]}"
    admin.projects.create(other)
    with pytest.raises(NotFound, match=f"not found in project {other!r}"):
        admin.models.push(tiny_model, "lr", project=other, dataset_version="train:1")


def test_the_cli_refuses_a_bucket_as_a_dataset_version(
    cli: Any, project: str, tiny_model: Path
) -> None:
    pushed = cli(
        "models", "push", str(tiny_model), "-n", "lr", "-p", project,
        "--dataset-version", "raw-data:1", "-o", "json",
    )  # fmt: skip
    assert pushed.code == 1
    assert f"dataset version 'raw-data:1' not found in project '{project}'" in pushed.stderr


def test_a_pending_version_cannot_be_accepted(
    admin: Client, project: str, tiny_model: Path
) -> None:
    admin.models.push(tiny_model, "ok", project=project)
    with pytest.raises(Conflict, match="ok:1 is ready, not rejected"):
        admin.models.accept("ok:1", "no reason", project=project)
    shown = admin.models.version("ok:1", project=project)
    assert shown.verdict is None and json.loads(shown.model_dump_json())["verdict"] is None
