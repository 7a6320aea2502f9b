"""Alert summaries: `str.format` templates with a fixed set of placeholders, checked when a
rule is applied, rendered on a safe mapping (never `eval`), and translated into the Go
templates of a Prometheus rule file for `stratus export prometheus-rules`.

Placeholders: `{value}`, `{threshold}`, `{metric}`, `{rule}`, `{severity}`, `{comparison}`
and `{labels[NAME]}`; a format spec is allowed (`{value:.2f}`).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FIELDS = ("value", "threshold", "metric", "rule", "severity", "comparison")
DEFAULT_SUMMARY = "{rule}: {metric} is {value} ({comparison} {threshold})"
_LABEL_FIELD = re.compile(r"^labels\[([a-zA-Z_][a-zA-Z0-9_]*)\]$")
_PRINTF_SPEC = re.compile(r"^\.?\d*[fgeFGE]$")


class TemplateError(ValueError):
    """The template cannot be used (the message says what is wrong, for a 422)."""


class _Labels(dict[str, str]):
    """Labels for `{labels[name]}`: an absent label renders as an empty string."""

    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True)
class _Part:
    literal: str
    field: str | None
    spec: str
    conversion: str | None


def _parts(template: str) -> list[_Part]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"summary is not a valid template: {exc}") from None
    parts = []
    for literal, field, spec, conversion in parsed:
        if field is not None:
            if field == "" or field.isdigit():
                raise TemplateError(
                    "summary uses a positional placeholder '{}': name it, e.g. {value}"
                )
            if field not in FIELDS and not _LABEL_FIELD.match(field):
                allowed = ", ".join("{" + f + "}" for f in FIELDS)
                raise TemplateError(
                    f"summary uses the unknown placeholder {{{field}}}: use {allowed} "
                    "or {labels[NAME]}"
                )
            if spec and ("{" in spec or "}" in spec):
                raise TemplateError("summary: a format spec cannot hold another placeholder")
            if conversion not in (None, "s", "r"):
                raise TemplateError(f"summary: conversion !{conversion} is not allowed")
        parts.append(_Part(literal, field, spec or "", conversion))
    return parts


def check_template(template: str) -> str:
    """The template, if it renders with sample values; else a TemplateError saying why."""
    _parts(template)
    render(
        template,
        value=1.5,
        threshold=1.0,
        metric="stratus_metric",
        rule="rule",
        severity="warning",
        comparison=">",
        labels={},
    )
    return template


def render(
    template: str,
    *,
    value: float | None,
    threshold: float,
    metric: str,
    rule: str,
    severity: str,
    comparison: str,
    labels: Mapping[str, str],
) -> str:
    """Fill the template; a missing value renders as NaN, an absent label as ''."""
    values: dict[str, Any] = {
        "value": math.nan if value is None else value,
        "threshold": threshold,
        "metric": metric,
        "rule": rule,
        "severity": severity,
        "comparison": comparison,
        "labels": _Labels(labels),
    }
    _parts(template)  # refuses attribute access, indexing of other fields, positionals
    try:
        return template.format_map(values)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise TemplateError(f"summary cannot be rendered: {exc}") from None


def to_go_template(
    template: str, *, threshold: float, metric: str, rule: str, **static: str
) -> str:
    """The template as a Prometheus annotation (Go `text/template`): `{value}` becomes
    `{{ $value }}`, `{labels[x]}` `{{ $labels.x }}`; the rest is known when exporting."""
    constants: dict[str, Any] = {"threshold": threshold, "metric": metric, "rule": rule, **static}
    out: list[str] = []
    literal = ""  # literal text is escaped whole: '{' may arrive one piece at a time
    for part in _parts(template):
        literal += part.literal
        if part.field is None:
            continue
        out.append(_go_literal(literal))
        literal = ""
        if part.field == "value":
            if part.spec and _PRINTF_SPEC.match(part.spec):
                out.append('{{ printf "%' + part.spec + '" $value }}')
            else:
                out.append("{{ $value }}")
            continue
        label = _LABEL_FIELD.match(part.field)
        if label is not None:
            out.append("{{ $labels." + label.group(1) + " }}")
            continue
        value = constants.get(part.field, "")
        try:
            text = format(value, part.spec)
        except (ValueError, TypeError):
            text = str(value)
        literal = text
    out.append(_go_literal(literal))
    return "".join(out)


def _go_literal(text: str) -> str:
    """Literal text in a Go template: `{{` would open an action, so it is printed as a string."""
    return text.replace("{{", '{{ "{{" }}')
