"""The retraining loop, end to end, with the worked example (examples/churn) as the README's tour
runs it: the churn pipeline deploys churn-api; capture, the drift monitor, the webhook channel,
the alert rule and the retrain pipeline are applied from the example's files; traffic after a
price change drifts; the drift alert fires and reaches the webhook; the retrain pipeline trains
on the newest live data, passes the gate, canaries the new model under that traffic and
promotes it; the alert resolves; and the audit log tells the story in order."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus import testing
from stratus.client import Client
from stratus.client._base import read_yaml
from stratus.pipelines.schemas import RunState, TriggerKind
from stratus.testing import LocalPlatform, WebhookReceiver

pd = pytest.importorskip("pandas")
pytest.importorskip("sklearn")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "churn"
TIMEOUT = 300.0


def wait_for(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    return testing.wait_for(what, check, timeout, interval=0.5)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location("churn_data", EXAMPLE / "make_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("loop-data")
    module.main(out)
    return out


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    platform = LocalPlatform(
        tmp_path_factory.mktemp("loop-home"),
        env={
            "STRATUS_COMPUTE_CAPACITY_VCPUS": "2",
            "STRATUS_COMPUTE_SCHEDULER_INTERVAL_SECONDS": "0.3",
            "STRATUS_MONITORING_CAPTURE_FLUSH_SECONDS": "0.3",
            "STRATUS_MONITORING_INTERVAL_SECONDS": "0.5",
            "STRATUS_MONITORING_ALERT_INTERVAL_SECONDS": "0.5",
        },
    )
    platform.start()
    try:
        yield platform
    finally:
        platform.stop(timeout=60)


class Traffic:
    """Requests to churn-api from a thread until stopped (bounded in count and time)."""

    def __init__(self, client: Client, project: str, rows: list[dict[str, Any]]) -> None:
        self.url = f"{client.url}/inference/{project}/churn-api/predict"
        self.headers = {"authorization": f"Bearer {client.api_key}"}
        self.rows = rows
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._send, daemon=True)

    def _send(self) -> None:
        deadline = time.monotonic() + 2 * TIMEOUT
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set() and self.sent < 30_000 and time.monotonic() < deadline:
                start = self.sent * 5
                batch = [self.rows[(start + i) % len(self.rows)] for i in range(5)]
                try:
                    http.post(self.url, json={"instances": batch}, headers=self.headers)
                except httpx.HTTPError:
                    pass
                self.sent += 1
                time.sleep(0.03)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_drift_fires_an_alert_that_retrains_and_rolls_out_a_better_model(
    platform: LocalPlatform, data_dir: Path
) -> None:
    project = f"loop-{uuid.uuid4().hex[:6]}"
    with platform.client() as client, WebhookReceiver() as hook:
        _loop(client, project, data_dir, hook)


def _loop(client: Client, project: str, data: Path, hook: WebhookReceiver) -> None:
    client.projects.create(project)
    tags = {"churned": ["label"], "customer_id": ["id"]}
    client.datasets.push(data / "train.csv", "churn", project=project, column_tags=tags)
    client.datasets.push(data / "holdout.csv", "churn-holdout", project=project)
    client.pipelines.apply(EXAMPLE / "pipeline.yaml", project)
    first = client.pipelines.run("churn", project)
    done = client.pipelines.wait("churn", first.number, project, timeout=TIMEOUT)
    assert done.state == RunState.succeeded, done.message
    assert client.models.version("churn@production", project=project).version == 1

    # the monitoring of the tour, from the example's files
    client.endpoints.update("churn-api", project=project, capture={"sample": 1.0})
    monitor = read_yaml(EXAMPLE / "monitor.yaml")
    client.monitors.apply({**monitor, "interval_seconds": 5}, project=project)
    channel = read_yaml(EXAMPLE / "channel.yaml")
    client.alerts.channels.apply(project, **{**channel, "url": f"{hook.url}/alerts"})
    client.alerts.apply_file(EXAMPLE / "alerts.yaml", project)
    client.datasets.push(data / "live.csv", "churn-live", project=project, column_tags=tags)
    client.datasets.push(data / "live-holdout.csv", "churn-live-holdout", project=project)
    client.pipelines.apply(EXAMPLE / "retrain.yaml", project)

    repriced = pd.read_csv(data / "requests-repriced.csv").to_dict(orient="records")
    with Traffic(client, project, repriced) as traffic:
        fired = wait_for(
            "the drift alert",
            lambda: client.alerts.history(project, rule="churn-drift", state="firing"),
        )
        assert fired[0].labels["endpoint"] == "churn-api"
        notified = wait_for("the webhook", lambda: hook.bodies())
        assert notified[0]["status"] == "firing"
        assert notified[0]["alerts"][0]["labels"]["alertname"] == "churn-drift"
        result = client.monitors.results("churn-drift", project=project)[0]
        assert result.alarm and result.reference == "churn:1"

        run = wait_for("the retrain run", lambda: client.pipelines.runs("churn-retrain", project))[
            0
        ]
        assert run.trigger == TriggerKind.alert
        assert run.datasets == {"churn-live": 1, "churn-live-holdout": 1}
        finished = client.pipelines.wait("churn-retrain", run.number, project, timeout=TIMEOUT)
        assert finished.state == RunState.succeeded, finished.message
        assert traffic.sent > 0
    deploy = {s.name: s for s in finished.steps}["deploy"]
    assert deploy.outputs["verdict"] == "promote"
    gate = {s.name: s for s in finished.steps}["gate"]
    assert gate.outputs["passed"]
    served = client.endpoints.get("churn-api", project=project).spec.variants
    assert [(v.name, v.version) for v in served] == [("main", 2)]
    assert client.models.version("churn@production", project=project).version == 2
    assert client.models.version("churn:2", project=project).lineage.dataset_version == (
        "churn-live:1"
    )
    # the new model was trained on the traffic's population: the drift goes, the alert resolves
    try:
        wait_for(
            "the alert to resolve",
            lambda: client.alerts.history(project, rule="churn-drift", state="resolved"),
            timeout=60,
        )
    except AssertionError as exc:
        status = client.monitors.get("churn-drift", project).status
        last = client.monitors.results("churn-drift", project=project)[0]
        raise AssertionError(
            f"not resolved: {status} {last.reference} {last.report.get('features')}"
        ) from exc

    story = [
        (e.action, e.actor)
        for e in client.audit.list(project=project, order="asc", limit=1000)
        if e.action
        in (
            "alerts.firing",
            "pipelines.run.start",
            "endpoints.canary",
            "endpoints.promote",
            "pipelines.run.succeeded",
            "alerts.resolved",
        )
        and (e.actor != "pipeline:churn" or e.action == "alerts.firing")
    ]
    assert story[:5] == [
        ("alerts.firing", "system:alerts"),
        ("pipelines.run.start", "pipeline:churn-retrain"),
        ("endpoints.canary", "pipeline:churn-retrain"),
        ("endpoints.promote", "pipeline:churn-retrain"),
        ("pipelines.run.succeeded", "pipeline:churn-retrain"),
    ] or story[:5] == [  # the alert may resolve between the promotion and the run's end
        ("alerts.firing", "system:alerts"),
        ("pipelines.run.start", "pipeline:churn-retrain"),
        ("endpoints.canary", "pipeline:churn-retrain"),
        ("endpoints.promote", "pipeline:churn-retrain"),
        ("alerts.resolved", "system:alerts"),
    ], story
    assert ("alerts.resolved", "system:alerts") in story[4:]
