"""`stratus budgets`: monthly budgets per project that tell alert channels when spend (or the
forecast) crosses a threshold, and can freeze the project once it is spent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stratus.billing.schemas import BudgetRead, money
from stratus.cli.context import ProjectOption, client
from stratus.cli.output import Format, OutputOption, console, show

app = typer.Typer(
    help="Budgets: monthly amounts, thresholds that alert, an optional freeze at 100 %.",
    no_args_is_help=True,
)


COLUMNS = [
    ("NAME", lambda b: b.name),
    ("AMOUNT", lambda b: f"{money(b.spec.amount)} {b.currency}"),
    ("SPENT", lambda b: money(b.status.spent)),
    ("FORECAST", lambda b: money(b.status.forecast)),
    ("USED", lambda b: f"{b.status.spent / b.spec.amount:.0%}"),
    (
        "CROSSED",
        lambda b: ", ".join(_crossing(c.percent, c.basis) for c in b.status.crossed) or "-",
    ),
    ("ACTION", lambda b: b.spec.action),
    ("FROZEN", lambda b: "yes" if b.status.frozen else "no"),
]


def _crossing(percent: float, basis: str) -> str:
    """`80%`, or `100% (forecast)`."""
    return f"{percent:g}%" + (" (forecast)" if basis == "forecast" else "")


@app.command("apply")
def apply(
    ctx: typer.Context,
    amount: Annotated[
        float | None, typer.Option(min=0.000001, help="per calendar month (UTC)")
    ] = None,
    name: Annotated[str, typer.Option("--name", "-n", help="the budget's name")] = "monthly",
    threshold: Annotated[
        list[float] | None,
        typer.Option("--threshold", help="percent of actual spend that alerts (repeatable)"),
    ] = None,
    forecast_threshold: Annotated[
        list[float] | None,
        typer.Option("--forecast-threshold", help="percent of the month's forecast (repeatable)"),
    ] = None,
    channel: Annotated[
        list[str] | None, typer.Option("--channel", help="an alert channel to tell (repeatable)")
    ] = None,
    action: Annotated[
        str,
        typer.Option(
            help="none, or freeze: at 100 % spent, refuse new jobs and deploys, hold autoscaled "
            "endpoints at their minimum and stop spot jobs"
        ),
    ] = "none",
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="a budget in YAML instead of the flags")
    ] = None,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Create or replace a budget (project owners). Without thresholds: 50, 80 and 100 % of
    spend and 100 % of the forecast. Raising a frozen budget past the spend lifts the freeze.

    Example: stratus budgets apply -p fraud --amount 500 --channel ops --action freeze
    """
    c = client(ctx)
    if file is not None:
        if amount is not None or threshold or forecast_threshold or channel:
            raise typer.BadParameter("give --file or the flags, not both")
        found = c.budgets.apply_file(file, project)
    else:
        if amount is None:
            raise typer.BadParameter("give --amount (or --file)")
        thresholds = None
        if threshold or forecast_threshold:
            thresholds = [{"percent": p, "basis": "actual"} for p in threshold or []] + [
                {"percent": p, "basis": "forecast"} for p in forecast_threshold or []
            ]
        found = c.budgets.apply(
            amount,
            name=name,
            thresholds=thresholds,
            channels=channel,
            action=action,
            project=project,
        )
    _one(found, output)


def _one(found: BudgetRead, output: Format) -> None:
    if output is not Format.table:
        show(found, output)
        return
    show([found], Format.table, COLUMNS)
    if found.status.frozen:
        console.print(
            f"frozen since {found.status.frozen_since:%Y-%m-%d %H:%M} UTC: new jobs and deploys "
            "that add capacity are refused until the budget is raised or the month turns"
        )


@app.command("list")
def list_budgets(
    ctx: typer.Context, project: ProjectOption = None, output: OutputOption = Format.table
) -> None:
    """The project's budgets: this month's spend, forecast, thresholds crossed, freeze.

    Example: stratus budgets list -p fraud
    """
    show(client(ctx).budgets.list(project), output, COLUMNS)


@app.command("show")
def show_budget(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the budget")] = "monthly",
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """One budget, with the thresholds it crossed this month and when.

    Example: stratus budgets show monthly -p fraud
    """
    found = client(ctx).budgets.get(name, project)
    _one(found, output)
    if output is Format.table:
        for c in found.status.crossed:
            console.print(f"  crossed {_crossing(c.percent, c.basis)} at {c.at:%Y-%m-%d %H:%M} UTC")


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the budget")],
    project: ProjectOption = None,
) -> None:
    """Delete a budget (its freeze, if any, lifts).

    Example: stratus budgets delete monthly -p fraud
    """
    client(ctx).budgets.delete(name, project)
    console.print(f"budget {name} deleted")
