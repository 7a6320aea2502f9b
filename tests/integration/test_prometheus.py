"""Stratus with a real Prometheus: the rule file `stratus export prometheus-rules` writes
passes `promtool check rules`; a real `prometheus` process scrapes a running platform's
/metrics (with an admin key), its query API reads the inference and replica series back,
and the exported rules fire inside Prometheus itself. And the other direction: Alertmanager's
webhook payload drives Stratus (history, idempotency, and the alert reaching pipelines)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from stratus.client import Client
from stratus.testing import LocalPlatform, free_port

pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")

PROMETHEUS_WAIT = 60.0


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    platform = LocalPlatform(
        tmp_path_factory.mktemp("prometheus-home"),
        env={"STRATUS_MONITORING_ALERT_INTERVAL_SECONDS": "0.5"},
    )
    platform.start()
    try:
        yield platform
    finally:
        platform.stop(timeout=60)


@pytest.fixture(scope="module")
def sdk(platform: LocalPlatform) -> Iterator[Client]:
    with platform.client() as client:
        yield client


@pytest.fixture(scope="module")
def endpoint(sdk: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A served LogisticRegression in the default project."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    data = load_breast_cancer(as_frame=True)
    path = tmp_path_factory.mktemp("prometheus-model") / "model.skops"
    skops_io.dump(LogisticRegression(max_iter=5000).fit(data.data, data.target), path)
    sdk.models.push(path, "cancer", sample=data.data.head(20))
    name = f"prom-{uuid.uuid4().hex[:6]}"
    sdk.endpoints.deploy(name, "cancer:1", replicas=1, wait=True, timeout=120)
    try:
        yield name
    finally:
        sdk.endpoints.delete(name)


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (make system-deps installs Debian's prometheus)")
    return found


def export_rules(cli: Any, sdk: Client, endpoint: str, target: Path) -> None:
    sdk.alerts.apply(
        "default",
        name=f"{endpoint}-serving",
        metric="stratus_endpoint_replicas",
        match={"endpoint": endpoint, "phase": "ready"},
        comparison=">=",
        threshold=1,
        severity="info",
        labels={"team": "ml"},
        summary="{labels[endpoint]} serves with {value} replica(s) (>= {threshold})",
        description="a rule that holds while the endpoint serves",
    )
    sdk.alerts.apply(
        "default",
        name=f"{endpoint}-errors",
        metric="stratus_endpoint_error_ratio",
        match={"endpoint": endpoint},
        threshold=0.05,
        for_seconds=90,
        severity="critical",
        summary="errors at {value:.3f}",
    )
    written = cli("export", "prometheus-rules", "-p", "default", "-o", str(target))
    assert written.code == 0, written.stderr


def test_promtool_accepts_the_exported_rules(
    cli: Any, sdk: Client, endpoint: str, tmp_path: Path
) -> None:
    promtool = tool("promtool")
    rules = tmp_path / "stratus-rules.yml"
    export_rules(cli, sdk, endpoint, rules)
    document = yaml.safe_load(rules.read_text())
    names = {r["alert"] for r in document["groups"][0]["rules"]}
    assert {f"{endpoint}-serving", f"{endpoint}-errors"} <= names
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    broken = tmp_path / "broken.yml"
    broken.write_text(rules.read_text().replace(" >= 1", " >=>= 1"))
    refused = subprocess.run([promtool, "check", "rules", str(broken)], capture_output=True)
    assert refused.returncode != 0  # promtool does check the expressions


def query(base: str, expr: str) -> list[dict[str, Any]]:
    try:
        response = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5)
    except httpx.TransportError:
        return []
    if response.status_code != 200:
        return []
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def wait_for_series(base: str, expr: str, process: subprocess.Popen[bytes]) -> list[Any]:
    deadline = time.monotonic() + PROMETHEUS_WAIT
    while time.monotonic() < deadline:
        assert process.poll() is None, "prometheus exited"
        found = query(base, expr)
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"prometheus never returned {expr}")


def test_a_real_prometheus_scrapes_the_platform(
    cli: Any, sdk: Client, endpoint: str, platform: LocalPlatform, tmp_path: Path
) -> None:
    prometheus = tool("prometheus")
    rules = tmp_path / "rules.yml"
    export_rules(cli, sdk, endpoint, rules)
    # Prometheus scrapes with the metrics-reader role of a service account: no admin key
    account = f"prometheus-{uuid.uuid4().hex[:6]}"
    sdk.service_accounts.create(account, project="default", role="metrics-reader")
    scrape_key = sdk.service_accounts.create_key(account, project="default")
    key_file = tmp_path / "stratus-key"
    key_file.write_text(scrape_key.secret)
    key_file.chmod(0o600)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {
                        "job_name": "stratus",
                        "metrics_path": "/metrics",
                        "authorization": {"type": "Bearer", "credentials_file": str(key_file)},
                        "static_configs": [{"targets": [f"127.0.0.1:{platform.port}"]}],
                    }
                ],
            }
        )
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        for _ in range(5):
            sdk.endpoints.predict(endpoint, [[0.0] * 30])
        requests = wait_for_series(
            base, f'stratus_inference_requests_total{{endpoint="{endpoint}"}}', process
        )
        assert requests[0]["metric"]["project"] == "default"
        assert requests[0]["metric"]["code"] == "200"
        assert float(requests[0]["value"][1]) >= 5
        replicas = wait_for_series(
            base, f'stratus_endpoint_replicas{{endpoint="{endpoint}",phase="ready"}}', process
        )
        assert float(replicas[0]["value"][1]) == 1
        rate = wait_for_series(
            base, f'stratus_endpoint_request_rate{{endpoint="{endpoint}"}}', process
        )
        assert rate[0]["metric"]["variant"] == "main"
        # the exported rule is evaluated by Prometheus itself, and fires
        alerts = wait_for_series(
            base, f'ALERTS{{alertname="{endpoint}-serving",alertstate="firing"}}', process
        )
        assert alerts[0]["metric"]["severity"] == "info"
        assert alerts[0]["metric"]["team"] == "ml"
        targets = httpx.get(f"{base}/api/v1/targets", timeout=5).json()["data"]
        assert [t["health"] for t in targets["activeTargets"]] == ["up"]
    finally:
        process.kill()
        process.wait(10)
        log.close()


# --- Alertmanager drives Stratus -------------------------------------------------------------


def alertmanager_payload(status: str, alertname: str, fingerprint: str) -> dict[str, Any]:
    """What Alertmanager 0.2x's webhook_configs POST (version 4)."""
    labels = {
        "alertname": alertname,
        "endpoint": "churn",
        "instance": "127.0.0.1:8700",
        "job": "stratus",
        "project": "default",
        "severity": "critical",
    }
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "churn answers too many errors", "value": "0.12"},
        "startsAt": "2026-11-27T20:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-27T20:09:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=stratus_endpoint_error_ratio",
        "fingerprint": fingerprint,
    }
    return {
        "receiver": "stratus",
        "status": status,
        "alerts": [alert],
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels,
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}"}}',
        "truncatedAlerts": 0,
    }


