"""The alert service on a real (migrated SQLite) database: rules and channels, one
evaluation pass at chosen times (no sleeping) with fake samples, what a transition writes
in its one transaction (history, status, AlertFired), the audit entries, the notifications
handed to the sender, and Alertmanager deliveries (idempotent)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import select
from sqlalchemy.orm import Session

from stratus.core.database import Database
from stratus.core.errors import Conflict, InvalidInput, NotFound
from stratus.core.events import AlertFired, EventBus
from stratus.core.outbox import Outbox
from stratus.iam.audit import AuditLog
from stratus.iam.tables import ProjectRow
from stratus.migrations.runner import upgrade
from stratus.monitoring import alert_schemas as s
from stratus.monitoring.alert_evaluator import AlertEvaluator
from stratus.monitoring.alert_tables import ChannelRow
from stratus.monitoring.alerts import AlertService
from stratus.monitoring.channel_secrets import SecretBox
from stratus.monitoring.notifications import Dispatch

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def project_uid(session: Session, name: str) -> str:
    uid = session.scalar(select(ProjectRow.uid).where(ProjectRow.name == name))
    if uid is None:
        raise NotFound(f"project {name!r} not found")
    return uid


def project_name(session: Session, uid: str) -> str:
    row = session.get(ProjectRow, uid)
    return row.name if row is not None else ""


class World:
    def __init__(self, url: str) -> None:
        self.db = Database(url)
        upgrade(self.db)
        with self.db.transaction() as session:
            session.add_all([ProjectRow(name="p"), ProjectRow(name="q")])
        self.bus = EventBus()
        self.fired: list[AlertFired] = []
        self.bus.subscribe(AlertFired, lambda session, event: self.fired.append(event))
        self.audit = AuditLog(self.db)
        self.outbox = Outbox(self.db)
        self.alerts = AlertService(
            self.db, self.bus, self.audit, SecretBox(os.urandom(32)), self.outbox,
            project_uid=project_uid, project_name=project_name, notification_timeout=1,
        )  # fmt: skip
        self.registry = CollectorRegistry()
        self.gauge = Gauge(
            "stratus_endpoint_error_ratio", "test", ["project", "endpoint", "variant"],
            registry=self.registry,
        )  # fmt: skip
        self.evaluator = AlertEvaluator(self.alerts, self.registry, interval_seconds=1)

    def tick(self, seconds: float) -> int:
        return self.evaluator.tick(T0 + timedelta(seconds=seconds))

    @property
    def sent(self) -> list[Dispatch]:
        """The notifications queued for sending (outbox rows, one per channel)."""
        return self.alerts.dispatcher.pending()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The service on SQLite, and on a database of its own on the session's PostgreSQL."""
    if request.param == "sqlite":
        world = World(f"sqlite:///{tmp_path / 'stratus.db'}")
        try:
            yield world
        finally:
            world.db.dispose()
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(request.getfixturevalue("postgres_url"))
    name = f"alerts_{uuid.uuid4().hex[:12]}"
    server = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    world = World(url.set(database=name).render_as_string(hide_password=False))
    try:
        yield world
    finally:
        world.db.dispose()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rule(**changes: Any) -> s.AlertRuleApply:
    base: dict[str, Any] = {
        "name": "errors",
        "metric": "stratus_endpoint_error_ratio",
        "match": {"endpoint": "churn"},
        "threshold": 0.1,
        "for_seconds": 10,
        "severity": "critical",
        "labels": {"team": "ml"},
        "summary": "{labels[endpoint]} at {value}",
        "channels": ["hook"],
    }
    return s.AlertRuleApply.model_validate({**base, **changes})


def hook(**changes: Any) -> s.ChannelApply:
    base = {"name": "hook", "type": "webhook", "url": "https://hooks.example.com/a?token=t0p",
            "headers": {"Authorization": "Bearer t0p-s3cret"}}  # fmt: skip
    return s.ChannelApply.model_validate({**base, **changes})


