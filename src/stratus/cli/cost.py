"""`stratus cost`: what projects spent, from the metered usage (`report`), and `stratus prices`:
the price catalog that usage is priced at (`list`, `versions`, `apply`)."""

from __future__ import annotations

import csv
import io
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from stratus.billing.schemas import CostLine, CostReport
from stratus.cli.context import ProjectOption, client
from stratus.cli.listing import AllProjectsOption
from stratus.cli.output import Format, OutputOption, console, show

app = typer.Typer(help="Cost: reports of what projects spent.", no_args_is_help=True)
prices_app = typer.Typer(
    help="The price catalog: list it, its versions, apply a new one (admins).",
    no_args_is_help=True,
)


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"
    csv = "csv"


CSV_FIELDS = list(CostLine.model_fields)


def _money(value: float, currency: str) -> str:
    symbol = "$" if currency == "USD" else f"{currency} "
    if value and abs(value) < 0.01:
        return f"{symbol}{value:.6f}"
    return f"{symbol}{value:,.2f}"


@app.command("report")
def report(
    ctx: typer.Context,
    by: Annotated[
        str,
        typer.Option("--by", help="project, endpoint, model, job or instance-type"),
    ] = "project",
    start: Annotated[
        str | None,
        typer.Option("--from", help="ISO date or time, UTC (default: the start of the month)"),
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="ISO date or time (default: now)")] = None,
    granularity: Annotated[
        str, typer.Option("--granularity", "-g", help="day, hour or total")
    ] = "day",
    project: ProjectOption = None,
    all_projects: AllProjectsOption = False,
    output: Annotated[
        ReportFormat,
        typer.Option("--output", "-o", help="table, json, yaml or csv", case_sensitive=False),
    ] = ReportFormat.table,
) -> None:
    """What a project spent, by project, endpoint, model version (training and serving
    together), job or instance type, per day or hour. Idle cost (replicas that served no
    request) is part of each line's cost and shown apart; the month's forecast follows.

    Example: stratus cost report --by endpoint --from 2026-12-01 --granularity day
    """
    found = client(ctx).cost.report(
        by=by,
        start=start,
        end=end,
        granularity=granularity,
        project=project,
        all_projects=all_projects,
    )
    if output is ReportFormat.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for line in found.lines:
            writer.writerow(line.model_dump(mode="json"))
        typer.echo(buffer.getvalue(), nl=False)
        return
    if output is not ReportFormat.table:
        show(found, Format(output.value))
        return
    _table(found)


def _table(found: CostReport) -> None:
    money = found.currency
    columns = []
    if found.granularity != "total":
        columns.append(("PERIOD", lambda line: line.period[:16].replace("T", " ")))
    columns.append(("PROJECT", lambda line: line.project))
    if found.by != "project":
        columns.append((found.by.upper(), lambda line: line.name or "(project data)"))
    columns += [
        ("COST", lambda line: _money(line.cost, money)),
        ("IDLE", lambda line: _money(line.idle_cost, money) if line.idle_cost else "-"),
        ("REQUESTS", lambda line: f"{line.requests:,}" if line.requests else "-"),
        (
            "PER REQUEST",
            lambda line: _money(line.cost_per_request, money) if line.cost_per_request else "-",
        ),
        ("INSTANCE-H", lambda line: f"{line.instance_hours:,.2f}" if line.instance_hours else "-"),
    ]
    if found.by == "job":
        columns.append(
            (
                "PREEMPTED-H",
                lambda line: f"{line.preempted_hours:,.2f}" if line.preempted_hours else "-",
            )
        )
    columns += [
        ("GIB-H", lambda line: f"{line.gib_hours:,.1f}" if line.gib_hours else "-"),
    ]
    if found.lines:
        show(found.lines, Format.table, columns)
    else:
        console.print("no metered usage in this range")
    start, end = found.start.strftime("%Y-%m-%d %H:%M"), found.end.strftime("%Y-%m-%d %H:%M")
    console.print(
        f"total {_money(found.total, money)} (idle {_money(found.idle_total, money)}) "
        f"from {start} to {end} UTC"
    )
    forecast = found.forecast
    console.print(
        f"{forecast.month}: {_money(forecast.to_date, money)} so far, "
        f"{_money(forecast.projected, money)} forecast for the month"
    )