def test_the_alertmanager_receiver(platform: LocalPlatform, sdk: Client) -> None:
    project = f"am-{uuid.uuid4().hex[:6]}"
    sdk.projects.create(project)
    sdk.alerts.apply(
        project, name="churn-errors", metric="stratus_endpoint_error_ratio", threshold=0.05
    )
    url = f"{platform.url}/api/v1/projects/{project}/alerts/alertmanager"
    headers = {"authorization": f"Bearer {platform.api_key}"}
    firing = alertmanager_payload("firing", "churn-errors", "4a5b6c7d8e9f0a1b")
    first = httpx.post(url, json=firing, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "received": 1, "fired": 1, "resolved": 0, "duplicates": 0, "rules": ["churn-errors"],
    }  # fmt: skip
    again = httpx.post(url, json=firing, headers=headers)  # repeat_interval resends it
    assert again.json()["fired"] == 0 and again.json()["duplicates"] == 1
    resolved = httpx.post(
        url, json=alertmanager_payload("resolved", "churn-errors", "4a5b6c7d8e9f0a1b"),
        headers=headers,
    )  # fmt: skip
    assert resolved.json()["resolved"] == 1
    history = sdk.alerts.history(project, rule="churn-errors")
    assert [(e.state, e.source, e.value) for e in history] == [
        ("resolved", "alertmanager", 0.12),
        ("firing", "alertmanager", 0.12),
    ]
    assert history[1].labels["endpoint"] == "churn"
    assert history[1].summary == "churn answers too many errors"
    # an alert with no Stratus rule of its name is kept too (a pipeline may listen for it)
    unknown = httpx.post(
        url, json=alertmanager_payload("firing", "DiskFull", "0f0f"), headers=headers
    )
    assert unknown.json()["fired"] == 1 and unknown.json()["rules"] == []

    # bad payloads are 4xx that say what is wrong
    no_name = json.loads(json.dumps(firing))
    del no_name["alerts"][0]["labels"]["alertname"]
    refused = httpx.post(url, json=no_name, headers=headers)
    assert refused.status_code == 422 and "alertname" in refused.json()["detail"]
    old = {**firing, "version": "3"}
    refused = httpx.post(url, json=old, headers=headers)
    assert refused.status_code == 422 and "version" in refused.json()["detail"]
    not_json = httpx.post(
        url, content=b"{", headers={**headers, "content-type": "application/json"}
    )
    assert 400 <= not_json.status_code < 500
    assert httpx.post(url, json=firing).status_code == 401
