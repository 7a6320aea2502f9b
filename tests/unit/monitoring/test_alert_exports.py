"""The exports for Prometheus and Grafana: rule expressions, durations and labels as a
Prometheus rule file expects them, and a dashboard with the platform's metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from stratus.core.resources import Metadata
from stratus.monitoring.alert_schemas import AlertRuleRead, AlertRuleSpec, AlertRuleStatus
from stratus.monitoring.exports import (
    duration,
    grafana_dashboard,
    prometheus_rules,
    promql_string,
    rule_expression,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def rule(name: str, labels: dict[str, str] | None = None, **spec: Any) -> AlertRuleRead:
    base = {"metric": "stratus_endpoint_error_ratio", "comparison": ">", "threshold": 0.05}
    return AlertRuleRead(
        metadata=Metadata(
            name=name,
            uid="u",
            project="shop",
            labels=labels or {},
            resource_version=1,
            created_at=NOW,
            updated_at=NOW,
        ),  # fmt: skip
        spec=AlertRuleSpec.model_validate({**base, **spec}),
        status=AlertRuleStatus(),
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (30, "30s"), (90, "1m30s"), (3600, "1h"), (3661, "1h1m1s"), (1.5, "1500ms")],
)
def test_durations(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_expressions_force_the_project_and_escape_values() -> None:
    r = rule("r", match={"endpoint": 'we"ird\\name', "variant": "main"}, comparison="<=",
             threshold=2.0)  # fmt: skip
    assert rule_expression("shop", r) == (
        'stratus_endpoint_error_ratio{endpoint="we\\"ird\\\\name",project="shop",'
        'variant="main"} <= 2'
    )
    assert promql_string("a\nb") == '"a\\nb"'


def test_rule_file() -> None:
    rules = [
        rule("errors", labels={"team": "ml", "app.kubernetes.io/name": "x"},
             match={"endpoint": "churn"}, for_seconds=60, severity="critical",
             summary="{labels[endpoint]} errors at {value:.1%} (> {threshold})",
             description="see the runbook {{here}}"),
        rule("off", enabled=False),
        rule("replicas", metric="stratus_endpoint_replicas", comparison="<", threshold=1,
             match={"phase": "ready"}),
    ]  # fmt: skip
    document = prometheus_rules("shop", rules)
    group = document["groups"][0]
    assert group["name"] == "stratus-shop"
    assert [r["alert"] for r in group["rules"]] == ["errors", "replicas"]
    errors, replicas = group["rules"]
    assert errors["expr"] == 'stratus_endpoint_error_ratio{endpoint="churn",project="shop"} > 0.05'
    assert errors["for"] == "1m"
    # Prometheus label names only: the Kubernetes-style key is left out
    assert errors["labels"] == {"team": "ml", "severity": "critical", "project": "shop"}
    assert errors["annotations"]["summary"] == (
        "{{ $labels.endpoint }} errors at {{ $value }} (> 0.05)"
    )
    assert errors["annotations"]["description"] == 'see the runbook {{ "{{" }}here}}'
    assert "for" not in replicas
    assert replicas["expr"] == 'stratus_endpoint_replicas{phase="ready",project="shop"} < 1'


def test_grafana_dashboard() -> None:
    dashboard = grafana_dashboard()
    json.dumps(dashboard)  # plain JSON
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"project", "endpoint"} <= set(variables)
    exprs = " ".join(
        t["expr"] for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]
    )
    for metric in (
        "stratus_inference_requests_total",
        "histogram_quantile(0.95",
        "stratus_inference_request_duration_seconds_bucket",
        "stratus_inference_in_flight_requests",
        "stratus_endpoint_replicas",
        "stratus_inference_batch_size_sum",
        "stratus_drift_share",
        "stratus_drift_detected",
        "stratus_drift_score",
        "stratus_model_performance",
        "stratus_jobs",
        "stratus_job_queue_length",
        "stratus_cost_month_to_date",
    ):
        assert metric in exprs, metric
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