def test_a_rule_fires_and_resolves_with_history_events_audit_and_notifications(
    world: World,
) -> None:
    world.alerts.channels.apply("p", hook())
    world.alerts.apply_rule("p", rule())
    world.gauge.labels("p", "churn", "main").set(0.5)
    world.gauge.labels("q", "churn", "main").set(0.9)  # another project's series: never seen
    assert world.tick(0) == 0
    read = world.alerts.get_rule("p", "errors")
    assert read.status.state == "pending"
    assert [i.labels for i in read.status.instances] == [
        {"project": "p", "endpoint": "churn", "variant": "main"}
    ]
    assert world.tick(10) == 1
    read = world.alerts.get_rule("p", "errors")
    assert read.status.state == "firing"
    assert read.metadata.resource_version == 1  # status writes do not bump it
    assert [(e.project, e.rule, dict(e.labels)["endpoint"], e.value) for e in world.fired] == [
        ("p", "errors", "churn", 0.5)
    ]
    (dispatch,) = world.sent
    assert dispatch.channels == ("hook",) and dispatch.notification.state == "firing"
    assert dispatch.notification.summary == "churn at 0.5"
    assert dispatch.notification.labels["team"] == "ml"
    assert world.tick(20) == 0  # still firing: nothing new
    world.gauge.labels("p", "churn", "main").set(0.0)
    assert world.tick(30) == 1
    events, _ = world.alerts.history("p", None, None, None, None)
    assert [(e.state, e.value, e.source) for e in events] == [
        ("resolved", 0.0, "stratus"),
        ("firing", 0.5, "stratus"),
    ]
    assert events[1].time == T0 + timedelta(seconds=10)
    assert world.alerts.history("q", None, None, None, None)[0] == []
    audit, _ = world.audit.list(project="p", actor="system:alerts")
    assert [a.action for a in audit] == ["alerts.resolved", "alerts.firing"]
    assert audit[0].resource == "/api/v1/projects/p/alert-rules/errors"
    assert audit[1].details["value"] == 0.5
    world.alerts.record_notifications(
        events[0].id, [s.NotificationResult(channel="hook", ok=False, detail="HTTP 500")]
    )
    events, _ = world.alerts.history("p", "errors", "resolved", None, None)
    assert events[0].notifications[0].detail == "HTTP 500"


def test_a_failing_subscriber_rolls_the_transition_back(world: World) -> None:
    """History, status and AlertFired are one transaction: a pipeline that cannot start
    leaves no half-recorded alert, and the next pass tries again."""
    world.alerts.channels.apply("p", hook())
    world.alerts.apply_rule("p", rule(for_seconds=0))
    world.gauge.labels("p", "churn", "main").set(0.5)

    def refuse(session: Session, event: AlertFired) -> None:
        raise Conflict("no")

    world.bus.subscribe(AlertFired, refuse)
    assert world.tick(0) == 0  # the failure is logged, not raised
    assert world.alerts.history("p", None, None, None, None)[0] == []
    assert world.alerts.get_rule("p", "errors").status.state == "inactive"
    assert world.sent == []


def test_rule_validation(world: World) -> None:
    with pytest.raises(InvalidInput, match="channels: notification channel 'hook' not found"):
        world.alerts.apply_rule("p", rule())
    with pytest.raises(InvalidInput, match="match.project"):
        world.alerts.apply_rule("p", rule(channels=[], match={"project": "q"}))
    read, created = world.alerts.apply_rule("p", rule(channels=[], match={"project": "p"}))
    assert created and read.spec.match == {}
    _, created = world.alerts.apply_rule("p", rule(channels=[], threshold=0.2))
    assert not created
    with pytest.raises(NotFound):
        world.alerts.get_rule("q", "errors")


def test_channel_secrets_are_write_only_and_masked_values_keep_them(world: World) -> None:
    read, created = world.alerts.channels.apply("p", hook())
    assert created
    assert read.spec.headers == {"Authorization": "****"}
    assert read.spec.url == "https://hooks.example.com/a?****"
    with world.db.transaction() as session:
        row = session.scalars(select(ChannelRow)).one()
        stored = repr(row.config).encode() + (row.secrets or b"")
    assert b"t0p" not in stored
    # applying what a read shows keeps the stored secrets
    world.alerts.channels.apply("p", hook(url=read.spec.url, headers=read.spec.headers))
    config = world.alerts.channels.config("p", "hook")
    assert config is not None
    assert config.url == "https://hooks.example.com/a?token=t0p"
    assert config.headers == {"Authorization": "Bearer t0p-s3cret"}
    with pytest.raises(InvalidInput, match="headers.X-Other"):
        world.alerts.channels.apply("p", hook(headers={"X-Other": "****"}))
    slack, _ = world.alerts.channels.apply(
        "p", s.ChannelApply(name="chat", type="slack", url="https://hooks.slack.com/T/B/s3cret")
    )
    assert slack.spec.url == "https://hooks.slack.com/****"
    mail, _ = world.alerts.channels.apply(
        "p",
        s.ChannelApply(name="mail", type="email", to=["a@example.com"], sender="s@example.com",
                       smtp_host="smtp.example.com", username="u", password="pw-s3cret"),
    )  # fmt: skip
    assert mail.spec.password == "****"
    world.alerts.apply_rule("p", rule(channels=["mail"]))
    with pytest.raises(Conflict, match="used by alert rules \\(errors\\)"):
        world.alerts.channels.delete("p", "mail")
    assert world.alerts.channels.get("p", "mail").status.rules == ["errors"]


