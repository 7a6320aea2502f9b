"""The meter's background loop: a metering pass every `billing.meter_interval_seconds` (then
what reads its figures: the budgets), one more at shutdown (after the endpoint controller
stopped its replicas, so their last seconds are counted), and the month-to-date cost per
project for Prometheus."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stratus.billing.metering import Meter
from stratus.billing.service import BillingService
from stratus.core.loop import BackgroundLoop

log = logging.getLogger("stratus.billing")


class MeterController:
    def __init__(
        self,
        meter: Meter,
        billing: BillingService,
        interval_seconds: float,
        after: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.meter = meter
        self.billing = billing
        self.after = list(after)  # what reads the new figures: budgets
        self.month_to_date: dict[str, float] = {}
        self.currency = "USD"
        self._loop = BackgroundLoop(
            "metering usage",
            self._pass,
            interval_seconds,
            thread_name="stratus-meter",
            initial_delay_seconds=min(interval_seconds, 1.0),
            log=log,
        )

    def start(self) -> None:
        self._loop.start()

    def wake(self) -> None:
        self._loop.wake()

    def stop(self) -> None:
        self._loop.stop(timeout=30)
        try:
            self.meter.run()  # the last stretch: replicas the shutdown stopped
        except Exception:
            log.exception("metering at shutdown failed; the next start counts from the last pass")

    def _pass(self) -> None:
        self.meter.run()
        self.month_to_date = self.billing.month_to_date()
        self.currency = self.billing.prices()[1].currency
        for work in self.after:
            work()


class CostCollector(Collector):
    """`stratus_cost_month_to_date{project, currency}`, as of the last metering pass."""

    def __init__(self, controller: MeterController) -> None:
        self.controller = controller

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "stratus_cost_month_to_date",
            "What each project has spent this month, as of the last metering pass",
            labels=["project", "currency"],
        )
        currency = self.controller.currency
        for project, cost in sorted(self.controller.month_to_date.items()):
            gauge.add_metric([project, currency], cost)
        yield gauge
