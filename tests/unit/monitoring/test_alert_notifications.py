"""Notifications: the webhook body (Alertmanager's shape plus Stratus' figures), the Slack
message, the email, failures as results that name the cause and never a secret, retries,
and channel secrets sealed at rest."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from stratus.core.errors import DataCorrupted
from stratus.monitoring.alert_schemas import AlertmanagerPayload, NotificationResult
from stratus.monitoring.channel_secrets import SecretBox
from stratus.monitoring.destinations import NetworkPolicy
from stratus.monitoring.notifications import (
    ChannelConfig,
    Dispatch,
    Notification,
    Notifier,
    email_message,
    send,
    slack_body,
    webhook_body,
)
from stratus.testing import WebhookReceiver, free_port

STARTED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LOOPBACK = NetworkPolicy.allowing(["127.0.0.0/8"])  # where these tests' receivers listen
N = Notification(
    rule="high-errors",
    project="shop",
    state="firing",
    severity="critical",
    metric="stratus_endpoint_error_ratio",
    comparison=">",
    threshold=0.05,
    value=0.2,
    labels={"endpoint": "churn", "variant": "main", "team": "ml"},
    summary="churn answers 20% errors",
    started_at=STARTED,
)


def test_webhook_body_is_an_alertmanager_payload_with_stratus_figures() -> None:
    body = webhook_body(N, "oncall")
    parsed = AlertmanagerPayload.model_validate(body)  # what Stratus' own receiver accepts
    assert parsed.status == "firing"
    alert = body["alerts"][0]
    assert alert["labels"] == {
        "endpoint": "churn", "variant": "main", "team": "ml",
        "alertname": "high-errors", "project": "shop", "severity": "critical",
    }  # fmt: skip
    assert alert["annotations"]["summary"] == "churn answers 20% errors"
    assert alert["startsAt"] == "2026-01-01T12:00:00Z"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert len(alert["fingerprint"]) == 16
    assert body["receiver"] == "oncall"
    assert body["stratus"]["value"] == 0.2 and body["stratus"]["threshold"] == 0.05
    resolved = webhook_body(
        Notification(**{**N.__dict__, "state": "resolved", "ended_at": STARTED}), "oncall"
    )
    assert resolved["alerts"][0]["endsAt"] == "2026-01-01T12:00:00Z"
    assert resolved["alerts"][0]["fingerprint"] == alert["fingerprint"]


def test_slack_body() -> None:
    body = slack_body(N)
    assert body["text"].endswith("[FIRING:critical] high-errors — churn answers 20% errors")
    kinds = [block["type"] for block in body["blocks"]]
    assert kinds == ["header", "section", "context"]
    assert body["blocks"][0]["text"]["type"] == "plain_text"
    assert "`stratus_endpoint_error_ratio` = 0.2 (> 0.05)" in body["blocks"][1]["text"]["text"]


def test_email_subject_and_body() -> None:
    message = email_message(N, "stratus@example.com", ("a@example.com", "b@example.com"))
    assert message["Subject"] == "[FIRING:critical] high-errors — churn answers 20% errors"
    assert message["To"] == "a@example.com, b@example.com"
    text = message.get_content()
    assert "metric:     stratus_endpoint_error_ratio = 0.2 (> 0.05)" in text
    assert "  endpoint=churn" in text
    test = email_message(Notification(**{**N.__dict__, "test": True}), "s@x.io", ("a@x.io",))
    assert test["Subject"].startswith("[TEST] [FIRING:critical]")


# --- sending over real sockets on 127.0.0.1 --------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """Answers its `status`, with a body ("nope") when that is an error."""

    def answer(path: str) -> tuple[int, bytes]:
        return hooks.status, (b"nope" if hooks.status >= 300 else b"")

    with WebhookReceiver(answer=answer) as hooks:
        yield hooks


def test_webhook_is_posted_with_its_headers(receiver: WebhookReceiver) -> None:
    url = receiver.url
    channel = ChannelConfig("hook", "webhook", url=f"{url}/alerts?token=s3cret",
                            headers={"Authorization": "Bearer s3cret"},
                            networks=LOOPBACK)  # fmt: skip
    result = send(channel, N, timeout=5)
    assert result.ok, result.detail
    assert result.detail == f"HTTP 200 from {url}"
    headers, body = receiver.requests[0].headers, receiver.requests[0].json()
    assert headers["Authorization"] == "Bearer s3cret"
    assert body["alerts"][0]["labels"]["alertname"] == "high-errors"


def test_failures_name_the_cause_and_no_secret(receiver: WebhookReceiver) -> None:
    url = receiver.url
    receiver.status = 500
    slack = ChannelConfig("chat", "slack", url=f"{url}/services/T0/B0/s3cret", networks=LOOPBACK)
    result = send(slack, N, timeout=5)
    assert not result.ok
    assert result.detail == f"{url} answered HTTP 500"  # its status, never its body ("nope")
    assert "s3cret" not in result.detail and "s3cret" not in repr(slack)
    closed = ChannelConfig("gone", "webhook", url=f"http://127.0.0.1:{free_port()}/x?k=s3cret",
                           networks=LOOPBACK)  # fmt: skip
    refused = send(closed, N, timeout=5)
    assert not refused.ok
    assert refused.detail.startswith("connection refused by http://127.0.0.1:")
    assert "s3cret" not in refused.detail


def test_smtp_refused_is_a_result() -> None:
    port = free_port()
    channel = ChannelConfig("mail", "email", to=("a@example.com",), sender="s@example.com",
                            smtp_host="127.0.0.1", smtp_port=port, password="s3cret",
                            username="u", networks=LOOPBACK)  # fmt: skip
    result = send(channel, N, timeout=5)
    assert not result.ok
    assert result.detail == f"connection refused by 127.0.0.1:{port}"


def test_the_notifier_retries_then_records() -> None:
    calls: list[str] = []
    recorded: dict[int, list[NotificationResult]] = {}

    def flaky(channel: ChannelConfig, n: Notification, timeout: float) -> NotificationResult:
        calls.append(channel.name)
        ok = channel.name == "good" or calls.count(channel.name) == 3
        return NotificationResult(channel=channel.name, ok=ok, detail="ok" if ok else "HTTP 503")

    def record(event_id: int, results: list[NotificationResult]) -> None:
        recorded[event_id] = results

    def resolve(project: str, name: str) -> ChannelConfig | None:
        return None if name == "missing" else ChannelConfig(name, "webhook", url="http://x")

    notifier = Notifier(resolve, record, 5, backoff=(0.0,), sender=flaky)
    notifier.deliver(Dispatch("shop", ("good", "flaky", "missing"), N, event_id=7))
    results = {r.channel: r for r in recorded[7]}
    assert (results["good"].ok, results["good"].attempts) == (True, 1)
    assert (results["flaky"].ok, results["flaky"].attempts) == (True, 3)
    assert not results["missing"].ok and results["missing"].detail == "channel 'missing' not found"


def test_secrets_are_sealed_and_bound_to_their_channel() -> None:
    box = SecretBox(os.urandom(32))
    sealed = box.seal({"password": "s3cret"}, "chan-1")
    assert b"s3cret" not in sealed
    assert box.open(sealed, "chan-1") == {"password": "s3cret"}
    with pytest.raises(DataCorrupted):
        box.open(sealed, "chan-2")  # copied onto another channel's row
    with pytest.raises(DataCorrupted):
        SecretBox(os.urandom(32)).open(sealed, "chan-1")  # another master key


def test_odd_times_and_ports_are_validation_errors_not_crashes() -> None:
    from pydantic import ValidationError

    from stratus.monitoring.alert_schemas import AlertmanagerAlert, ChannelApply

    alert = {"status": "firing", "labels": {"alertname": "a"}}
    not_ended = AlertmanagerAlert.model_validate(
        {**alert, "startsAt": "2026-01-01T01:00:00+01:00", "endsAt": "0001-01-01T00:00:00+01:00"}
    )
    assert not_ended.startsAt == datetime(2026, 1, 1, tzinfo=UTC)
    assert not_ended.endsAt is not None and not_ended.endsAt.year == 1
    with pytest.raises(ValidationError, match="out of range"):
        AlertmanagerAlert.model_validate({**alert, "startsAt": "9999-12-31T23:59:59-01:00"})
    with pytest.raises(ValidationError, match="port"):
        ChannelApply.model_validate({"name": "c", "type": "webhook", "url": "http://h:99999/"})