def alertmanager(status: str, **labels: str) -> dict[str, Any]:
    alert = {
        "status": status,
        "labels": {"alertname": "errors", "endpoint": "churn", **labels},
        "annotations": {"summary": "from prometheus", "value": "0.7"},
        "startsAt": "2026-01-01T00:00:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-01-01T00:05:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "c0ffee",
    }
    return {
        "version": "4", "groupKey": "{}:{alertname=\"errors\"}", "status": status,
        "receiver": "stratus", "groupLabels": {"alertname": "errors"},
        "commonLabels": alert["labels"], "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0, "alerts": [alert],
    }  # fmt: skip


def test_alertmanager_deliveries_are_idempotent_and_fire_once(world: World) -> None:
    world.alerts.channels.apply("p", hook())
    world.alerts.apply_rule("p", rule())
    firing = s.AlertmanagerPayload.model_validate(alertmanager("firing"))
    receipt = world.alerts.receive_alertmanager("p", firing, "user:admin")
    assert (receipt.received, receipt.fired, receipt.duplicates) == (1, 1, 0)
    assert receipt.rules == ["errors"]
    again = world.alerts.receive_alertmanager("p", firing, "user:admin")
    assert (again.fired, again.duplicates) == (0, 1)
    assert [(e.rule, e.value) for e in world.fired] == [("errors", 0.7)]
    assert [d.notification.source for d in world.sent] == ["alertmanager"]
    resolved = s.AlertmanagerPayload.model_validate(alertmanager("resolved"))
    assert world.alerts.receive_alertmanager("p", resolved, "user:admin").resolved == 1
    assert world.alerts.receive_alertmanager("p", resolved, "user:admin").duplicates == 1
    events, _ = world.alerts.history("p", "errors", None, None, None)
    assert [(e.state, e.source, e.threshold) for e in events] == [
        ("resolved", "alertmanager", 0.1),
        ("firing", "alertmanager", 0.1),
    ]
    assert events[0].time == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    # no Stratus rule of that name: still history and AlertFired (a pipeline may listen)
    other = s.AlertmanagerPayload.model_validate(alertmanager("firing", alertname="DiskFull"))
    receipt = world.alerts.receive_alertmanager("p", other, "user:admin")
    assert (receipt.fired, receipt.rules) == (1, [])
    assert world.fired[-1].rule == "DiskFull"
    assert len(world.sent) == 2  # no channels to tell for DiskFull
    # the same alert in another project is another alert
    assert world.alerts.receive_alertmanager("q", firing, "user:admin").fired == 1


def test_notifications_wait_in_the_outbox_and_survive_a_crash(world: World) -> None:
    """A change's notifications are outbox rows (one per channel) of its transaction; one a
    dead control plane had claimed is sent at the next start; each answer is kept on the
    event beside the other channel's."""
    world.alerts.channels.apply("p", hook())
    world.alerts.channels.apply("p", hook(name="second", url="https://hooks.example.com/b"))
    world.alerts.apply_rule("p", rule(channels=["hook", "second"]))
    firing = s.AlertmanagerPayload.model_validate(alertmanager("firing"))
    world.alerts.receive_alertmanager("p", firing, "user:admin")
    assert [d.channels for d in world.sent] == [("hook",), ("second",)]
    sent: list[tuple[str, str, float | None]] = []

    def sender(channel: Any, n: Any, timeout: float) -> s.NotificationResult:
        sent.append((channel.name, n.state, n.value))
        return s.NotificationResult(channel=channel.name, ok=True, detail="HTTP 200")

    world.alerts.notifier.sender = sender
    dispatcher = world.alerts.dispatcher
    world.outbox.claim(["alerts.notification"])  # claimed by a control plane that then died
    assert dispatcher.tick() == 0  # leased: not sent twice at once
    assert world.outbox.release(["alerts.notification"]) == 2  # what `start` does
    assert dispatcher.tick() == 2
    assert sorted(sent) == [("hook", "firing", 0.7), ("second", "firing", 0.7)]
    assert world.sent == []
    (event,) = world.alerts.history("p", "errors", None, None, None)[0]
    assert sorted((n.channel, n.ok) for n in event.notifications) == [
        ("hook", True), ("second", True),
    ]  # fmt: skip
