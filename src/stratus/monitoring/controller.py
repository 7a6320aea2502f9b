"""The monitor controller: a background loop (`core/loop.py`) that runs due monitors (each at
its own interval) and keeps no state of its own: what is due is in the database
(`monitors.next_run_at`)."""

from __future__ import annotations

import logging

from stratus.core.clock import utcnow
from stratus.core.loop import BackgroundLoop
from stratus.monitoring.service import MonitorService

log = logging.getLogger("stratus.monitors")


class MonitorController:
    def __init__(self, service: MonitorService, interval_seconds: float) -> None:
        self.service = service
        self._loop = BackgroundLoop(
            "running monitors",
            self._pass,
            interval_seconds,
            thread_name="stratus-monitors",
            log=log,
        )

    def start(self) -> None:
        try:
            self.service.load_latest()
        except Exception:
            log.exception("reading the monitors' last results failed")
        self._loop.start()

    def wake(self) -> None:
        self._loop.wake()

    def stop(self) -> None:
        self._loop.stop(timeout=30)

    def tick(self) -> int:
        """Run every due monitor once; how many ran."""
        ran = 0
        for uid in self.service.due(utcnow()):
            if self._loop.stopping:
                break
            self.service.evaluate(uid)
            ran += 1
        return ran

    def _pass(self) -> None:
        self.tick()