@app.command("recommendations")
def recommendations(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=1, max=90, help="the window of usage looked at")] = 14,
    project: ProjectOption = None,
    all_projects: AllProjectsOption = False,
    output: OutputOption = Format.table,
) -> None:
    """Where to spend less, each with its monthly saving: idle endpoints, over-provisioned
    variants, jobs cheaper on spot, steady capacity cheaper reserved (with its break-even).

    Example: stratus cost recommendations -p fraud --days 30
    """
    found = client(ctx).cost.recommendations(days=days, project=project, all_projects=all_projects)
    if output is not Format.table:
        show(found, output)
        return
    money = found.currency
    columns = [
        ("KIND", lambda r: r.kind),
        ("PROJECT", lambda r: r.project),
        ("SUBJECT", lambda r: r.subject),
        ("SAVES/MONTH", lambda r: _money(r.monthly_saving, money)),
        ("WHY", lambda r: r.reason),
        ("DO", lambda r: r.action),
    ]
    if found.items:
        show(found.items, Format.table, columns)
    else:
        console.print(f"nothing to recommend from the last {found.days} days")
    console.print(f"{_money(found.total_monthly_saving, money)} a month in all")


@prices_app.command("list")
def list_prices(
    ctx: typer.Context,
    version: Annotated[int | None, typer.Option("--version", help="an older version")] = None,
    output: OutputOption = Format.table,
) -> None:
    """The price catalog in force: per instance-hour (on-demand, spot, reserved), storage per
    GiB-month, function requests and compute.

    Example: stratus prices list
    """
    found = client(ctx).prices.get(version)
    if output is not Format.table:
        show(found, output)
        return
    catalog = found.catalog
    money = catalog.get("currency", "USD")
    rows = [
        {"name": name, **price} for name, price in sorted(catalog.get("instance_types", {}).items())
    ]
    columns = [
        ("INSTANCE TYPE", lambda r: r["name"]),
        ("ON-DEMAND/H", lambda r: _money(r["on_demand"], money)),
        ("SPOT/H", lambda r: _money(r["spot"], money)),
        ("RESERVED/H", lambda r: _money(r["reserved"], money)),
    ]
    show(rows, Format.table, columns)
    console.print(
        f"storage {_money(catalog['storage_gib_month'], money)} per GiB-month; functions "
        f"{_money(catalog['requests_per_million'], money)} per million requests and "
        f"{money} {catalog['function_gib_second']:g} per GiB-second"
    )
    by = found.created_by or "shipped with Stratus"
    console.print(f"version {found.version}, since {found.created_at:%Y-%m-%d %H:%M} UTC ({by})")


@prices_app.command("versions")
def versions(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """Every version of the catalog, newest first (usage keeps the version it was metered at).

    Example: stratus prices versions
    """
    columns = [
        ("VERSION", lambda v: v.version),
        ("SINCE", lambda v: v.created_at.strftime("%Y-%m-%d %H:%M")),
        ("BY", lambda v: v.created_by or "(shipped)"),
    ]
    show(client(ctx).prices.versions(), output, columns)


@prices_app.command("apply")
def apply(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Option("--file", "-f", help="a catalog in YAML (`prices list -o yaml` prints one)"),
    ],
    output: OutputOption = Format.table,
) -> None:
    """Replace the price catalog (platform admins): usage metered from now on is priced by the
    new version; what was metered before keeps its prices.

    Example: stratus prices apply -f prices.yaml
    """
    applied = client(ctx).prices.apply_file(file)
    if output is not Format.table:
        show(applied, output)
        return
    console.print(f"price catalog version {applied.version} applied")
