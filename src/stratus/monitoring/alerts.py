"""Alert rules and their history: apply, read, delete; a test notification; one evaluation of
a rule (for `alert_evaluator.py`); and the receiver of Alertmanager's webhook, so an existing
Prometheus and Alertmanager can drive Stratus. Channels are `channels.py`.

Each state change of a rule is one transaction: its history rows, its status and the
`AlertFired` events (pipelines with an alert trigger queue their runs in it), its audit
entries and an outbox row per notification, which `dispatching.py` sends once it has
committed (at least once, even across a crash).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.errors import InvalidInput
from stratus.core.events import AlertFired, EventBus
from stratus.core.ids import new_request_id
from stratus.core.outbox import Outbox
from stratus.core.project_lists import page_in_projects
from stratus.core.resources import ProjectScoped, metadata_of, paginate
from stratus.iam.audit import AuditEntry, AuditLog
from stratus.monitoring import alert_schemas as s
from stratus.monitoring.alert_states import (
    Instance,
    Sample,
    SeriesKey,
    Transition,
    key_of,
    shown,
    step,
    worst,
)
from stratus.monitoring.alert_states import select as select_series
from stratus.monitoring.alert_tables import AlertEventRow, AlertRuleRow, ChannelRow
from stratus.monitoring.alert_templates import TemplateError, render
from stratus.monitoring.channel_secrets import SecretBox
from stratus.monitoring.channels import ChannelService, SecretValues
from stratus.monitoring.destinations import NetworkPolicy
from stratus.monitoring.dispatching import NotificationDispatcher
from stratus.monitoring.notifications import (
    Dispatch,
    Notification,
    Notifier,
    fingerprint,
)

log = logging.getLogger("stratus.alerts")

ProjectLookup = Callable[[Session, str], str]
ACTOR = "system:alerts"
_ZERO_YEAR = 1  # Alertmanager's endsAt of an alert that has not ended


@dataclass(frozen=True)
class RuleView:
    """What the evaluator needs to find a rule again."""

    uid: str
    name: str
    project: str
    project_uid: str


class AlertService:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        audit: AuditLog,
        box: SecretBox,
        outbox: Outbox,
        *,
        project_uid: ProjectLookup,
        project_name: ProjectLookup,
        notification_timeout: float,
        notification_networks: NetworkPolicy | None = None,
        secret_values: SecretValues | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.audit = audit
        self._project_uid = project_uid
        self._project_name = project_name
        self._rules = ProjectScoped(AlertRuleRow, "alert rule")
        self.channels = ChannelService(
            db,
            box,
            project_uid=project_uid,
            networks=notification_networks,
            secret_values=secret_values,
        )
        self.notifier = Notifier(
            self.channels.config, self.record_notifications, notification_timeout
        )
        self.dispatcher = NotificationDispatcher(outbox, self.notifier)
        self.on_change: Callable[[], None] = lambda: None

    # --- rules -------------------------------------------------------------------------------

    def apply_rule(self, project: str, data: s.AlertRuleApply) -> tuple[s.AlertRuleRead, bool]:
        """Create or replace a rule; (it, whether it is new). Its series keep their state."""
        match = dict(data.match)
        if "project" in match:
            if match["project"] != project:
                raise InvalidInput(
                    f"match.project: a rule only sees its own project's series ({project!r})"
                )
            del match["project"]
        spec = s.AlertRuleSpec(
            description=data.description,
            metric=data.metric,
            match=match,
            comparison=data.comparison,
            threshold=data.threshold,
            for_seconds=data.for_seconds,
            severity=data.severity,
            summary=data.summary,
            channels=data.channels,
            enabled=data.enabled,
        )
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            known = set(
                session.scalars(
                    select(ChannelRow.name).where(
                        ChannelRow.project_uid == project_uid, ChannelRow.name.in_(data.channels)
                    )
                )
            )
            for name in data.channels:
                if name not in known:
                    raise InvalidInput(
                        f"channels: notification channel {name!r} not found in project "
                        f"{project!r}: apply it first"
                    )
            row = session.scalar(
                select(AlertRuleRow).where(
                    AlertRuleRow.project_uid == project_uid, AlertRuleRow.name == data.name
                )
            )
            created = row is None
            if row is None:
                row = AlertRuleRow(
                    name=data.name, project_uid=project_uid, status={}, spec={}, labels={}
                )
                session.add(row)
            row.labels = dict(data.labels)
            row.spec = spec.model_dump(mode="json")
            session.flush()
            read = self._rule_read(row, project)
        self.on_change()
        return read, created

    def list_rules(
        self, project: str | None, selector: str | None, limit: int | None, page_token: str | None
    ) -> tuple[list[s.AlertRuleRead], str | None]:
        with self.db.transaction() as session:
            pairs, token = page_in_projects(
                self._rules, session, project, self._project_uid, selector, limit, page_token
            )
            return [self._rule_read(r, p) for r, p in pairs], token

    def get_rule(self, project: str, name: str) -> s.AlertRuleRead:
        with self.db.transaction() as session:
            return self._rule_read(self._rule(session, project, name), project)

    def delete_rule(self, project: str, name: str) -> None:
        """Delete a rule; its history stays (until the project goes)."""
        with self.db.transaction() as session:
            session.delete(self._rule(session, project, name))

    def test_rule(
        self, project: str, name: str, body: s.NotificationTest
    ) -> s.NotificationTestResult:
        """Send a test notification of the rule to each of its channels now (one attempt)."""
        with self.db.transaction() as session:
            row = self._rule(session, project, name)
            spec = s.AlertRuleSpec.model_validate(row.spec)
            rule_labels = dict(row.labels or {})
        if not spec.channels:
            raise InvalidInput(f"alert rule {name!r} has no channels to test")
        value = spec.threshold if body.value is None else body.value
        now = utcnow()
        notification = self._notification(
            project,
            name,
            spec,
            rule_labels,
            state=body.state,
            value=value,
            series=spec.match,
            started_at=now,
            ended_at=now if body.state == "resolved" else None,
            test=True,
        )
        results = self.notifier.deliver_now(Dispatch(project, tuple(spec.channels), notification))
        return s.NotificationTestResult(rule=name, results=results)

    # --- history -----------------------------------------------------------------------------

    def history(
        self,
        project: str,
        rule: str | None,
        state: str | None,
        limit: int | None,
        page_token: str | None,
    ) -> tuple[list[s.AlertEventRead], str | None]:
        """State changes, newest first."""
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            stmt = select(AlertEventRow).where(AlertEventRow.project_uid == project_uid)
            if rule:
                stmt = stmt.where(AlertEventRow.rule == rule)
            if state:
                stmt = stmt.where(AlertEventRow.state == state)
            rows, token = paginate(
                session, stmt, AlertEventRow.id, limit, page_token, descending=True
            )
            return [_event_read(r) for r in rows], token

    def record_notifications(self, event_id: int, results: list[s.NotificationResult]) -> None:
        """What the channels answered, kept on the history row (a channel's latest answer
        replaces its earlier one; the others' stay)."""
        answered = {r.channel for r in results}
        with self.db.transaction() as session:
            row = session.get(AlertEventRow, event_id, with_for_update=True)
            if row is not None:
                kept = [n for n in row.notifications or [] if n.get("channel") not in answered]
                row.notifications = kept + [r.model_dump(mode="json") for r in results]

    # --- evaluation --------------------------------------------------------------------------

    def rules_to_evaluate(self) -> list[RuleView]:
        with self.db.transaction() as session:
            rows = session.execute(
                select(AlertRuleRow.uid, AlertRuleRow.name, AlertRuleRow.project_uid).order_by(
                    AlertRuleRow.project_uid, AlertRuleRow.name
                )
            ).all()
            names: dict[str, str] = {}
            views = []
            for uid, name, project_uid in rows:
                if project_uid not in names:
                    names[project_uid] = self._project_name(session, project_uid)
                views.append(RuleView(uid, name, names[project_uid], project_uid))
            return views

    def evaluate(
        self, rule: RuleView, samples: Iterable[Sample], now: datetime
    ) -> list[Transition]:
        """One evaluation of one rule, in one transaction: its status, the history rows of
        its transitions and an `AlertFired` per series that started firing; then the audit
        entries and the outbox rows of its notifications."""
        with self.db.transaction() as session:
            row = session.get(AlertRuleRow, rule.uid, with_for_update=True)
            if row is None:
                return []
            spec = s.AlertRuleSpec.model_validate(row.spec)
            rule_labels = dict(row.labels or {})
            previous = _instances(row.status or {})
            series = select_series(samples, spec.metric, spec.match, rule.project)
            current, transitions = step(spec, previous, series, now)
            status = _status(spec, current.values(), now)
            table = cast(Table, AlertRuleRow.__table__)
            session.execute(
                update(table)
                .where(table.c.uid == rule.uid)
                .values(status=status.model_dump(mode="json"), updated_at=table.c.updated_at)
            )
            for t in transitions:
                labels = dict(t.labels)
                notification = self._notification(
                    rule.project,
                    rule.name,
                    spec,
                    rule_labels,
                    state=t.state,
                    value=t.value,
                    series=labels,
                    started_at=t.started_at,
                    ended_at=t.time if t.state == "resolved" else None,
                )
                event = AlertEventRow(
                    project_uid=rule.project_uid,
                    rule=rule.name,
                    state=t.state,
                    severity=spec.severity,
                    labels=labels,
                    value=_finite(t.value),
                    threshold=spec.threshold,
                    summary=notification.summary,
                    time=t.time,
                    source="stratus",
                    notifications=[],
                )
                session.add(event)
                session.flush()
                self._audit(session, ACTOR, "stratus", rule.project, rule.name, t.state,
                            _finite(t.value), labels)  # fmt: skip
                if t.state == "firing":
                    self.bus.publish(
                        session,
                        AlertFired(
                            project_uid=rule.project_uid,
                            project=rule.project,
                            rule=rule.name,
                            labels=t.labels,
                            value=t.value,
                        ),
                    )
                self.dispatcher.enqueue(
                    session, rule.project, tuple(spec.channels), notification, event.id
                )
        if transitions:
            self.dispatcher.wake()
        return transitions

    def _audit(
        self,
        session: Session,
        actor: str,
        source: str,
        project: str,
        rule: str,
        state: str,
        value: float | None,
        labels: dict[str, str],
    ) -> None:
        """The audit entry of a firing or resolved alert, in the transaction that records it:
        so it comes before whatever the alert starts (a pipeline run, say)."""
        self.audit.append_in(
            session,
            AuditEntry(
                actor=actor,
                action=f"alerts.{state}",
                resource=f"/api/v1/projects/{project}/alert-rules/{rule}",
                project=project,
                outcome="success",
                status_code=200,
                request_id=new_request_id(),
                source=source,
                details={"value": value, "labels": labels},
            ),
        )

    # --- alerts of other services (budgets) ---------------------------------------------------

    def check_channels(self, project: str, names: list[str]) -> None:
        """Raise InvalidInput naming the first of `names` that is no channel of the project."""
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            known = set(
                session.scalars(
                    select(ChannelRow.name).where(
                        ChannelRow.project_uid == project_uid, ChannelRow.name.in_(names)
                    )
                )
            )
        for name in names:
            if name not in known:
                raise InvalidInput(
                    f"channels: notification channel {name!r} not found in project "
                    f"{project!r}: apply it first"
                )

    def notify(
        self,
        project: str,
        rule: str,
        channels: list[str],
        *,
        summary: str,
        metric: str,
        value: float,
        threshold: float,
        labels: dict[str, str],
        source: str,
        severity: str = "warning",
    ) -> None:
        """An alert another service raises (a budget crossed): written to the project's alert
        history, audited, and sent to `channels` through the same outbox and dispatcher as a
        rule's, all in one transaction."""
        now = utcnow()
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            event = AlertEventRow(
                project_uid=project_uid,
                rule=rule[:200],
                state="firing",
                severity=severity,
                labels=labels,
                value=value,
                threshold=threshold,
                summary=summary[:5000],
                time=now,
                source=source,
                notifications=[],
            )
            session.add(event)
            session.flush()
            self._audit(session, "system:billing", source, project, rule, "firing", value, labels)
            if channels:
                notification = Notification(
                    rule=rule,
                    project=project,
                    state="firing",
                    severity=severity,
                    metric=metric,
                    comparison=">=",
                    threshold=threshold,
                    value=value,
                    labels=labels,
                    summary=summary,
                    started_at=now,
                    source=source,
                )
                self.dispatcher.enqueue(session, project, tuple(channels), notification, event.id)
        if channels:
            self.dispatcher.wake()

    # --- Alertmanager ------------------------------------------------------------------------

    def receive_alertmanager(
        self, project: str, payload: s.AlertmanagerPayload, actor: str
    ) -> s.AlertmanagerReceipt:
        """Alerts Alertmanager sent: each is written to history (once: a redelivery of the
        same alert — fingerprint, start and status — is ignored); a firing one publishes
        `AlertFired` named by its `alertname`; a Stratus rule of that name notifies its
        channels."""
        try:
            return self._receive(project, payload, actor)
        except IntegrityError:  # a concurrent delivery of the same alert won: try once more
            return self._receive(project, payload, actor)

    def _receive(
        self, project: str, payload: s.AlertmanagerPayload, actor: str
    ) -> s.AlertmanagerReceipt:
        fired = resolved = duplicates = 0
        matched: set[str] = set()
        now = utcnow()
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            names = {a.labels["alertname"] for a in payload.alerts}
            rules = {
                row.name: row
                for row in session.scalars(
                    select(AlertRuleRow).where(
                        AlertRuleRow.project_uid == project_uid, AlertRuleRow.name.in_(names)
                    )
                )
            }
            seen: set[str] = set()
            for alert in payload.alerts:
                name = alert.labels["alertname"]
                starts = alert.startsAt if alert.startsAt.year > 1 else now
                key = _dedup_key(alert)
                exists = key in seen or session.scalar(
                    select(AlertEventRow.id).where(
                        AlertEventRow.project_uid == project_uid, AlertEventRow.dedup_key == key
                    )
                )
                if exists:
                    duplicates += 1
                    continue
                seen.add(key)
                row = rules.get(name)
                spec = s.AlertRuleSpec.model_validate(row.spec) if row is not None else None
                labels = {k: v for k, v in alert.labels.items() if k != "alertname"}
                value = _float(alert.annotations.get("value"))
                severity = alert.labels.get("severity") or (spec.severity if spec else "warning")
                ends = alert.endsAt
                if ends is not None and ends.year <= _ZERO_YEAR:
                    ends = None
                summary = (
                    alert.annotations.get("summary")
                    or alert.annotations.get("description")
                    or f"{name} is {alert.status} (from Alertmanager)"
                )
                event = AlertEventRow(
                    project_uid=project_uid,
                    rule=name[:200],
                    state=alert.status,
                    severity=severity[:16],
                    labels=labels,
                    value=value,
                    threshold=spec.threshold if spec else None,
                    summary=summary[:5000],
                    time=starts if alert.status == "firing" else (ends or now),
                    source="alertmanager",
                    notifications=[],
                    dedup_key=key,
                )
                session.add(event)
                session.flush()
                self._audit(session, actor, "alertmanager", project, name, alert.status,
                            value, labels)  # fmt: skip
                if alert.status == "firing":
                    fired += 1
                    self.bus.publish(
                        session,
                        AlertFired(
                            project_uid=project_uid,
                            project=project,
                            rule=name,
                            labels=key_of(labels),
                            value=value,
                        ),
                    )
                else:
                    resolved += 1
                if spec is None:
                    continue
                matched.add(name)
                notification = Notification(
                    rule=name,
                    project=project,
                    state=alert.status,
                    severity=severity,
                    metric=spec.metric,
                    comparison=spec.comparison,
                    threshold=spec.threshold,
                    value=value,
                    labels={**dict(row.labels or {}), **labels} if row is not None else labels,
                    summary=summary,
                    started_at=starts,
                    ended_at=ends or (now if alert.status == "resolved" else None),
                    source="alertmanager",
                    description=alert.annotations.get("description", ""),
                )
                self.dispatcher.enqueue(
                    session, project, tuple(spec.channels), notification, event.id
                )
        if matched:
            self.dispatcher.wake()
        return s.AlertmanagerReceipt(
            received=len(payload.alerts),
            fired=fired,
            resolved=resolved,
            duplicates=duplicates,
            rules=sorted(matched),
        )

    # --- helpers -----------------------------------------------------------------------------

    def _notification(
        self,
        project: str,
        rule: str,
        spec: s.AlertRuleSpec,
        rule_labels: dict[str, str],
        *,
        state: str,
        value: float | None,
        series: dict[str, str],
        started_at: datetime | None,
        ended_at: datetime | None,
        test: bool = False,
    ) -> Notification:
        labels = {**rule_labels, **series}
        try:
            summary = render(
                spec.summary,
                value=value,
                threshold=spec.threshold,
                metric=spec.metric,
                rule=rule,
                severity=spec.severity,
                comparison=spec.comparison,
                labels=labels,
            )
        except TemplateError as exc:  # checked at apply; a label value cannot break it
            summary = f"{rule}: {spec.metric} {spec.comparison} {spec.threshold} ({exc})"
        return Notification(
            rule=rule,
            project=project,
            state=state,
            severity=spec.severity,
            metric=spec.metric,
            comparison=spec.comparison,
            threshold=spec.threshold,
            value=value,
            labels=labels,
            summary=summary,
            started_at=started_at,
            ended_at=ended_at,
            test=test,
            description=spec.description,
        )

    def _rule(self, session: Session, project: str, name: str) -> AlertRuleRow:
        return self._rules.find(session, self._project_uid(session, project), project, name)

    @staticmethod
    def _rule_read(row: AlertRuleRow, project: str) -> s.AlertRuleRead:
        return s.AlertRuleRead(
            metadata=metadata_of(row, project=project),
            spec=s.AlertRuleSpec.model_validate(row.spec),
            status=s.AlertRuleStatus.model_validate(row.status or {}),
        )


# --- pure helpers ----------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    """JSON (and so PostgreSQL's json) has no NaN or infinity: such a value is kept as null."""
    return value if value is not None and math.isfinite(value) else None


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return _finite(number)


def _dedup_key(alert: s.AlertmanagerAlert) -> str:
    fp = alert.fingerprint or fingerprint(alert.labels)
    name = alert.labels["alertname"]
    raw = f"{name}|{fp}|{alert.startsAt.isoformat()}|{alert.status}"
    return "am:" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def _instances(status: dict[str, Any]) -> dict[SeriesKey, Instance]:
    """What the last evaluation knew of each pending or firing series."""
    known: dict[SeriesKey, Instance] = {}
    for item in status.get("instances") or []:
        state = item.get("state")
        if state not in ("pending", "firing"):
            continue
        labels = key_of(item.get("labels") or {})
        since = item.get("active_since")
        known[labels] = Instance(
            labels=labels,
            state=state,
            value=item.get("value"),
            active_since=as_utc(datetime.fromisoformat(since)) if since else None,
            last_evaluated_at=None,
        )
    return known


def _status(
    spec: s.AlertRuleSpec, instances: Iterable[Instance], now: datetime
) -> s.AlertRuleStatus:
    listed = shown(instances)
    state = worst(listed)
    counts = {k: sum(1 for i in listed if i.state == k) for k in ("firing", "pending")}
    if not spec.enabled:
        message = "disabled"
    elif not listed:
        message = f"no series of {spec.metric} matches"
    else:
        message = f"{len(listed)} series: {counts['firing']} firing, {counts['pending']} pending"
    return s.AlertRuleStatus(
        state=state,
        instances=[
            s.AlertInstance(
                labels=dict(i.labels),
                state=i.state,
                value=_finite(i.value),
                active_since=i.active_since,
                last_evaluated_at=i.last_evaluated_at,
            )
            for i in listed
        ],
        last_evaluated_at=now,
        message=message,
    )


def _event_read(row: AlertEventRow) -> s.AlertEventRead:
    return s.AlertEventRead(
        id=row.id,
        rule=row.rule,
        state=row.state,
        severity=row.severity,
        labels=dict(row.labels or {}),
        value=row.value,
        threshold=row.threshold,
        summary=row.summary or "",
        time=as_utc(row.time),
        source=row.source,
        notifications=[s.NotificationResult.model_validate(n) for n in row.notifications or []],
    )
