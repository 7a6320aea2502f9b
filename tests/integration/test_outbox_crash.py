"""Nothing lost on a crash: a dataset-triggered run, an alert-triggered run and an alert's
notification are written to the outbox with their causes; the control plane is killed (-9)
before it delivers them, restarted on the same home, and each is delivered exactly once."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratus.testing import LocalPlatform, WebhookReceiver, wait_for

WAIT = 60.0
PROJECT = "default"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hooks:
        yield hooks


def outbox_topics(home: Path) -> list[str]:
    with sqlite3.connect(home / "stratus.db") as conn:
        return [topic for (topic,) in conn.execute("SELECT topic FROM outbox ORDER BY id")]


def test_deliveries_survive_a_kill_between_cause_and_delivery(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    url = f"{receiver.url}/hook"
    allow = {"STRATUS_MONITORING_ALLOWED_NOTIFICATION_NETWORKS": "127.0.0.0/8"}
    home = tmp_path / "home"
    # Deliveries held for an hour: the crash is sure to come between cause and delivery.
    p = LocalPlatform(home, env={**allow, "STRATUS_OUTBOX_HOLD_SECONDS": "3600"})
    try:
        p.start()
        with p.client() as c:
            c.alerts.channels.apply(PROJECT, name="hook", type="webhook", url=url)
            c.alerts.apply(
                PROJECT,
                name="disk-full",
                metric="stratus_endpoint_replicas",
                match={"endpoint": "no-such-endpoint"},  # fires only through Alertmanager
                comparison=">",
                threshold=0,
                channels=["hook"],
            )
            csv = tmp_path / "feed.csv"
            csv.write_text("x,y\n1,2\n3,4\n")
            validate = {"name": "check", "type": "validate", "dataset": "feed",
                        "rules": {"rows": {"min": 1}}}  # fmt: skip
            c.datasets.push(csv, "feed", project=PROJECT)  # before the pipelines: no trigger
            c.pipelines.apply(
                {"name": "on-data", "triggers": {"datasets": ["feed"]}, "steps": [validate]},
                PROJECT,
            )
            c.pipelines.apply(
                {"name": "on-alert", "triggers": {"alerts": ["disk-full"]}, "steps": [validate]},
                PROJECT,
            )
            # the causes
            csv.write_text("x,y\n1,2\n3,4\n5,6\n")
            assert c.datasets.push(csv, "feed", project=PROJECT).version == 2
            receipt = c.alerts.alertmanager(
                {
                    "version": "4",
                    "status": "firing",
                    "alerts": [
                        {
                            "status": "firing",
                            "labels": {"alertname": "disk-full", "instance": "db-1"},
                            "annotations": {"summary": "the disk is full"},
                            "startsAt": "2026-01-01T00:00:00Z",
                        }
                    ],
                },
                PROJECT,
            )
            assert (receipt.fired, receipt.rules) == (1, ["disk-full"])
            assert sorted(outbox_topics(home)) == [
                "alerts.notification",
                "pipelines.alert-trigger",
                "pipelines.dataset-trigger",
            ]
            assert c.pipelines.runs("on-data", PROJECT) == []
            assert c.pipelines.runs("on-alert", PROJECT) == []
        assert receiver.requests == []

        p.kill()  # SIGKILL, by PID
        p.env = dict(allow)  # a restart with the default settings: deliver at once
        p.start()

        wait_for("every outbox row to be delivered", lambda: outbox_topics(home) == [])
        with p.client() as c:
            (data_run,) = c.pipelines.runs("on-data", PROJECT)
            assert data_run.trigger == "dataset"
            assert data_run.trigger_detail == {"dataset": "feed:2"}
            (alert_run,) = c.pipelines.runs("on-alert", PROJECT)
            assert alert_run.trigger == "alert"
            assert alert_run.trigger_detail["alert"] == "disk-full"
            (event,) = c.alerts.history(PROJECT, rule="disk-full")
            wait_for("the notification's answer on the event", lambda: c.alerts.history(
                PROJECT, rule="disk-full")[0].notifications)  # fmt: skip
            (answer,) = c.alerts.history(PROJECT, rule="disk-full")[0].notifications
            assert answer.ok and answer.channel == "hook"
        (body,) = receiver.bodies()
        assert body["status"] == "firing" and body["commonLabels"]["alertname"] == "disk-full"
        assert body["commonLabels"]["instance"] == "db-1"
    finally:
        p.stop()
