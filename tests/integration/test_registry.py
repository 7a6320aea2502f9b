"""The model registry end to end: push, dedupe, flavors, trust, aliases and their history,
cards, pulls, and the errors a user meets on the way."""

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
from stratus.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from stratus.testing import LocalPlatform

sklearn = pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A LogisticRegression on the bundled breast-cancer data, saved as skops and as joblib."""
    import joblib
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer(as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(data.data.to_numpy(), data.target.to_numpy())
    root = tmp_path_factory.mktemp("models")
    skops_path = root / "model.skops"
    skops_io.dump(model, skops_path)
    joblib_dir = root / "joblib"
    joblib_dir.mkdir()
    joblib.dump(model, joblib_dir / "model.joblib")
    return {"skops": skops_path, "joblib": joblib_dir, "frame": data.data}


@pytest.fixture
def project(admin: Client) -> Iterator[str]:
    name = uniq("reg")
    admin.projects.create(name)
    yield name


def test_push_a_sklearn_model_with_signature_and_lineage(
    admin: Client, project: str, trained: dict[str, Any], tmp_path: Path
) -> None:
    rows = tmp_path / "breast-cancer.csv"
    trained["frame"].head(50).to_csv(rows, index=False)
    admin.datasets.push(rows, "breast-cancer", project=project)  # breast-cancer:1
    version = admin.models.push(
        trained["skops"],
        "churn",
        project=project,
        sample=trained["frame"].head(20),
        metrics={"auc": 0.97},
        params={"C": 1.0},
        tags={"team": "risk"},
        dataset_version="breast-cancer:1",
        training_run="run-42",
        source_commit="abc123",
        description="first",
        card="# Churn\nA model card.",
    )
    assert version.version == 1 and version.state == "ready"
    assert version.flavor == "sklearn" and version.needs_trust == [] and not version.trusted
    assert [f.path for f in version.files] == ["model.skops"]
    assert version.files[0].sha256 == hashlib.sha256(trained["skops"].read_bytes()).hexdigest()
    signature = version.signature
    assert signature is not None
    assert len(signature["inputs"]) == 30
    assert signature["inputs"][0]["name"] == "mean radius"
    assert version.metrics == {"auc": 0.97} and version.params == {"C": 1.0}
    assert version.lineage.dataset_version == "breast-cancer:1"
    assert version.lineage.training_run == "run-42"
    assert version.lineage.source_commit == "abc123"
    assert admin.models.card("churn:1", project=project).startswith("# Churn")
    model = admin.models.get("churn", project=project)
    assert model.status.versions == 1 and model.status.latest_version == 1


def test_same_bytes_are_stored_once(
    admin: Client, platform: LocalPlatform, project: str, trained: dict[str, Any]
) -> None:
    admin.models.push(trained["skops"], "dedupe", project=project)
    sha = hashlib.sha256(trained["skops"].read_bytes()).hexdigest()
    body = {
        "files": [{"path": "model.skops", "sha256": sha, "size": trained["skops"].stat().st_size}]
    }
    with httpx.Client(
        base_url=platform.url, headers={"authorization": f"Bearer {platform.api_key}"}
    ) as http:
        declared = http.post(f"/api/v1/projects/{project}/models/dedupe/versions", json=body)
        assert declared.status_code == 201, declared.text
        assert declared.json()["files"][0]["stored"] is True  # nothing to upload
        committed = http.post(f"/api/v1/projects/{project}/models/dedupe/versions/2/commit")
        assert committed.status_code == 200, committed.text
        assert committed.json()["state"] == "ready"


def test_pull_returns_the_same_bytes(
    admin: Client, project: str, trained: dict[str, Any], tmp_path: Path
) -> None:
    admin.models.push(trained["joblib"], "pulled", project=project)
    folder = admin.models.pull("pulled:1", tmp_path / "out", project=project)
    assert (folder / "model.joblib").read_bytes() == (
        trained["joblib"] / "model.joblib"
    ).read_bytes()


def test_pickle_needs_an_owner_to_trust_it(
    admin: Client, platform: LocalPlatform, project: str, trained: dict[str, Any]
) -> None:
    version = admin.models.push(trained["joblib"], "pickled", project=project)
    assert version.flavor == "sklearn"
    assert version.needs_trust == ["model.joblib"] and not version.trusted
    editor = uniq("editor")
    admin.users.create(editor, "editor-password")
    admin.projects.set_member(project, "editor", user=editor)
    key = admin.keys.create(user=editor)
    with Client(url=platform.url, api_key=key.secret) as as_editor:
        with pytest.raises(PermissionDenied, match="owners"):
            as_editor.models.update_version("pickled:1", project=project, trusted=True)
        with pytest.raises(PermissionDenied, match="owners"):
            as_editor.models.push(trained["joblib"], "pickled", project=project, trusted=True)
        # an editor may still push it untrusted
        assert as_editor.models.push(trained["joblib"], "pickled", project=project).version == 2
    trusted = admin.models.update_version("pickled:1", project=project, trusted=True)
    assert trusted.trusted


def test_aliases_move_and_keep_their_history(
    admin: Client, project: str, trained: dict[str, Any]
) -> None:
    for _ in range(2):
        admin.models.push(trained["skops"], "aliased", project=project)
    admin.models.set_alias("aliased", "production", 1, project=project, reason="first release")
    assert admin.models.version("aliased@production", project=project).version == 1
    admin.models.set_alias("aliased", "production", 2, project=project, reason="better auc")
    assert admin.models.version("aliased@production", project=project).version == 2
    assert admin.models.get("aliased", project=project).status.aliases == {"production": 2}
    with pytest.raises(Conflict, match="production"):
        admin.models.delete_version("aliased:2", project=project)
    admin.models.delete_alias("aliased", "production", project=project, reason="retired")
    history = admin.models.alias_history("aliased", "production", project=project)
    assert [(e.from_version, e.to_version, e.reason) for e in history] == [
        (2, None, "retired"),
        (1, 2, "better auc"),
        (None, 1, "first release"),
    ]
    assert {e.actor for e in history} == {"user:admin"}
    audit = admin.audit.list(project=project, action="models.aliases.*", limit=10)
    assert [e.action for e in audit][:3] == [
        "models.aliases.delete",
        "models.aliases.set",
        "models.aliases.set",
    ]


@pytest.mark.parametrize("alias", ["latest", "42", "Bad_Name"])
def test_bad_alias_names_are_refused(
    admin: Client, project: str, trained: dict[str, Any], alias: str
) -> None:
    admin.models.push(trained["skops"], "named", project=project)
    with pytest.raises(InvalidInput, match="alias"):
        admin.models.set_alias("named", alias, 1, project=project)


def test_version_references(admin: Client, project: str, trained: dict[str, Any]) -> None:
    for _ in range(3):
        admin.models.push(trained["skops"], "refs", project=project)
    assert admin.models.version("refs", project=project).version == 3
    assert admin.models.version("refs:2", project=project).version == 2
    with pytest.raises(NotFound, match="no version '9'"):
        admin.models.version("refs:9", project=project)
    with pytest.raises(NotFound, match="no version 'nope'"):
        admin.models.version("refs@nope", project=project)
    with pytest.raises(InvalidInput, match="positive number"):
        admin.models.version("refs:x", project=project)


def test_a_push_is_atomic(
    platform: LocalPlatform, project: str, admin: Client, trained: dict[str, Any]
) -> None:
    admin.models.create("atomic", project=project)
    good = trained["skops"].read_bytes()
    body = {
        "files": [
            {"path": "model.skops", "sha256": hashlib.sha256(good).hexdigest(), "size": len(good)}
        ]
    }
    base = f"/api/v1/projects/{project}/models/atomic/versions"
    with httpx.Client(
        base_url=platform.url, headers={"authorization": f"Bearer {platform.api_key}"}
    ) as http:
        assert http.post(base, json=body).status_code == 201
        # not all files uploaded: commit refused, the version stays invisible
        refused = http.post(f"{base}/1/commit")
        assert refused.status_code == 409 and "upload model.skops" in refused.json()["detail"]
        assert http.get(f"{base}/latest").status_code == 404
        # bytes that do not match the declared SHA-256 are refused
        wrong = http.put(f"{base}/1/files/model.skops", content=b"other bytes here")
        assert wrong.status_code == 400
        # a file the version did not declare
        assert http.put(f"{base}/1/files/extra.bin", content=b"x").status_code == 404
        assert http.put(f"{base}/1/files/model.skops", content=good).status_code == 200
        assert http.post(f"{base}/1/commit").json()["state"] == "ready"
        # committed versions are immutable
        again = http.put(f"{base}/1/files/model.skops", content=good)
        assert again.status_code == 409


def test_bad_pushes_are_clear_4xx(platform: LocalPlatform, project: str, admin: Client) -> None:
    admin.models.create("bad", project=project)
    base = f"/api/v1/projects/{project}/models/bad/versions"
    sha = "0" * 64
    cases: list[tuple[dict[str, Any], str]] = [
        ({"files": [{"path": "weights.bin", "sha256": sha, "size": 1}]}, "flavor"),
        ({"files": [{"path": "../x.skops", "sha256": sha, "size": 1}]}, "path"),
        ({"files": [{"path": "m.skops", "sha256": sha, "size": 1}], "flavor": "nope"}, "nope"),
        ({"files": []}, "files"),
        (
            {"files": [{"path": "m.skops", "sha256": sha, "size": 1}], "signature": {"inputs": 3}},
            "signature",
        ),
    ]
    with httpx.Client(
        base_url=platform.url, headers={"authorization": f"Bearer {platform.api_key}"}
    ) as http:
        for body, word in cases:
            response = http.post(base, json=body)
            assert 400 <= response.status_code < 500, (body, response.text)
            assert word in json.dumps(response.json()).lower(), (body, response.text)


def test_models_cli(cli: Any, project: str, trained: dict[str, Any], tmp_path: Path) -> None:
    sample = tmp_path / "sample.csv"
    trained["frame"].head(5).to_csv(sample, index=False)
    card = tmp_path / "CARD.md"
    card.write_text("# Card from the CLI\n")
    pushed = cli(
        "models", "push", str(trained["skops"]), "-n", "clim", "-p", project,
        "--sample", str(sample), "--metric", "auc=0.9", "--alias", "staging",
        "--card", str(card), "-o", "json",
    )  # fmt: skip
    assert pushed.code == 0, pushed.stderr
    assert json.loads(pushed.stdout)["aliases"] == ["staging"]
    listed = cli("models", "list", "-p", project, "-o", "json")
    assert [m["metadata"]["name"] for m in json.loads(listed.stdout)] == ["clim"]
    assert cli("models", "versions", "clim", "-p", project).code == 0
    shown = cli("models", "show", "clim@staging", "-p", project, "-o", "json")
    assert json.loads(shown.stdout)["metrics"] == {"auc": 0.9}
    assert "Card from the CLI" in cli("models", "card", "clim:1", "-p", project).stdout
    moved = cli("models", "alias", "clim:1", "production", "-r", "ship it", "-p", project)
    assert moved.code == 0, moved.stderr
    history = cli("models", "history", "clim", "-p", project, "-o", "json")
    assert [e["reason"] for e in json.loads(history.stdout)][0] == "ship it"
    pulled = cli("models", "pull", "clim:1", str(tmp_path / "pulled"), "-p", project)
    assert pulled.code == 0 and (tmp_path / "pulled" / "model.skops").exists()
    missing = cli("models", "show", "nope", "-p", project)
    assert missing.code == 1 and missing.stderr.startswith("error: model 'nope' not found")
    assert cli("models", "delete", "clim", "-y", "-p", project).code == 1  # has versions
    assert cli("models", "delete", "clim", "-y", "--force", "-p", project).code == 0


def test_model_updates_use_optimistic_concurrency(
    admin: Client, platform: LocalPlatform, project: str
) -> None:
    created = admin.models.create("occ", project=project, description="v1", labels={"a": "1"})
    path = f"/api/v1/projects/{project}/models/occ"
    headers = {"authorization": f"Bearer {platform.api_key}"}
    with httpx.Client(base_url=platform.url, headers=headers) as http:
        first = http.patch(path, json={"description": "v2", "resource_version": 1})
        assert first.status_code == 200 and first.json()["spec"]["description"] == "v2"
        stale = http.patch(path, json={"labels": {"b": "2"}, "resource_version": 1})
        assert stale.status_code == 409
        assert stale.json()["current_resource_version"] == 2
    assert created.metadata.resource_version == 1
    assert admin.models.get("occ", project=project).metadata.labels == {"a": "1"}
    with pytest.raises(Conflict, match="already exists"):
        admin.models.create("occ", project=project)
