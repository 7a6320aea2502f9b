"""Notifications: what an alert tells a channel, the three ways to tell it (a generic webhook
with an Alertmanager-like JSON body, a Slack-compatible webhook, email over SMTP), and the
background sender that retries failures off the evaluator's path.

`send` never raises: every failure becomes `ok=False` with a detail that names what went
wrong (an HTTP status, a refused connection, a timeout) and never a secret.
"""

from __future__ import annotations

import hashlib
import json
import logging
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

import httpx

from stratus._version import __version__
from stratus.core.errors import StratusError
from stratus.monitoring.alert_schemas import NotificationResult
from stratus.monitoring.destinations import (
    DestinationRefused,
    IPAddress,
    NetworkPolicy,
    Unresolvable,
)

log = logging.getLogger("stratus.alerts")

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "not ended"
ATTEMPTS = 3
BACKOFF_SECONDS = (0.5, 2.0)  # before the second and third attempts


@dataclass(frozen=True)
class Notification:
    """One alert state change, as every channel type receives it."""

    rule: str
    project: str
    state: str  # firing | resolved
    severity: str
    metric: str
    comparison: str
    threshold: float | None
    value: float | None
    labels: dict[str, str]
    summary: str
    started_at: datetime | None
    ended_at: datetime | None = None
    test: bool = False
    source: str = "stratus"
    description: str = ""

    @property
    def title(self) -> str:
        head = f"[{self.state.upper()}:{self.severity}] {self.rule} — {self.summary}"
        return f"[TEST] {head}" if self.test else head

    def alert_labels(self) -> dict[str, str]:
        """The labels of the alert: the series', then the rule's name, project and severity."""
        return {
            **self.labels,
            "alertname": self.rule,
            "project": self.project,
            "severity": self.severity,
        }


@dataclass(frozen=True)
class ChannelConfig:
    """A channel with its secrets open: only ever held in memory, to send."""

    name: str
    type: str  # webhook | slack | email
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    to: tuple[str, ...] = ()
    sender: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    networks: NetworkPolicy = field(default_factory=NetworkPolicy)  # where it may connect

    def __repr__(self) -> str:  # never print a secret, not even in a traceback
        return f"ChannelConfig(name={self.name!r}, type={self.type!r})"


# --- bodies ----------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str:
    return value.isoformat().replace("+00:00", "Z") if value is not None else ZERO_TIME


def fingerprint(labels: dict[str, str]) -> str:
    raw = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def webhook_body(n: Notification, receiver: str) -> dict[str, Any]:
    """Alertmanager's webhook body (version 4), so receivers written for Alertmanager read it,
    plus a `stratus` object with the rule's figures."""
    labels = n.alert_labels()
    annotations = {"summary": n.summary}
    if n.description:
        annotations["description"] = n.description
    return {
        "version": "4",
        "groupKey": f"stratus/{n.project}/{n.rule}",
        "truncatedAlerts": 0,
        "status": n.state,
        "receiver": receiver,
        "groupLabels": {"alertname": n.rule},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [
            {
                "status": n.state,
                "labels": labels,
                "annotations": annotations,
                "startsAt": _iso(n.started_at),
                "endsAt": _iso(n.ended_at) if n.state == "resolved" else ZERO_TIME,
                "generatorURL": "",
                "fingerprint": fingerprint(labels),
            }
        ],
        "stratus": {
            "project": n.project,
            "rule": n.rule,
            "metric": n.metric,
            "comparison": n.comparison,
            "threshold": n.threshold,
            "value": n.value,
            "severity": n.severity,
            "source": n.source,
            "test": n.test,
        },
    }


def slack_body(n: Notification) -> dict[str, Any]:
    """A Slack (or Mattermost, Rocket.Chat…) incoming-webhook message: `text` for clients
    that show no blocks, and blocks for those that do."""
    icon = {"firing": ":rotating_light:", "resolved": ":white_check_mark:"}.get(n.state, "")
    figures = f"`{n.metric}` = {_num(n.value)} ({n.comparison} {_num(n.threshold)})"
    labels = ", ".join(f"{k}={v}" for k, v in sorted(n.labels.items())) or "-"
    return {
        "text": f"{icon} {n.title}".strip(),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": n.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{n.summary}\n{figures}"}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"project *{n.project}* · severity *{n.severity}* · {labels}",
                    }
                ],
            },
        ],
    }


