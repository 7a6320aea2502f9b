"""The alerting API's shapes: alert rules (a threshold on a metric the platform exports),
their firing/resolved history, notification channels (webhook, Slack, email) and the
Alertmanager webhook payload Stratus accepts."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stratus.core.resource_schemas import Labels, Metadata, Name
from stratus.monitoring.alert_templates import DEFAULT_SUMMARY, TemplateError, check_template

METRIC_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
MASK = "****"  # what reads show for a secret; applying it back keeps the stored secret

Comparison = Literal[">", ">=", "<", "<=", "==", "!="]
Severity = Literal["info", "warning", "critical"]
AlertState = Literal["inactive", "pending", "firing"]
EventState = Literal["firing", "resolved"]
ChannelType = Literal["webhook", "slack", "email"]

_LABEL_NAME = re.compile(LABEL_NAME_PATTERN)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
_EMAIL = re.compile(r"^[^@\s<>,;\"]{1,64}@[A-Za-z0-9.-]{1,253}$")


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- rules -----------------------------------------------------------------------------------


class AlertRuleApply(_Input):
    """Create an alert rule, or replace the one of that name. It watches every series of
    `metric` whose labels include `match` (and whose `project` is the rule's own)."""

    name: Name
    description: str = Field("", max_length=5000)
    metric: str = Field(
        min_length=1,
        max_length=200,
        pattern=METRIC_PATTERN,
        description="a series the platform exports at /metrics, e.g. "
        "stratus_endpoint_error_ratio (counters end in _total)",
    )
    match: dict[str, str] = Field(
        default_factory=dict,
        description="label equality matchers, e.g. {endpoint: churn-api}; `project` is "
        "always the rule's project",
    )
    comparison: Comparison = ">"
    threshold: float
    for_seconds: float = Field(
        0, ge=0, le=86400, description="how long the condition must hold before firing"
    )
    severity: Severity = "warning"
    labels: Labels = Field(
        default_factory=dict, description="added to notifications; the rule's labels too"
    )
    summary: str = Field(
        DEFAULT_SUMMARY,
        min_length=1,
        max_length=1000,
        description="a template: {value}, {threshold}, {metric}, {rule}, {severity}, "
        "{comparison}, {labels[NAME]}",
    )
    channels: list[Name] = Field(
        default_factory=list, max_length=20, description="notification channels to tell"
    )
    enabled: bool = True

    @field_validator("match")
    @classmethod
    def _matchers(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 20:
            raise ValueError("at most 20 matchers")
        for key, wanted in value.items():
            if not _LABEL_NAME.match(key) or len(key) > 100:
                raise ValueError(f"{key!r} is not a Prometheus label name")
            if len(wanted) > 500:
                raise ValueError(f"the value of {key!r} is longer than 500 characters")
        return value

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("the threshold must be a finite number")
        return value

    @field_validator("summary")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            return check_template(value)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("channels")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a channel is named twice")
        return value


class AlertRuleSpec(BaseModel):
    description: str = ""
    metric: str
    match: dict[str, str] = Field(default_factory=dict)
    comparison: Comparison
    threshold: float
    for_seconds: float = 0
    severity: Severity = "warning"
    summary: str = DEFAULT_SUMMARY
    channels: list[str] = Field(default_factory=list)
    enabled: bool = True


class AlertInstance(BaseModel):
    """One series the rule watches."""

    labels: dict[str, str]
    state: AlertState
    value: float | None = None
    active_since: datetime | None = Field(None, description="since when the condition holds")
    last_evaluated_at: datetime | None = None


class AlertRuleStatus(BaseModel):
    state: AlertState = "inactive"
    instances: list[AlertInstance] = Field(default_factory=list)
    last_evaluated_at: datetime | None = None
    message: str = ""


class AlertRuleRead(BaseModel):
    kind: Literal["AlertRule"] = "AlertRule"
    metadata: Metadata
    spec: AlertRuleSpec
    status: AlertRuleStatus


class NotificationResult(BaseModel):
    channel: str
    ok: bool
    detail: str = ""
    attempts: int = 1


class AlertEventRead(BaseModel):
    """A state change of one series of a rule (or an alert Alertmanager sent)."""

    id: int
    rule: str
    state: EventState
    severity: str
    labels: dict[str, str]
    value: float | None
    threshold: float | None
    summary: str
    time: datetime
    source: Literal["stratus", "alertmanager", "budget"]
    notifications: list[NotificationResult]


class NotificationTest(_Input):
    """Send a test notification of the rule to its channels now."""

    state: EventState = "firing"
    value: float | None = Field(None, description="the value to show (default: the threshold)")

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("the value must be a finite number")
        return value


class NotificationTestResult(BaseModel):
    rule: str
    results: list[NotificationResult]


# --- channels --------------------------------------------------------------------------------


# A write-only value may name a project secret instead: `secret:NAME` is read when sending.
SECRET_REFERENCE = re.compile(r"^secret:([A-Za-z_][A-Za-z0-9_]{0,127})$")


def _check_url(value: str) -> str:
    if SECRET_REFERENCE.match(value):
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError("url must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("url has no host")
    try:
        parts.port  # noqa: B018 - reading it checks it
    except ValueError:
        raise ValueError("url has a port that is not a number from 1 to 65535") from None
    if any(c in value for c in "\r\n\t "):
        raise ValueError("url must not contain whitespace")
    return value


class ChannelApply(_Input):
    """Create a notification channel, or replace the one of that name. Secrets (header values,
    the SMTP password, a Slack URL) are stored encrypted and never shown again; applying
    the masked value `****` back keeps the stored one. Any of them may instead name a project
    secret, `secret:NAME` (`stratus secrets set`), read each time a notification is sent."""

    name: Name
    description: str = Field("", max_length=5000)
    labels: Labels = Field(default_factory=dict)
    type: ChannelType
    url: str | None = Field(None, max_length=2000, description="webhook and slack: where to POST")
    headers: dict[str, str] = Field(
        default_factory=dict, description="webhook and slack: extra HTTP headers (write-only)"
    )
    to: list[str] = Field(default_factory=list, max_length=50, description="email: recipients")
    sender: str | None = Field(None, max_length=320, description="email: the From address")
    smtp_host: str | None = Field(None, max_length=253)
    smtp_port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = Field(None, max_length=320)
    password: str | None = Field(None, max_length=1000, description="email: write-only")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 20:
            raise ValueError("at most 20 headers")
        for key, header in value.items():
            if not _HEADER_NAME.match(key):
                raise ValueError(f"{key!r} is not an HTTP header name")
            if any(c in header for c in "\r\n\x00") or len(header) > 4000:
                raise ValueError(f"the value of header {key!r} is not valid")
        return value

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _EMAIL.match(address):
                raise ValueError(f"{address!r} is not an email address")
        return value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError(f"{value!r} is not an email address")
        return value

    @field_validator("smtp_host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z0-9.:\[\]-]+$", value):
            raise ValueError(f"{value!r} is not a host name")
        return value

    @model_validator(mode="after")
    def _per_type(self) -> ChannelApply:
        if self.type in ("webhook", "slack"):
            if not self.url:
                raise ValueError(f"url: a {self.type} channel needs a url to POST to")
            extra = [
                f for f in ("to", "sender", "smtp_host", "username", "password") if _set(self, f)
            ]
            if extra:
                raise ValueError(f"{extra[0]}: only email channels take {extra[0]}")
        else:
            missing = [f for f in ("to", "sender", "smtp_host") if not getattr(self, f)]
            if missing:
                raise ValueError(f"{missing[0]}: an email channel needs {missing[0]}")
            if self.url or self.headers:
                field = "url" if self.url else "headers"
                raise ValueError(f"{field}: an email channel takes no {field}")
            if self.password and not self.username:
                raise ValueError("username: a password needs a username")
        return self


def _set(model: BaseModel, field: str) -> bool:
    value = getattr(model, field)
    return bool(value)


class ChannelSpec(BaseModel):
    """A channel as reads show it: secrets masked as `****`."""

    description: str = ""
    type: ChannelType
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    to: list[str] = Field(default_factory=list)
    sender: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    starttls: bool = True
    username: str | None = None
    password: str | None = None


class ChannelStatus(BaseModel):
    rules: list[str] = Field(default_factory=list, description="the rules that notify it")


class ChannelRead(BaseModel):
    kind: Literal["NotificationChannel"] = "NotificationChannel"
    metadata: Metadata
    spec: ChannelSpec
    status: ChannelStatus


# --- Alertmanager ----------------------------------------------------------------------------


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: EventState
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime  # Alertmanager's field names
    endsAt: datetime | None = None
    generatorURL: str = Field("", max_length=4000)
    fingerprint: str = Field("", max_length=200)

    @field_validator("startsAt", "endsAt")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """In UTC; Alertmanager's "not ended" (year 1) stays as it is."""
        if value is None or value.year <= 1:
            return value
        try:
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        except OverflowError:
            raise ValueError("the time is out of range") from None

    @field_validator("labels")
    @classmethod
    def _alertname(cls, value: dict[str, str]) -> dict[str, str]:
        if not value.get("alertname"):
            raise ValueError("an alert needs the label alertname")
        if len(value) > 100:
            raise ValueError("at most 100 labels")
        return value


class AlertmanagerPayload(BaseModel):
    """Alertmanager's webhook body (version 4), as its `webhook_configs` send it."""

    model_config = ConfigDict(extra="ignore")

    version: str
    groupKey: str = Field("", max_length=4000)
    truncatedAlerts: int = 0
    status: EventState
    receiver: str = Field("", max_length=500)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = Field("", max_length=4000)
    alerts: list[AlertmanagerAlert] = Field(max_length=1000)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value != "4":
            raise ValueError(f"version {value!r}: only version 4 of Alertmanager's payload is read")
        return value


class AlertmanagerReceipt(BaseModel):
    received: int
    fired: int = Field(description="alerts that started firing (AlertFired published)")
    resolved: int
    duplicates: int = Field(0, description="alerts seen before, ignored")
    rules: list[str] = Field(default_factory=list, description="Stratus rules they named")
