"""The monitor controller: a thread that runs due monitors (each at its own interval) and
keeps no state of its own: what is due is in the database (`monitors.next_run_at`)."""

from __future__ import annotations

import logging
import threading

from stratus.core.clock import utcnow
from stratus.monitoring.service import MonitorService

log = logging.getLogger("stratus.monitors")


class MonitorController:
    def __init__(self, service: MonitorService, interval_seconds: float) -> None:
        self.service = service
        self.interval = interval_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self.service.load_latest()
        except Exception:
            log.exception("reading the monitors' last results failed")
        self._thread = threading.Thread(target=self._loop, name="stratus-monitors", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def tick(self) -> int:
        """Run every due monitor once; how many ran."""
        ran = 0
        for uid in self.service.due(utcnow()):
            if self._stop.is_set():
                break
            self.service.evaluate(uid)
            ran += 1
        return ran

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the controller must outlive a passing database error
                log.exception("monitor controller: will retry")
            self._wake.wait(self.interval)
            self._wake.clear()
