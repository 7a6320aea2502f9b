"""Alerts end to end, as a user drives them: rules and channels through the API, SDK and CLI
(with 4xx that name the field), a rule on a real endpoint's replicas that fires and resolves,
notifications reaching a local webhook server (generic and Slack-shaped) and a local SMTP
server, test notifications, history, and secrets that no read ever returns."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus import testing
from stratus.client import Client
from stratus.core.errors import Conflict, InvalidInput, NotFound
from stratus.monitoring.alert_schemas import AlertEventRead
from stratus.testing import LocalPlatform, WebhookReceiver, free_port

pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")
aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")

WAIT = 90.0
SECRET = "s3cret-header-value"
PASSWORD = "smtp-pa55word"


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    return testing.wait_for(what, check, timeout)


# --- local receivers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def webhooks() -> Iterator[WebhookReceiver]:
    """A webhook receiver on 127.0.0.1: 200 for every path but /broken, which answers 500."""
    with WebhookReceiver(answer=lambda path: (500 if path == "/broken" else 200, b"")) as hooks:
        yield hooks


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[Any] = field(default_factory=list)


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    """aiosmtpd's SMTP server on 127.0.0.1 (a thread), keeping every message."""
    from email import message_from_bytes
    from email.policy import default

    box = Mailbox(host="127.0.0.1", port=0)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            box.messages.append(message_from_bytes(envelope.content, policy=default))
            return "250 OK"

    box.port = free_port()
    controller = aiosmtpd_controller.Controller(Handler(), hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


# --- the platform ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    platform = LocalPlatform(
        tmp_path_factory.mktemp("alerts-home"),
        env={
            "STRATUS_MONITORING_ALERT_INTERVAL_SECONDS": "0.3",
            "STRATUS_MONITORING_NOTIFICATION_TIMEOUT_SECONDS": "5",
        },
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
def model(sdk: Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    data = load_breast_cancer(as_frame=True)
    path = tmp_path_factory.mktemp("alerts-model") / "model.skops"
    skops_io.dump(LogisticRegression(max_iter=5000).fit(data.data, data.target), path)
    sdk.models.push(path, "cancer", sample=data.data.head(20))
    return "cancer:1"


def project_of(sdk: Client) -> str:
    name = f"al-{uuid.uuid4().hex[:6]}"
    sdk.projects.create(name)
    return name


def events(sdk: Client, project: str, rule: str, state: str) -> list[AlertEventRead]:
    return sdk.alerts.history(project, rule=rule, state=state)


# --- CRUD and validation ---------------------------------------------------------------------


def test_rules_and_channels_crud_with_errors_that_name_the_field(
    sdk: Client, platform: LocalPlatform, webhooks: WebhookReceiver
) -> None:
    project = project_of(sdk)
    http = httpx.Client(
        base_url=f"{platform.url}/api/v1/projects/{project}",
        headers={"authorization": f"Bearer {platform.api_key}"},
    )
    with http:
        missing_url = http.put("/notification-channels", json={"name": "c", "type": "webhook"})
        assert missing_url.status_code == 422
        assert "url" in missing_url.json()["detail"]
        bad_scheme = http.put(
            "/notification-channels", json={"name": "c", "type": "slack", "url": "ftp://x/y"}
        )
        assert bad_scheme.status_code == 422 and "url" in bad_scheme.json()["detail"]
        no_to = http.put(
            "/notification-channels",
            json={"name": "m", "type": "email", "sender": "a@b.io", "smtp_host": "localhost"},
        )
        assert no_to.status_code == 422 and "to" in no_to.json()["detail"]
        created = http.put(
            "/notification-channels",
            json={"name": "hook", "type": "webhook", "url": f"{webhooks.url}/crud"},
        )
        assert created.status_code == 201, created.text
        again = http.put(
            "/notification-channels",
            json={"name": "hook", "type": "webhook", "url": f"{webhooks.url}/crud"},
        )
        assert again.status_code == 200

        rule = {"name": "r1", "metric": "stratus_endpoint_error_ratio", "threshold": 0.1}
        for change, field_name in (
            ({"metric": "bad metric"}, "metric"),
            ({"comparison": "=>"}, "comparison"),
            ({"for_seconds": -1}, "for_seconds"),
            ({"severity": "page"}, "severity"),
            ({"summary": "{value.__class__}"}, "summary"),
            ({"match": {"bad-label": "x"}}, "match"),
            ({"name": "Not A Name"}, "name"),
        ):
            response = http.put("/alert-rules", json={**rule, **change})
            assert response.status_code == 422, (change, response.text)
            assert field_name in response.json()["detail"], (change, response.json())
        unknown = http.put("/alert-rules", json={**rule, "channels": ["nope"]})
        assert unknown.status_code == 400
        assert "'nope'" in unknown.json()["detail"] and "channels" in unknown.json()["detail"]
        assert http.put("/alert-rules", json={**rule, "channels": ["hook"]}).status_code == 201
        replaced = http.put("/alert-rules", json={**rule, "threshold": 0.2, "channels": ["hook"]})
        assert replaced.status_code == 200
        missing = http.post("/alert-rules/none/test")
        assert missing.status_code == 404
        bad_page = http.get("/alert-events", params={"state": "exploded"})
        assert bad_page.status_code == 422 and "state" in bad_page.json()["detail"]

    listed = sdk.alerts.list(project)
    assert [r.metadata.name for r in listed] == ["r1"]
    assert listed[0].spec.threshold == 0.2
    assert sdk.alerts.get("r1", project).spec.channels == ["hook"]
    with pytest.raises(Conflict, match="used by alert rules \\(r1\\)"):
        sdk.alerts.channels.delete("hook", project)
    sdk.alerts.delete("r1", project)
    with pytest.raises(NotFound):
        sdk.alerts.get("r1", project)
    sdk.alerts.channels.delete("hook", project)
    assert sdk.alerts.channels.list(project) == []
    with pytest.raises(InvalidInput, match="unknown placeholder"):
        sdk.alerts.apply(project, name="r2", metric="m", threshold=1, summary="{nope}")


def test_secrets_are_never_returned(sdk: Client, platform: LocalPlatform) -> None:
    project = project_of(sdk)
    sdk.alerts.channels.apply(
        project, name="hook", type="webhook", url="https://example.com/in?token=qu3ry-s3cret",
        headers={"Authorization": f"Bearer {SECRET}"},
    )  # fmt: skip
    sdk.alerts.channels.apply(
        project, name="chat", type="slack", url="https://hooks.slack.com/services/T/B/sl4ck-s3cret"
    )
    sdk.alerts.channels.apply(
        project, name="mail", type="email", to=["oncall@example.com"], sender="s@example.com",
        smtp_host="127.0.0.1", username="stratus", password=PASSWORD,
    )  # fmt: skip
    headers = {"authorization": f"Bearer {platform.api_key}"}
    base = f"{platform.url}/api/v1/projects/{project}/notification-channels"
    texts = [httpx.get(base, headers=headers).text]
    texts += [
        httpx.get(f"{base}/{name}", headers=headers).text for name in ("hook", "chat", "mail")
    ]
    texts.append(json.dumps([a.model_dump(mode="json") for a in sdk.audit.list(project=project)]))
    for text in texts:
        for secret in (SECRET, PASSWORD, "qu3ry-s3cret", "sl4ck-s3cret"):
            assert secret not in text
    hook = sdk.alerts.channels.get("hook", project)
    assert hook.spec.headers == {"Authorization": "****"}
    assert sdk.alerts.channels.get("mail", project).spec.password == "****"
    assert "****" in (sdk.alerts.channels.get("chat", project).spec.url or "")


# --- a rule on a real endpoint ---------------------------------------------------------------


def test_a_rule_on_a_real_endpoint_fires_notifies_everywhere_and_resolves(
    sdk: Client, model: str, webhooks: WebhookReceiver, mailbox: Mailbox, platform: LocalPlatform
) -> None:
    project = "default"  # where the model is
    endpoint = f"ep-{uuid.uuid4().hex[:6]}"
    sdk.endpoints.deploy(endpoint, model, replicas=1, wait=True, timeout=WAIT)
    sdk.alerts.channels.apply(
        project, name=f"{endpoint}-hook", type="webhook", url=f"{webhooks.url}/{endpoint}/hook",
        headers={"X-Token": SECRET},
    )  # fmt: skip
    sdk.alerts.channels.apply(
        project, name=f"{endpoint}-chat", type="slack", url=f"{webhooks.url}/{endpoint}/slack"
    )
    sdk.alerts.channels.apply(
        project, name=f"{endpoint}-mail", type="email", to=["oncall@example.com"],
        sender="stratus@example.com", smtp_host=mailbox.host, smtp_port=mailbox.port,
        starttls=False,
    )  # fmt: skip
    rule = f"{endpoint}-up"
    sdk.alerts.apply(
        project,
        name=rule,
        metric="stratus_endpoint_replicas",
        match={"endpoint": endpoint, "phase": "ready"},
        comparison=">=",
        threshold=1,
        severity="info",
        labels={"team": "ml"},
        summary="{labels[endpoint]} has {value:g} ready replica(s)",
        channels=[f"{endpoint}-hook", f"{endpoint}-chat", f"{endpoint}-mail"],
    )
    fired = wait_for("the rule to fire", lambda: events(sdk, project, rule, "firing"))
    assert fired[0].labels["endpoint"] == endpoint and fired[0].value == 1.0
    assert sdk.alerts.get(rule, project).status.state == "firing"

    hook = wait_for("the webhook", lambda: webhooks.bodies(f"/{endpoint}/hook"))[0]
    assert hook["version"] == "4" and hook["status"] == "firing"
    assert hook["alerts"][0]["labels"]["alertname"] == rule
    assert hook["alerts"][0]["labels"]["team"] == "ml"
    assert hook["alerts"][0]["annotations"]["summary"] == f"{endpoint} has 1 ready replica(s)"
    assert hook["stratus"]["metric"] == "stratus_endpoint_replicas"
    sent_headers = webhooks.wait_for(path=f"/{endpoint}/hook")[0].headers
    assert sent_headers["X-Token"] == SECRET
    slack = wait_for("the Slack message", lambda: webhooks.bodies(f"/{endpoint}/slack"))[0]
    assert set(slack) == {"text", "blocks"} and rule in slack["text"]
    mail = wait_for("the email", lambda: [m for m in mailbox.messages if rule in m["Subject"]])[0]
    assert mail["Subject"] == f"[FIRING:info] {rule} — {endpoint} has 1 ready replica(s)"
    assert "stratus_endpoint_replicas = 1 (>= 1)" in mail.get_content()
    recorded = wait_for(
        "the notification results",
        lambda: [e for e in events(sdk, project, rule, "firing") if len(e.notifications) == 3],
    )[0]
    assert all(n.ok for n in recorded.notifications), recorded.notifications

    # traffic shows in the rolling gauges rules use
    for _ in range(5):
        sdk.endpoints.predict(endpoint, [[0.0] * 30])
    metrics = httpx.get(
        f"{platform.url}/metrics", headers={"authorization": f"Bearer {platform.api_key}"}
    ).text
    rate_line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("stratus_endpoint_request_rate{") and f'endpoint="{endpoint}"' in line
    )
    assert float(rate_line.rsplit(" ", 1)[1]) > 0
    assert "stratus_endpoint_error_ratio{" in metrics
    assert "stratus_endpoint_latency_p95_seconds{" in metrics
    assert "stratus_jobs{" in metrics or "# TYPE stratus_jobs gauge" in metrics

    # no ready replica: the condition stops holding, the alert resolves and says so
    sdk.endpoints.deploy(endpoint, model, replicas=0)
    resolved = wait_for("the rule to resolve", lambda: events(sdk, project, rule, "resolved"))
    assert resolved[0].value == 0.0
    assert sdk.alerts.get(rule, project).status.state == "inactive"
    wait_for(
        "the resolved webhook",
        lambda: [b for b in webhooks.bodies(f"/{endpoint}/hook") if b["status"] == "resolved"],
    )
    wait_for(
        "the resolved email",
        lambda: [m for m in mailbox.messages if m["Subject"].startswith(f"[RESOLVED:info] {rule}")],
    )
    audit = sdk.audit.list(project=project, actor="system:alerts")
    actions = {(a.action, a.resource) for a in audit}
    resource = f"/api/v1/projects/{project}/alert-rules/{rule}"
    assert {("alerts.firing", resource), ("alerts.resolved", resource)} <= actions
    sdk.endpoints.delete(endpoint)


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_apply_list_show_history_test(
    cli: Any, sdk: Client, webhooks: WebhookReceiver, tmp_path: Path
) -> None:
    project = project_of(sdk)
    channels = tmp_path / "channels.yaml"
    channels.write_text(
        f"""
channels:
  - name: ok-hook
    type: webhook
    url: {webhooks.url}/{project}/ok
    headers: {{Authorization: Bearer {SECRET}}}
  - name: bad-hook
    type: webhook
    url: {webhooks.url}/broken
"""
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        """
rules:
  - name: always
    metric: stratus_jobs
    comparison: ">="
    threshold: 0
    channels: [ok-hook]
  - name: noisy
    metric: stratus_endpoint_error_ratio
    match: {endpoint: churn}
    threshold: 0.05
    for_seconds: 60
    severity: critical
    channels: [ok-hook, bad-hook]
"""
    )
    applied = cli("alerts", "channels", "apply", "-f", str(channels), "-p", project)
    assert applied.code == 0, applied.stderr
    assert "ok-hook" in applied.stdout and SECRET not in applied.stdout
    applied = cli("alerts", "apply", "-f", str(rules), "-p", project)
    assert applied.code == 0, applied.stderr
    assert "always" in applied.stdout and "noisy" in applied.stdout

    listed = cli("alerts", "list", "-p", project, "-o", "json")
    assert listed.code == 0
    assert [r["metadata"]["name"] for r in json.loads(listed.stdout)] == ["always", "noisy"]
    table = cli("alerts", "list", "-p", project)
    assert 'stratus_endpoint_error_ratio{endpoint="churn"} > 0.05 for 60s' in table.stdout
    shown = cli("alerts", "show", "noisy", "-p", project, "-o", "yaml")
    assert shown.code == 0 and "for_seconds: 60" in shown.stdout
    channels_listed = cli("alerts", "channels", "list", "-p", project)
    assert "ok-hook" in channels_listed.stdout and "always, noisy" in channels_listed.stdout
    assert SECRET not in channels_listed.stdout

    ok = cli("alerts", "test", "always", "-p", project)
    assert ok.code == 0, ok.stdout + ok.stderr
    assert "ok-hook" in ok.stdout and "HTTP 200" in ok.stdout
    test_body = wait_for("the test webhook", lambda: webhooks.bodies(f"/{project}/ok"))[0]
    assert test_body["stratus"]["test"] is True
    failing = cli("alerts", "test", "noisy", "-p", project)
    assert failing.code == 1
    assert "bad-hook" in failing.stdout and "HTTP 500" in failing.stdout

    # the project has no job, so `stratus_jobs` has no series of it: history comes from
    # Alertmanager here, naming the rule
    assert cli("alerts", "history", "-p", project, "-o", "json").stdout.strip() == "[]"
    sdk.alerts.alertmanager(
        {
            "version": "4",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "always", "instance": "x"},
                    "annotations": {"summary": "from Alertmanager"},
                    "startsAt": "2026-01-01T00:00:00Z",
                    "fingerprint": "abc",
                }
            ],
        },
        project,
    )
    history = cli("alerts", "history", "--rule", "always", "-p", project, "-o", "json")
    assert history.code == 0
    (event,) = json.loads(history.stdout)
    assert (event["rule"], event["state"], event["source"]) == ("always", "firing", "alertmanager")
    table = cli("alerts", "history", "-p", project)
    assert "always" in table.stdout and "alertmanager" in table.stdout
    bad = cli("alerts", "history", "--state", "exploded", "-p", project)
    assert bad.code == 2

    deleted = cli("alerts", "delete", "noisy", "-p", project)
    assert deleted.code == 0
    gone = cli("alerts", "channels", "delete", "bad-hook", "-p", project)
    assert gone.code == 0, gone.stderr
    refused = cli("alerts", "channels", "delete", "ok-hook", "-p", project)
    assert refused.code == 1 and "used by alert rules (always)" in refused.stderr
    missing = cli("alerts", "apply", "-f", str(tmp_path / "nope.yaml"), "-p", project)
    assert missing.code == 1 and "cannot be read" in missing.stderr
