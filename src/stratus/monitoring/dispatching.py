"""Notifications through the outbox: an alert's state change writes one outbox row per channel
in the transaction that records it (`AlertService`), and the dispatcher here — a background
loop (`core/loop.py`) woken after that commit — claims the due rows and has the `Notifier` send
them, a few channels at a time. A row goes once its channel has answered (or failed every quick
retry, which is recorded on the event); a crash before that sends it again at the next start:
at least once.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from stratus.core.loop import BackgroundLoop
from stratus.core.outbox import Message, Outbox
from stratus.monitoring.notifications import Dispatch, Notification, Notifier

log = logging.getLogger("stratus.alerts")

TOPIC = "alerts.notification"
WORKERS = 4


def _number(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return repr(value)  # nan, inf, -inf: not JSON numbers


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def encode(
    project: str, channel: str, notification: Notification, event_id: int | None
) -> dict[str, Any]:
    n = notification
    return {
        "project": project,
        "channel": channel,
        "event_id": event_id,
        "notification": {
            "rule": n.rule,
            "project": n.project,
            "state": n.state,
            "severity": n.severity,
            "metric": n.metric,
            "comparison": n.comparison,
            "threshold": _number(n.threshold),
            "value": _number(n.value),
            "labels": dict(n.labels),
            "summary": n.summary,
            "started_at": _time(n.started_at),
            "ended_at": _time(n.ended_at),
            "test": n.test,
            "source": n.source,
            "description": n.description,
        },
    }


def decode(payload: dict[str, Any]) -> Dispatch:
    raw = dict(payload["notification"])
    for name in ("threshold", "value"):
        if raw[name] is not None:
            raw[name] = float(raw[name])
    for name in ("started_at", "ended_at"):
        if raw[name] is not None:
            raw[name] = datetime.fromisoformat(raw[name])
    event_id = payload.get("event_id")
    return Dispatch(
        payload["project"],
        (payload["channel"],),
        Notification(**raw),
        event_id=int(event_id) if event_id is not None else None,
    )


class NotificationDispatcher:
    def __init__(self, outbox: Outbox, notifier: Notifier, interval_seconds: float = 5.0) -> None:
        self.outbox = outbox
        self.notifier = notifier
        self._pool: ThreadPoolExecutor | None = None  # while started: sends channels at once
        self._loop = BackgroundLoop(
            "sending notifications",
            self._pass,
            interval_seconds,
            thread_name="stratus-notify",
            interrupt=lambda: self.notifier.stop(),  # cuts short the backoff of a send
            log=log,
        )

    def enqueue(
        self,
        session: Session,
        project: str,
        channels: tuple[str, ...],
        notification: Notification,
        event_id: int | None,
    ) -> None:
        """Queue the notification for each channel in the caller's transaction."""
        for channel in channels:
            self.outbox.add(session, TOPIC, encode(project, channel, notification, event_id))

    def pending(self) -> list[Dispatch]:
        return [decode(m.payload) for m in self.outbox.pending([TOPIC])]

    def start(self) -> None:
        self.notifier.start()
        released = self.outbox.release([TOPIC])
        if released:
            log.info("sending %d notification(s) left over from the last run", released)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="stratus-notify")
        self._loop.start()

    def wake(self) -> None:
        self._loop.wake()

    def stop(self) -> None:
        self._loop.stop(timeout=60)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _pass(self) -> None:
        self.tick(self._pool)

    def tick(self, pool: ThreadPoolExecutor | None = None) -> int:
        """Send the due notifications; how many rows were claimed. One channel's rows go in
        order, one after another; different channels at the same time (on `pool`)."""
        messages = self.outbox.claim([TOPIC])
        lanes: dict[tuple[str, str], list[Message]] = defaultdict(list)
        for message in messages:
            lanes[(message.payload["project"], message.payload["channel"])].append(message)
        if pool is None:
            for lane in lanes.values():
                self._send(lane)
        else:
            for future in [pool.submit(self._send, lane) for lane in lanes.values()]:
                future.result()
        return len(messages)

    def _send(self, lane: list[Message]) -> None:
        for message in lane:
            if self._loop.stopping:
                return  # claimed, not sent: released at the next start
            try:
                results = self.notifier.deliver(decode(message.payload))
            except Exception as exc:
                log.exception("sending notification %d failed; will retry", message.id)
                self.outbox.retry(message, f"{type(exc).__name__}: {exc}")
                continue
            if self._loop.stopping and not all(r.ok for r in results):
                return  # cut short by the shutdown: sent again at the next start
            self.outbox.done(message.id)