def email_message(n: Notification, sender: str, to: tuple[str, ...]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = n.title.replace("\n", " ")[:250]
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain="stratus.local")
    lines = [
        n.summary,
        "",
        f"rule:       {n.rule}",
        f"project:    {n.project}",
        f"state:      {n.state}{' (test)' if n.test else ''}",
        f"severity:   {n.severity}",
        f"metric:     {n.metric} = {_num(n.value)} ({n.comparison} {_num(n.threshold)})",
        f"since:      {_iso(n.started_at) if n.started_at else '-'}",
    ]
    if n.state == "resolved":
        lines.append(f"resolved:   {_iso(n.ended_at)}")
    lines += ["", "labels:"] + [f"  {k}={v}" for k, v in sorted(n.labels.items())]
    if n.description:
        lines += ["", n.description]
    lines += ["", f"-- Stratus {__version__}"]
    message.set_content("\n".join(lines) + "\n")
    return message


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


# --- sending ---------------------------------------------------------------------------------


def _where(url: str) -> str:
    """scheme://host:port of a URL: enough to say where, never the path or query (a Slack
    URL's path is its secret)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def send(channel: ChannelConfig, notification: Notification, timeout: float) -> NotificationResult:
    """Deliver one notification once; failures are results, never exceptions."""
    try:
        if channel.type == "email":
            detail = _send_email(channel, notification, timeout)
        else:
            detail = _post(channel, notification, timeout)
        return NotificationResult(channel=channel.name, ok=True, detail=detail)
    except _Failed as exc:
        return NotificationResult(channel=channel.name, ok=False, detail=str(exc))
    except Exception as exc:  # a channel must never take the evaluator down
        log.exception("notifying channel %s failed unexpectedly", channel.name)
        return NotificationResult(
            channel=channel.name, ok=False, detail=f"unexpected error: {type(exc).__name__}"
        )


class _Failed(Exception):
    """A delivery failed; the message is safe to show and store."""


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _address(networks: NetworkPolicy, host: str, port: int, where: str) -> IPAddress:
    """The address to connect to: `host` resolved now, every answer checked, the first one
    kept — the connection goes to it, so no second DNS answer can differ."""
    try:
        return networks.check(host, port)[0]
    except DestinationRefused as exc:
        raise _Failed(f"refused to send to {where}: {exc}") from None
    except Unresolvable:
        raise _Failed(f"{where} does not resolve") from None


def _post(channel: ChannelConfig, n: Notification, timeout: float) -> str:
    if not channel.url:
        raise _Failed("the channel has no url")
    where = _where(channel.url)
    try:
        url = httpx.URL(channel.url)
        host = url.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeDecodeError):
        raise _Failed("the channel's url is not valid") from None
    address = _address(
        channel.networks, host, url.port or _DEFAULT_PORTS.get(url.scheme, 80), where
    )
    body = slack_body(n) if channel.type == "slack" else webhook_body(n, channel.name)
    headers = {k: v for k, v in channel.headers.items() if k.lower() != "host"}
    # the request goes to the checked address; Host and TLS (SNI, certificate) name the host
    headers = {"user-agent": f"stratus/{__version__}", **headers, "host": url.netloc.decode()}
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream(
                "POST",
                url.copy_with(host=str(address)),
                json=body,
                headers=headers,
                extensions=extensions,
            ) as response,
        ):
            status = response.status_code  # the answer's body is never read, shown or logged
    except httpx.ConnectError as exc:
        refused = "refused" in str(exc).lower()
        raise _Failed(
            f"connection {'refused' if refused else 'failed'} by {where}"
            + ("" if refused else f" ({type(exc).__name__})")
        ) from None
    except httpx.TimeoutException:
        raise _Failed(f"{where} did not answer within {timeout:g}s") from None
    except httpx.HTTPError as exc:
        raise _Failed(f"sending to {where} failed ({type(exc).__name__})") from None
    if status >= 300:
        raise _Failed(f"{where} answered HTTP {status}")
    return f"HTTP {status} from {where}"


class _PinnedSMTP(smtplib.SMTP):
    """SMTP with a server at an address checked beforehand, while the session (STARTTLS's
    server name and certificate check) still names its host."""

    def __init__(self, address: IPAddress, host: str, port: int, timeout: float) -> None:
        self._address = str(address)
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((self._address, port), timeout, self.source_address)


def _send_email(channel: ChannelConfig, n: Notification, timeout: float) -> str:
    if not (channel.smtp_host and channel.sender and channel.to):
        raise _Failed("the channel lacks smtp_host, sender or recipients")
    where = f"{channel.smtp_host}:{channel.smtp_port}"
    message = email_message(n, channel.sender, channel.to)
    address = _address(channel.networks, channel.smtp_host, channel.smtp_port, where)
    try:
        with _PinnedSMTP(address, channel.smtp_host, channel.smtp_port, timeout) as smtp:
            if channel.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if channel.username:
                smtp.login(channel.username, channel.password or "")
            refused = smtp.send_message(message)
    except smtplib.SMTPNotSupportedError:
        raise _Failed(f"{where} does not offer STARTTLS (set starttls: false)") from None
    except smtplib.SMTPAuthenticationError as exc:
        raise _Failed(f"{where} refused the login (SMTP {exc.smtp_code})") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise _Failed(f"{where} refused every recipient ({', '.join(exc.recipients)})") from None
    except smtplib.SMTPResponseException as exc:  # the server's text is not repeated
        raise _Failed(f"{where} answered SMTP {exc.smtp_code}") from None
    except smtplib.SMTPException as exc:
        raise _Failed(f"SMTP with {where} failed: {type(exc).__name__}") from None
    except ConnectionRefusedError:
        raise _Failed(f"connection refused by {where}") from None
    except TimeoutError:
        raise _Failed(f"{where} did not answer within {timeout:g}s") from None
    except ssl.SSLError as exc:
        raise _Failed(f"TLS with {where} failed: {exc.reason or type(exc).__name__}") from None
    except OSError as exc:
        raise _Failed(f"cannot reach {where}: {exc.strerror or type(exc).__name__}") from None
    if refused:
        return f"sent by {where}; refused: {', '.join(sorted(refused))}"
    return f"sent by {where} to {len(channel.to)} recipient(s)"


# --- the background sender -------------------------------------------------------------------


@dataclass(frozen=True)
class Dispatch:
    """Notify these channels of a project about a change (recorded on event `event_id`)."""

    project: str
    channels: tuple[str, ...]
    notification: Notification
    event_id: int | None = None


ChannelResolver = Callable[[str, str], ChannelConfig | None]
ResultRecorder = Callable[[int, list[NotificationResult]], None]


class Notifier:
    """Sends a dispatch to each of its channels, each up to three times with a short backoff,
    then records what each channel answered on the event. `dispatching.py` calls it for the
    outbox rows of notifications, on a small thread pool."""

    def __init__(
        self,
        resolve: ChannelResolver,
        record: ResultRecorder,
        timeout_seconds: float,
        *,
        backoff: tuple[float, ...] = BACKOFF_SECONDS,
        sender: Callable[[ChannelConfig, Notification, float], NotificationResult] = send,
    ) -> None:
        self.resolve = resolve
        self.record = record
        self.timeout = timeout_seconds
        self.backoff = backoff
        self.sender = sender
        self._stop = threading.Event()

    def start(self) -> None:
        self._stop.clear()

    def stop(self) -> None:
        """Cut short the backoff of deliveries under way."""
        self._stop.set()

    def deliver_now(self, dispatch: Dispatch, attempts: int = 1) -> list[NotificationResult]:
        """Send on the caller's thread (a test notification); nothing is recorded."""
        return [self._one(dispatch, name, attempts) for name in dispatch.channels]

    def deliver(self, dispatch: Dispatch) -> list[NotificationResult]:
        """Send to every channel (with retries), then record the answers on the event."""
        results = [self._one(dispatch, name, ATTEMPTS) for name in dispatch.channels]
        if dispatch.event_id is not None:
            self.record(dispatch.event_id, results)
        return results

    def _one(self, dispatch: Dispatch, name: str, attempts: int) -> NotificationResult:
        try:
            channel = self.resolve(dispatch.project, name)
        except StratusError as exc:  # a secret it names is gone
            return NotificationResult(channel=name, ok=False, detail=exc.detail, attempts=0)
        if channel is None:
            return NotificationResult(
                channel=name, ok=False, detail=f"channel {name!r} not found", attempts=0
            )
        result = NotificationResult(channel=name, ok=False, detail="not sent", attempts=0)
        for attempt in range(1, attempts + 1):
            result = self.sender(channel, dispatch.notification, self.timeout)
            result = result.model_copy(update={"attempts": attempt})
            if result.ok:
                break
            if attempt < attempts:
                delay = self.backoff[min(attempt - 1, len(self.backoff) - 1)] if self.backoff else 0
                if self._stop.wait(delay):
                    break
        if not result.ok:
            log.warning(
                "notifying channel %s of %s/%s failed: %s",
                name,
                dispatch.project,
                dispatch.notification.rule,
                result.detail,
            )
        return result
