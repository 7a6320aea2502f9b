"""Alert summary templates: rendered on a safe mapping, refused when they reach beyond the
placeholders, and translated to Prometheus' Go templates."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from stratus.monitoring.alert_schemas import AlertRuleApply
from stratus.monitoring.alert_templates import TemplateError, check_template, render, to_go_template

FIGURES = {
    "value": 0.25,
    "threshold": 0.1,
    "metric": "stratus_endpoint_error_ratio",
    "rule": "errors",
    "severity": "critical",
    "comparison": ">",
}


def test_render_fills_every_placeholder() -> None:
    text = render(
        "{rule} [{severity}]: {metric}={value:.2f} {comparison} {threshold} on {labels[endpoint]}",
        labels={"endpoint": "churn"},
        **FIGURES,  # type: ignore[arg-type]
    )
    assert text == "errors [critical]: stratus_endpoint_error_ratio=0.25 > 0.1 on churn"


def test_absent_labels_and_values_render_harmlessly() -> None:
    text = render("{labels[missing]}|{value}", labels={}, **{**FIGURES, "value": None})  # type: ignore[arg-type]
    assert text == "|nan"


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{value.__class__}", "unknown placeholder"),
        ("{labels.__class__}", "unknown placeholder"),
        ("{labels[a][b]}", "unknown placeholder"),
        ("{secret}", "unknown placeholder"),
        ("{}", "positional"),
        ("{0}", "positional"),
        ("{value:d}", "cannot be rendered"),
        ("{value", "not a valid template"),
        ("{value!a}", "conversion"),
        ("{value:{threshold}}", "format spec"),
    ],
)
def test_bad_templates_are_refused(template: str, says: str) -> None:
    with pytest.raises(TemplateError, match=says):
        check_template(template)


def test_a_bad_summary_is_a_validation_error_naming_summary() -> None:
    with pytest.raises(ValidationError) as info:
        AlertRuleApply.model_validate(
            {"name": "r", "metric": "m", "threshold": 1, "summary": "{value.__globals__}"}
        )
    error = info.value.errors()[0]
    assert error["loc"] == ("summary",)
    assert "unknown placeholder" in error["msg"]


def test_go_templates() -> None:
    go = to_go_template(
        "{rule}: {metric} is {value:.2f} (> {threshold}) on {labels[endpoint]} {{literal}}",
        threshold=0.1,
        metric="m",
        rule="r",
    )
    assert go == ('r: m is {{ printf "%.2f" $value }} (> 0.1) on {{ $labels.endpoint }} {literal}')
    assert to_go_template("{value}", threshold=1.0, metric="m", rule="r") == "{{ $value }}"
    # a literal '{{' in the output would open a Go action: it is printed as a string
    assert to_go_template("{{{{x}}}}", threshold=1.0, metric="m", rule="r") == '{{ "{{" }}x}}'


def test_threshold_must_be_finite() -> None:
    for bad in (math.inf, math.nan):
        with pytest.raises(ValidationError, match="finite"):
            AlertRuleApply.model_validate({"name": "r", "metric": "m", "threshold": bad})
