"""Exports of what a live platform serves, with the CLI as a user runs it: `stratus export
kubernetes` writes manifests that Kubernetes 1.30's schemas accept and that follow the
endpoint's spec; `stratus export dockerfile` writes a build context whose CMD — run here as the
image would run it, from the context's own files, on a loopback port — answers as the
platform's endpoint does; an untrusted pickle is refused before anything is written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from stratus import __version__
from stratus.client import Client
from stratus.core.errors import NotFound
from stratus.testing import LocalPlatform, free_port, wait_for

pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")
pytest.importorskip("pandas")
kubernetes_validate = pytest.importorskip("kubernetes_validate")
pytest.importorskip("kubernetes")

CliRunner = Callable[..., Any]
ENDPOINT = "iris-api"
READY_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris(as_frame=True)
    model = LogisticRegression(max_iter=1000).fit(data.data, data.target)
    root = tmp_path_factory.mktemp("export-model")
    skops_io.dump(model, root / "model.skops")
    return {"path": root / "model.skops", "frame": data.data}


@pytest.fixture(scope="module")
def project(platform: LocalPlatform, trained: dict[str, Any]) -> str:
    name = f"ex-{uuid.uuid4().hex[:8]}"
    with platform.client() as client:
        client.projects.create(name)
        client.models.push(trained["path"], "iris", project=name, sample=trained["frame"].head(20))
    return name


@pytest.fixture(scope="module")
def served(platform: LocalPlatform, project: str) -> Iterator[str]:
    """iris:1 behind an autoscaled endpoint with a pass-through column and its own batching."""
    with platform.client() as client:
        endpoint = client.endpoints.deploy(
            ENDPOINT,
            "iris:1",
            project=project,
            autoscaling={"min_replicas": 1, "max_replicas": 3, "target_concurrency": 2},
            passthrough=["row_id"],
            max_batch_size=16,
            instance_type="cpu.nano",
            wait=True,
            timeout=READY_TIMEOUT,
        )
        assert endpoint.status.phase == "ready"
        try:
            yield ENDPOINT
        finally:
            try:
                client.endpoints.delete(ENDPOINT, project)
            except NotFound:
                pass


def test_kubernetes_manifests_follow_the_endpoint(
    admin: Client, project: str, served: str, cli: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "iris-api.yaml"
    done = cli("export", "kubernetes", served, "-p", project, "-n", "ml", "-o", str(out))
    assert done.code == 0, done.stderr
    assert f"wrote {out}" in " ".join(done.stderr.split())
    objects = list(yaml.safe_load_all(out.read_text()))
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30", strict=True)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Deployment", "iris-api-main"),
        ("HorizontalPodAutoscaler", "iris-api-main"),
        ("Service", "iris-api"),
    ]
    deployment, hpa, service = objects
    spec = admin.endpoints.get(served, project).spec
    (variant,) = spec.variants
    assert variant.autoscaling is not None
    assert hpa["spec"]["minReplicas"] == variant.autoscaling.min_replicas == 1
    assert hpa["spec"]["maxReplicas"] == variant.autoscaling.max_replicas == 3
    target = hpa["spec"]["metrics"][0]["pods"]["target"]
    assert target == {"type": "AverageValue", "averageValue": "2"}
    assert "replicas" not in deployment["spec"]
    assert deployment["metadata"]["annotations"]["stratus.io/model-version"] == "1"
    assert deployment["metadata"]["annotations"]["stratus.io/endpoint"] == f"{project}/{served}"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "stratus"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "iris:1"
    command = container["command"]
    assert command[:3] == ["python", "-m", "stratus.serving.standalone"]
    assert command[command.index("--name") + 1] == served
    assert command[command.index("--passthrough") + 1] == "row_id"
    assert command[command.index("--max-batch-size") + 1] == "16"
    # cpu.nano from the platform's catalog: half a CPU, half a GiB
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "512Mi"}
    assert all(o["metadata"]["namespace"] == "ml" for o in objects)
    assert service["spec"]["selector"]["app.kubernetes.io/name"] == served


def _dockerfile(path: Path) -> tuple[dict[str, str], list[str]]:
    """The context's COPY sources by their path in the image, and the CMD (exec form)."""
    copies: dict[str, str] = {}
    cmd: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("COPY "):
            source, target = shlex.split(line)[1:]
            copies[target.rstrip("/")] = source.rstrip("/")
        elif line.startswith("CMD "):
            cmd = json.loads(line[4:])
    return copies, cmd


def _as_run_here(cmd: list[str], context: Path, copies: dict[str, str], port: int) -> list[str]:
    """The image's CMD for this machine: this Python, the context's files where the image has
    its copies, loopback and a free port."""
    local = [sys.executable, *cmd[1:]]
    for i, arg in enumerate(local):
        if arg in copies:
            local[i] = str(context / copies[arg])
    local[local.index("--host") + 1] = "127.0.0.1"
    local[local.index("--port") + 1] = str(port)
    return local


@contextlib.contextmanager
def running(command: list[str], log: Path) -> Iterator[str]:
    """The standalone replica started with `command` (already made local), its base URL once
    it answers its readiness probe; stopped with SIGTERM by its PID, which must end it
    cleanly."""
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")},
        )
    base = f"http://127.0.0.1:{command[command.index('--port') + 1]}"

    def ready() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for("the standalone replica to answer its readiness probe", ready, timeout=120)
        yield base
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
    assert process.returncode == 0, log.read_text()  # SIGTERM: a clean stop


@pytest.fixture
def context(project: str, served: str, cli: CliRunner, tmp_path: Path) -> Path:
    """The build context of iris:1, written by `stratus export dockerfile`."""
    folder = tmp_path / "iris-1"
    done = cli("export", "dockerfile", "iris:1", "-p", project, "-o", str(folder))
    assert done.code == 0, done.stderr
    assert f"docker build -t iris:1 {folder}" in " ".join(done.stderr.split())
    return folder


