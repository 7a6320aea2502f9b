"""`stratus export`: what an existing Prometheus and Grafana need — a project's alert rules as
a Prometheus rule file, and a Grafana dashboard of the platform's metrics."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.output import err
from stratus.monitoring.exports import grafana_dashboard, prometheus_rules

app = typer.Typer(
    help="Export for Prometheus and Grafana: alert rules, a dashboard.", no_args_is_help=True
)

OutFile = Annotated[
    Path | None,
    typer.Option("--output-file", "-o", help="write here (default: standard output)"),
]


def _write(text: str, target: Path | None) -> None:
    if target is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target.write_text(text, encoding="utf-8")
    err.print(f"wrote {target}", markup=False, highlight=False)


@app.command("prometheus-rules")
def prometheus_rules_(
    ctx: typer.Context, project: ProjectOption = None, output_file: OutFile = None
) -> None:
    """Write the project's enabled alert rules as a Prometheus rule file (check it with
    `promtool check rules FILE`).

    Example: stratus export prometheus-rules -p churn -o stratus-rules.yml
    """
    where = project_of(ctx, project)
    rules = client(ctx).alerts.list(where)
    document = prometheus_rules(where, rules)
    _write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000), output_file)


@app.command("grafana")
def grafana(
    output_file: OutFile = None,
    title: Annotated[str, typer.Option(help="the dashboard's title")] = "Stratus",
) -> None:
    """Write a Grafana dashboard (JSON) of the platform's metrics: traffic, errors, latency,
    replicas, batching, drift, model performance and jobs.

    Example: stratus export grafana -o stratus-dashboard.json
    """
    _write(json.dumps(grafana_dashboard(title=title), indent=2) + "\n", output_file)
