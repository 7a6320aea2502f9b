"""The monitors' Prometheus gauges (drift and performance, from each monitor's newest result)
and the data-capture counters. Names and labels are a contract: see docs/monitoring.md."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from stratus.monitoring.capture import CaptureStore
from stratus.monitoring.service import MonitorService

_MONITOR = ["project", "endpoint", "monitor"]


class MonitoringCollector(Collector):
    def __init__(self, monitors: MonitorService, captures: CaptureStore) -> None:
        self.monitors = monitors
        self.captures = captures

    def collect(self) -> Iterator[Any]:
        share = GaugeMetricFamily(
            "stratus_drift_share",
            "share of a drift monitor's features that drifted",
            labels=_MONITOR,
        )
        detected = GaugeMetricFamily(
            "stratus_drift_detected",
            "1 when a drift monitor's last run found the endpoint drifted",
            labels=_MONITOR,
        )
        score = GaugeMetricFamily(
            "stratus_drift_score",
            "a feature's drift score (its test's: Wasserstein, JS distance, PSI or p-value)",
            labels=[*_MONITOR, "feature"],
        )
        perf = GaugeMetricFamily(
            "stratus_model_performance",
            "a performance monitor's metric per model version, against ground truth",
            labels=[*_MONITOR, "model_version", "metric"],
        )
        alarm = GaugeMetricFamily(
            "stratus_monitor_alarm", "1 when a monitor's last run raised an alarm", labels=_MONITOR
        )
        version_alarm = GaugeMetricFamily(
            "stratus_monitor_version_alarm",
            "1 when a performance monitor's last run found this model version out of bounds",
            labels=[*_MONITOR, "model_version"],
        )
        for latest in list(self.monitors.latest.values()):
            labels = [latest.project, latest.endpoint, latest.monitor]
            alarm.add_metric(labels, 1.0 if latest.alarm else 0.0)
            if latest.type == "drift":
                share.add_metric(labels, latest.score or 0.0)
                detected.add_metric(labels, 1.0 if latest.alarm else 0.0)
                for feature, value in latest.features.items():
                    score.add_metric([*labels, feature], value)
            else:
                for version, metrics in latest.performance.items():
                    for metric, value in metrics.items():
                        perf.add_metric([*labels, version, metric], value)
                for version, out in latest.version_alarms.items():
                    version_alarm.add_metric([*labels, version], 1.0 if out else 0.0)
        yield from (share, detected, score, perf, alarm, version_alarm)
        buffer = self.captures.buffer
        yield CounterMetricFamily(
            "stratus_capture_records", "requests captured by the gateway", value=buffer.accepted
        )
        yield CounterMetricFamily(
            "stratus_capture_dropped",
            "captured requests dropped because the writer fell behind",
            value=buffer.dropped,
        )
        yield CounterMetricFamily(
            "stratus_capture_rows_written",
            "captured rows written to Parquet",
            value=self.captures.written,
        )
        yield GaugeMetricFamily(
            "stratus_capture_pending",
            "captured requests not written yet (buffered, or in the flush under way)",
            value=len(buffer) + self.captures.writing,
        )