def v2_request(frame: Any, rows: int) -> dict[str, Any]:
    return {
        "id": "same-id",
        "inputs": [
            {
                "name": name,
                "shape": [rows],
                "datatype": "FP64",
                "data": [float(v) for v in frame[name].head(rows)],
            }
            for name in frame.columns
        ],
    }


def test_the_context_holds_the_versions_files_and_pins_this_stratus(
    admin: Client, project: str, context: Path
) -> None:
    assert {p.name for p in context.iterdir()} == {
        "Dockerfile",
        ".dockerignore",
        "serving.json",
        "model",
    }
    version = admin.models.version("iris:1", project)
    for entry in version.files:  # the registry's bytes, as stored
        digest = hashlib.sha256((context / "model" / entry.path).read_bytes()).hexdigest()
        assert digest == entry.sha256
    dockerfile = (context / "Dockerfile").read_text()
    assert f'"stratus[sklearn,pandas]=={__version__}"' in dockerfile
    spec = json.loads((context / "serving.json").read_text())
    assert (spec["model_name"], spec["model_version"], spec["flavor"]) == ("iris", 1, "sklearn")
    assert spec["signature"] == version.signature


def test_the_dockerfiles_command_serves_as_the_endpoint_does(
    admin: Client,
    project: str,
    served: str,
    context: Path,
    trained: dict[str, Any],
    tmp_path: Path,
) -> None:
    copies, cmd = _dockerfile(context / "Dockerfile")
    assert cmd[:3] == ["python", "-m", "stratus.serving.standalone"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"  # as a container listens
    command = _as_run_here(cmd, context, copies, free_port())
    with running(command, tmp_path / "replica.log") as base:
        rows = trained["frame"].head(6).to_dict(orient="records")
        plain = json.dumps({"instances": rows}).encode()
        from_platform = admin.endpoints.predict(served, project=project, body=plain).body
        alone = httpx.post(
            f"{base}/predict", content=plain, headers={"content-type": "application/json"}
        )
        assert alone.status_code == 200, alone.text
        assert alone.json() == from_platform
        assert alone.headers["x-stratus-model-version"] == "1"

        v2 = v2_request(trained["frame"], 3)
        from_platform_v2 = admin.endpoints.predict(
            served, project=project, protocol="v2", body=v2
        ).body
        alone_v2 = httpx.post(f"{base}/v2/models/iris/infer", json=v2)
        assert alone_v2.status_code == 200, alone_v2.text
        answer = alone_v2.json()
        # the same outputs; the image alone answers as the model, the platform as the endpoint
        assert answer["outputs"] == from_platform_v2["outputs"]
        assert answer["id"] == from_platform_v2["id"] == "same-id"
        assert (answer["model_name"], from_platform_v2["model_name"]) == ("iris", served)


def test_the_deployments_command_serves_the_endpoints_very_answers(
    admin: Client,
    project: str,
    served: str,
    context: Path,
    cli: CliRunner,
    trained: dict[str, Any],
    tmp_path: Path,
) -> None:
    """The container command of the exported Deployment, on the image's files: the endpoint's
    name and pass-through column, so the answers are the platform's to the byte."""
    out = tmp_path / "manifests.yaml"
    assert cli("export", "kubernetes", served, "-p", project, "-o", str(out)).code == 0
    (deployment,) = [o for o in yaml.safe_load_all(out.read_text()) if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    copies, _ = _dockerfile(context / "Dockerfile")
    command = _as_run_here(container["command"], context, copies, free_port())
    with running(command, tmp_path / "replica.log") as base:
        rows = trained["frame"].head(4).to_dict(orient="records")
        for i, row in enumerate(rows):
            row["row_id"] = f"r{i}"
        plain = json.dumps({"instances": rows}).encode()
        from_platform = admin.endpoints.predict(served, project=project, body=plain).body
        alone = httpx.post(
            f"{base}/predict", content=plain, headers={"content-type": "application/json"}
        )
        assert alone.status_code == 200, alone.text
        assert alone.json() == from_platform
        assert "r3" in alone.text  # the pass-through column, echoed

        v2 = v2_request(trained["frame"], 2)
        from_platform_v2 = admin.endpoints.predict(
            served, project=project, protocol="v2", body=v2
        ).body
        alone_v2 = httpx.post(f"{base}/v2/models/{served}/infer", json=v2)
        assert alone_v2.status_code == 200, alone_v2.text
        assert alone_v2.json() == from_platform_v2


def test_an_untrusted_pickle_is_not_exported(
    admin: Client, project: str, cli: CliRunner, tmp_path: Path
) -> None:
    import joblib
    from sklearn.dummy import DummyClassifier

    folder = tmp_path / "pickled"
    folder.mkdir()
    joblib.dump(DummyClassifier().fit([[0.0]], [0]), folder / "model.joblib")
    pushed = admin.models.push(folder, "pickled", project=project)
    assert pushed.needs_trust == ["model.joblib"] and not pushed.trusted
    context = tmp_path / "pickled-1"
    done = cli("export", "dockerfile", "pickled:1", "-p", project, "-o", str(context))
    assert done.code == 1, done.stdout
    assert done.stderr.startswith("error: "), done.stderr
    assert "stratus models trust pickled:1" in done.stderr
    assert not context.exists()  # refused before anything was written

    admin.models.update_version("pickled:1", project=project, trusted=True)
    done = cli("export", "dockerfile", "pickled:1", "-p", project, "-o", str(context))
    assert done.code == 0, done.stderr
    assert json.loads((context / "serving.json").read_text())["trusted"] is True
