"""The alert evaluator: a background loop (`core/loop.py`) that, every
`monitoring.alert_interval_seconds`, refreshes the gauges that read the database, collects
every sample of the platform's Prometheus registry (what `/metrics` shows) and evaluates each
rule against it (`AlertService.evaluate`). It starts and stops the notification dispatcher with
it.

`tick(now)` is one pass, called by the loop and by tests with a time of their choosing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry

from stratus.core.clock import utcnow
from stratus.core.loop import BackgroundLoop
from stratus.monitoring.alert_states import Sample
from stratus.monitoring.alerts import AlertService

log = logging.getLogger("stratus.alerts")


def collect_samples(registry: CollectorRegistry, attempts: int = 3) -> list[Sample]:
    """Every sample the registry holds now (counters as `<name>_total`)."""
    for attempt in range(attempts):
        try:
            return [
                Sample(sample.name, dict(sample.labels), float(sample.value))
                for family in registry.collect()
                for sample in family.samples
            ]
        except RuntimeError:  # a collector met a table changing under it: read again
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


class AlertEvaluator:
    def __init__(
        self,
        alerts: AlertService,
        registry: CollectorRegistry,
        interval_seconds: float,
        refresh: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.alerts = alerts
        self.registry = registry
        self.refresh = list(refresh)
        self._loop = BackgroundLoop(
            "evaluating alerts",
            self._pass,
            interval_seconds,
            thread_name="stratus-alerts",
            log=log,
        )

    def start(self) -> None:
        self.alerts.dispatcher.start()
        self._loop.start()

    def wake(self) -> None:
        self._loop.wake()

    def stop(self) -> None:
        self._loop.stop(timeout=30)
        self.alerts.dispatcher.stop()

    def _pass(self) -> None:
        self.tick(utcnow())

    def tick(self, now: datetime) -> int:
        """One pass over every rule; the number of transitions (firing or resolved)."""
        for refresh in self.refresh:
            try:
                refresh()
            except Exception:
                log.exception("refreshing a gauge failed")
        rules = self.alerts.rules_to_evaluate()
        if not rules:
            return 0
        samples = collect_samples(self.registry)
        changed = 0
        for rule in rules:
            if self._loop.stopping:
                break
            try:
                changed += len(self.alerts.evaluate(rule, samples, now))
            except Exception:
                log.exception("evaluating alert rule %s/%s failed", rule.project, rule.name)
        return changed
