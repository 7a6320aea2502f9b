"""Project secrets on a real control plane: set from the CLI (standard input, a file) and the
SDK, versioned, listed and shown without their value, refused when a job or an endpoint names
one that is not set, given to a function's replicas as an environment variable, kept from
other projects, and deleted. (That none reaches a log: test_secrets_in_logs.py.)"""

from __future__ import annotations

import hashlib
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.client import Client
from stratus.errors import InvalidInput, NotFound, PermissionDenied
from stratus.testing import LocalPlatform

VALUE = "s3cret-VALUE-of-the-warehouse"
HANDLER = """
import hashlib, os


def predict(batch):
    digest = hashlib.sha256(os.environ["DB_PASSWORD"].encode()).hexdigest()[:12]
    return [digest] * len(batch)
"""


@pytest.fixture
def project(admin: Client) -> Iterator[str]:
    name = f"sec-{uuid.uuid4().hex[:6]}"
    admin.projects.create(name)
    yield name
    for endpoint in admin.endpoints.list(name):
        admin.endpoints.delete(endpoint.metadata.name, name)
    for model in admin.models.list(name):
        admin.models.delete(model.metadata.name, name, force=True)
    admin.projects.delete(name)


def test_secrets_are_set_versioned_and_never_shown(
    platform: LocalPlatform,
    admin: Client,
    project: str,
    run_cli: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    env = platform.cli_env()
    monkeypatch.setattr("sys.stdin", io.StringIO(VALUE + "\n"))
    done = run_cli("secrets", "set", "WAREHOUSE_TOKEN", "-p", project, "-d", "read only", env=env)
    assert done.code == 0, done.stderr
    assert "WAREHOUSE_TOKEN" in done.stdout and VALUE not in done.stdout
    value_file = tmp_path / "token.txt"
    value_file.write_text(VALUE + "-2\n")
    again = run_cli(
        "secrets", "set", "WAREHOUSE_TOKEN", "-p", project, "--from-file", str(value_file), env=env
    )
    assert again.code == 0, again.stderr

    shown = admin.secrets.get("WAREHOUSE_TOKEN", project)
    assert shown.version == 2 and [v.version for v in shown.versions] == [2, 1]
    assert shown.created_by == "user:admin" and shown.versions[1].description == "read only"
    listed = run_cli("secrets", "list", "-p", project, "-o", "json", env=env)
    assert listed.code == 0 and '"WAREHOUSE_TOKEN"' in listed.stdout
    versions = run_cli("secrets", "show", "WAREHOUSE_TOKEN", "-p", project, env=env)
    assert versions.code == 0 and "user:admin" in versions.stdout
    headers = {"authorization": f"Bearer {platform.api_key}"}
    for path in ("", "/WAREHOUSE_TOKEN"):
        answer = httpx.get(
            f"{platform.url}/api/v1/projects/{project}/secrets{path}", headers=headers
        )
        assert answer.status_code == 200
        assert VALUE not in answer.text

    assert run_cli("secrets", "delete", "WAREHOUSE_TOKEN", "-p", project, env=env).code == 0
    with pytest.raises(NotFound, match="secret 'WAREHOUSE_TOKEN' not found"):
        admin.secrets.get("WAREHOUSE_TOKEN", project)


def test_bad_secrets_are_refused_with_the_reason(admin: Client, project: str) -> None:
    with pytest.raises(InvalidInput, match="not a secret name"):
        admin.secrets.set("1-bad-name", "x", project=project)
    with pytest.raises(InvalidInput, match="cannot be empty"):
        admin.secrets.set("EMPTY", "", project=project)
    with pytest.raises(InvalidInput, match="at most 65536 bytes"):
        admin.secrets.set("HUGE", "x" * 70_000, project=project)
    with pytest.raises(InvalidInput, match=f"project '{project}' has no secret MISSING"):
        admin.jobs.run(
            trainer={"estimator": "sklearn.linear_model.LogisticRegression", "label": "y"},
            dataset="nothing",
            secrets=["MISSING"],
            project=project,
        )
    admin.secrets.set("TOKEN", "v", project=project)
    with pytest.raises(InvalidInput, match="given both in env and as a secret"):
        admin.jobs.run(
            trainer={"estimator": "sklearn.linear_model.LogisticRegression", "label": "y"},
            dataset="nothing",
            env={"TOKEN": "plain"},
            secrets=["TOKEN"],
            project=project,
        )


def test_a_viewer_sees_names_but_sets_nothing(
    platform: LocalPlatform, admin: Client, project: str
) -> None:
    admin.secrets.set("TOKEN", VALUE, project=project)
    name = f"viewer-{uuid.uuid4().hex[:4]}"
    admin.users.create(name)
    admin.projects.set_member(project, "viewer", user=name)
    key = admin.keys.create("v", user=name)
    with Client(platform.url, key.secret) as viewer:
        assert [s.name for s in viewer.secrets.list(project)] == ["TOKEN"]
        with pytest.raises(PermissionDenied):
            viewer.secrets.set("TOKEN", "overwritten", project=project)
        with pytest.raises(NotFound):  # another project's secrets are not even there
            viewer.secrets.list("default")


def test_a_function_replica_gets_the_secret_it_names(
    platform: LocalPlatform, admin: Client, project: str, tmp_path: Path
) -> None:
    admin.secrets.set("db_pass", VALUE, project=project)
    handler = tmp_path / "handler.py"
    handler.write_text(textwrap.dedent(HANDLER))
    admin.functions.deploy("reader", handler, project=project)
    with pytest.raises(InvalidInput, match="has no secret nope"):
        admin.endpoints.update("reader", project=project, secrets=["DB_PASSWORD=nope"])
    admin.endpoints.update("reader", project=project, secrets=["DB_PASSWORD=db_pass"])
    answer = httpx.post(
        f"{platform.url}/inference/{project}/reader/predict",
        json={"instances": [{"x": 1.0}]},
        headers={"authorization": f"Bearer {platform.api_key}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == [hashlib.sha256(VALUE.encode()).hexdigest()[:12]]
    assert admin.endpoints.get("reader", project).spec.secrets == ["DB_PASSWORD=db_pass"]
