"""Exports for an existing Prometheus and Grafana: a project's alert rules as a Prometheus rule
file (`stratus export prometheus-rules`, checked by `promtool check rules`), and a Grafana
dashboard of the platform's metrics (`stratus export grafana`). Pure builders: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from stratus.monitoring.alert_schemas import AlertRuleRead
from stratus.monitoring.alert_templates import to_go_template

GRAFANA_SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


# --- Prometheus rules ------------------------------------------------------------------------


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def promql_number(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def duration(seconds: float) -> str:
    """A Prometheus duration: `30s`, `1m30s`, `1500ms` (whole units only)."""
    millis = round(seconds * 1000)
    if millis % 1000:
        return f"{millis}ms"
    total = millis // 1000
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"


def rule_expression(project: str, rule: AlertRuleRead) -> str:
    """`metric{project="p",k="v"} > 0.5`: the same series and condition Stratus evaluates."""
    spec = rule.spec
    matchers = {"project": project, **{k: v for k, v in spec.match.items() if k != "project"}}
    selector = ",".join(f"{k}={promql_string(v)}" for k, v in sorted(matchers.items()))
    return f"{spec.metric}{{{selector}}} {spec.comparison} {promql_number(spec.threshold)}"


def prometheus_rules(project: str, rules: Iterable[AlertRuleRead]) -> dict[str, Any]:
    """A rule file (`groups:`) holding the project's enabled rules, one alert each, named
    like the rule (so Alertmanager can send them back to Stratus by `alertname`)."""
    alerts = []
    for rule in sorted(rules, key=lambda r: r.metadata.name):
        spec = rule.spec
        if not spec.enabled:
            continue
        name = rule.metadata.name
        alert: dict[str, Any] = {"alert": name, "expr": rule_expression(project, rule)}
        if spec.for_seconds > 0:
            alert["for"] = duration(spec.for_seconds)
        alert["labels"] = {
            **{k: v for k, v in sorted(rule.metadata.labels.items()) if _label_name(k)},
            "severity": spec.severity,
            "project": project,
        }
        annotations = {
            "summary": to_go_template(
                spec.summary,
                threshold=spec.threshold,
                metric=spec.metric,
                rule=name,
                severity=spec.severity,
                comparison=spec.comparison,
            )
        }
        if spec.description:
            annotations["description"] = _go_literal(spec.description)
        alert["annotations"] = annotations
        alerts.append(alert)
    return {"groups": [{"name": f"stratus-{project}", "rules": alerts}]}


def _label_name(key: str) -> bool:
    """Prometheus label names are narrower than Stratus label keys (no '/', '.', '-')."""
    return (
        bool(key)
        and (key[0].isalpha() or key[0] == "_")
        and all(c.isalnum() or c == "_" for c in key)
        and key.isascii()
    )


def _go_literal(text: str) -> str:
    return text.replace("{{", '{{ "{{" }}')


# --- Grafana ---------------------------------------------------------------------------------

_FILTER = 'project=~"$project",endpoint=~"$endpoint"'


def _per_variant(metric: str, extra: str = "") -> str:
    """The per-second rate of a counter, summed per endpoint variant, under the filters."""
    return f"sum by (endpoint, variant) (rate({metric}{{{_FILTER}{extra}}}[$__rate_interval]))"


def _target(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def _panel(
    panel_id: int,
    title: str,
    targets: Sequence[dict[str, Any]],
    grid: tuple[int, int, int, int],
    *,
    unit: str = "short",
    description: str = "",
    kind: str = "timeseries",
    max_value: float | None = None,
) -> dict[str, Any]:
    x, y, w, h = grid
    defaults: dict[str, Any] = {"unit": unit}
    if max_value is not None and math.isfinite(max_value):
        defaults["min"], defaults["max"] = 0, max_value
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": list(targets),
    }


def _row(panel_id: int, title: str, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "panels": [],
    }


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def grafana_dashboard(title: str = "Stratus", uid: str = "stratus-platform") -> dict[str, Any]:
    """A dashboard of the platform's metrics: traffic, errors, latency, replicas, batching,
    drift, model performance, jobs and cost, filtered by project and endpoint. Import it in Grafana
    (Dashboards → New → Import) and pick the Prometheus data source that scrapes Stratus."""
    rate = "[$__rate_interval]"
    by_variant = "endpoint, variant"
    panels: list[dict[str, Any]] = [_row(1, "Traffic", 0)]
    panels += [
        _panel(
            2,
            "Request rate",
            [
                _target(
                    _per_variant("stratus_inference_requests_total"),
                    "{{endpoint}}/{{variant}}",
                )
            ],
            (0, 1, 8, 8),
            unit="reqps",
        ),
        _panel(
            3,
            "Error ratio (5xx)",
            [
                _target(
                    _per_variant("stratus_inference_requests_total", ',code=~"5.."')
                    + " / "
                    + _per_variant("stratus_inference_requests_total"),
                    "{{endpoint}}/{{variant}}",
                )
            ],
            (8, 1, 8, 8),
            unit="percentunit",
            max_value=1.0,
        ),
        _panel(
            4,
            "Latency p95",
            [
                _target(
                    "histogram_quantile(0.95, sum by (le, endpoint, variant) "
                    f"(rate(stratus_inference_request_duration_seconds_bucket{{{_FILTER}}}{rate})))",
                    "{{endpoint}}/{{variant}}",
                )
            ],
            (16, 1, 8, 8),
            unit="s",
        ),
        _panel(
            5,
            "In-flight requests",
            [
                _target(
                    f"sum by ({by_variant}) (stratus_inference_in_flight_requests{{{_FILTER}}})",
                    "{{endpoint}}/{{variant}}",
                )
            ],
            (0, 9, 8, 8),
        ),
        _panel(
            6,
            "Replicas by phase",
            [
                _target(
                    f"sum by (endpoint, variant, phase) (stratus_endpoint_replicas{{{_FILTER}}})",
                    "{{endpoint}}/{{variant}} {{phase}}",
                )
            ],
            (8, 9, 8, 8),
        ),
        _panel(
            7,
            "Mean batch size",
            [
                _target(
                    _per_variant("stratus_inference_batch_size_sum")
                    + " / "
                    + _per_variant("stratus_inference_batch_size_count"),
                    "{{endpoint}}/{{variant}}",
                )
            ],
            (16, 9, 8, 8),
            description="rows per model call after adaptive batching",
        ),
        _row(8, "Drift and model performance", 17),
        _panel(
            9,
            "Drift share",
            [_target(f"stratus_drift_share{{{_FILTER}}}", "{{endpoint}} {{monitor}}")],
            (0, 18, 8, 8),
            unit="percentunit",
            max_value=1.0,
            description="share of a drift monitor's features that drifted",
        ),
        _panel(
            10,
            "Drift detected",
            [_target(f"stratus_drift_detected{{{_FILTER}}}", "{{endpoint}} {{monitor}}")],
            (8, 18, 8, 8),
            kind="stat",
            description="1 when the monitor's last run found the endpoint drifted",
        ),
        _panel(
            11,
            "Drift score by feature",
            [_target(f"stratus_drift_score{{{_FILTER}}}", "{{endpoint}} {{monitor}} {{feature}}")],
            (16, 18, 8, 8),
        ),
        _panel(
            12,
            "Model performance",
            [
                _target(
                    f"stratus_model_performance{{{_FILTER}}}",
                    "{{endpoint}} v{{model_version}} {{metric}}",
                )
            ],
            (0, 26, 24, 8),
            description="a performance monitor's metrics per model version, against ground truth",
        ),
        _row(13, "Jobs", 34),
        _panel(
            14,
            "Jobs by state",
            [_target('sum by (state) (stratus_jobs{project=~"$project"})', "{{state}}")],
            (0, 35, 12, 8),
        ),
        _panel(
            15,
            "Job queue length",
            [_target('sum(stratus_job_queue_length{project=~"$project"})', "queued")],
            (12, 35, 12, 8),
        ),
        _row(16, "Cost", 43),
        _panel(
            17,
            "Spend this month by project",
            [
                _target(
                    'sum by (project) (stratus_cost_month_to_date{project=~"$project"})',
                    "{{project}}",
                )
            ],  # fmt: skip
            (0, 44, 16, 8),
            unit="currencyUSD",
            description="what each project has spent this month, as of the last metering "
            "pass (docs/cost.md); the catalog's currency is the `currency` label",
        ),
        _panel(
            18,
            "Spend this month",
            [_target('sum(stratus_cost_month_to_date{project=~"$project"})', "total")],
            (16, 44, 8, 8),
            unit="currencyUSD",
            kind="stat",
        ),
    ]
    return {
        "uid": uid,
        "title": title,
        "description": "Stratus platform metrics (exported by `stratus export grafana`)",
        "tags": ["stratus"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": GRAFANA_SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "refresh": 1,
                    "current": {},
                },
                _variable("project", "Project", "label_values(stratus_endpoint_replicas, project)"),
                _variable(
                    "endpoint",
                    "Endpoint",
                    'label_values(stratus_endpoint_replicas{project=~"$project"}, endpoint)',
                ),
            ]
        },
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }
