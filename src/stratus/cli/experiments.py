"""`stratus experiments`: experiments and their runs — list them, compare runs side by side,
show one run's params, metrics and artifacts, pull artifacts, end and delete."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.listing import AllProjectsOption, in_scope, with_project
from stratus.cli.output import Format, OutputOption, console, human_size, parse_labels, show

app = typer.Typer(
    help="Experiment tracking: experiments, runs, params, metrics, artifacts.",
    no_args_is_help=True,
)

EXPERIMENT_COLUMNS = [
    ("NAME", lambda e: e.metadata.name),
    ("RUNS", lambda e: e.status.runs),
    ("RUNNING", lambda e: e.status.running),
    ("LAST RUN", lambda e: e.status.last_run_at),
    ("DESCRIPTION", lambda e: e.spec.description),
    ("CREATED", lambda e: e.metadata.created_at),
]
KEY_COLUMNS = 4  # params and metrics shown by `runs` when none are chosen


def value_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def duration_text(run: Any, now: datetime | None = None) -> str:
    end = run.ended_at or now or datetime.now(UTC)
    seconds = max(0, int((end - run.started_at).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def key_params(runs: Sequence[Any], limit: int = KEY_COLUMNS) -> list[str]:
    """The params worth a column: those whose values differ between the runs (all of them
    for a single run), alphabetically, at most `limit`."""
    keys = sorted({k for r in runs for k in r.params})
    if len(runs) > 1:
        varying = [k for k in keys if len({repr(r.params.get(k)) for r in runs}) > 1]
        keys = varying or keys
    return keys[:limit]


def _table(*headers: str) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in headers:
        table.add_column(escape(header))
    return table


def _row(table: Table, *cells: Any) -> None:
    table.add_row(*(escape(c if isinstance(c, str) else value_text(c)) for c in cells))


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"  # UTC, as every command


@app.command("list")
def list_(
    ctx: typer.Context,
    project: ProjectOption = None,
    all_projects: AllProjectsOption = False,
    selector: Annotated[str | None, typer.Option("--selector", "-s")] = None,
    output: OutputOption = Format.table,
) -> None:
    """List a project's experiments.

    Example: stratus experiments list -p fraud
    """
    found = client(ctx).experiments.list(
        in_scope(ctx, project, all_projects), selector, all_projects=all_projects
    )
    show(found, output, with_project(EXPERIMENT_COLUMNS, all_projects))


@app.command("create")
def create(
    ctx: typer.Context,
    name: str,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    label: Annotated[list[str] | None, typer.Option(help="key=value (repeatable)")] = None,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Create an experiment (training code's start_run creates it when needed).

    Example: stratus experiments create churn -d "churn models"
    """
    created = client(ctx).experiments.create(
        name, project=project_of(ctx, project), description=description, labels=parse_labels(label)
    )
    show(created, output, EXPERIMENT_COLUMNS)


@app.command("runs")
def runs(
    ctx: typer.Context,
    experiment: str,
    state: Annotated[
        str | None, typer.Option(help="only runs running, finished, failed or killed")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="a param to show as a column (repeatable)")
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option(help="a metric to show as a column (repeatable)")
    ] = None,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """List an experiment's runs, newest first, with key params and latest metrics.

    The params shown are those that vary between the runs, unless --param chooses them.

    Example: stratus experiments runs churn --metric auc
    """
    if state is not None and state not in ("running", "finished", "failed", "killed"):
        raise typer.BadParameter("use running, finished, failed or killed", param_hint="--state")
    found = client(ctx).experiments.runs(experiment, project_of(ctx, project), state)
    if output != Format.table:
        show(found, output)
        return
    params = param or key_params(found)
    metrics = metric or sorted({k for r in found for k in r.metrics})[:KEY_COLUMNS]
    table = _table("RUN", "NAME", "STATE", "STARTED", "DURATION", *params, *metrics)
    for r in found:
        _row(
            table,
            r.id,
            r.name or "-",
            r.state,
            _when(r.started_at),
            duration_text(r),
            *(r.params.get(k) for k in params),
            *(r.metrics.get(k) for k in metrics),
        )
    console.print(table)


@app.command("compare")
def compare(
    ctx: typer.Context,
    run_ids: Annotated[list[str] | None, typer.Argument(help="runs, in the order to show")] = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="or: an experiment's newest runs")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="how many of its runs")] = 10,
    diff: Annotated[bool, typer.Option("--diff", help="only what differs")] = False,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Compare runs side by side: a row per param and latest metric, a column per run.

    Example: stratus experiments compare run_01j… run_01k…  (or: --experiment churn)
    """
    if bool(run_ids) == (experiment is not None):
        raise typer.BadParameter("give run ids, or --experiment, not both", param_hint="RUN_IDS")
    result = client(ctx).experiments.compare(
        run_ids, experiment=experiment, limit=limit, project=project_of(ctx, project)
    )
    if diff:
        result.params = [p for p in result.params if p.differs]
        result.metrics = [m for m in result.metrics if m.differs]
    if output != Format.table:
        show(result, output)
        return
    headers = [r.name or r.id for r in result.runs]
    table = _table("", "", *headers)
    _row(table, "run", "id", *(r.id for r in result.runs))
    _row(table, "run", "state", *(r.state for r in result.runs))
    _row(table, "run", "duration", *(duration_text(r) for r in result.runs))
    for kind, rows in (("param", result.params), ("metric", result.metrics)):
        for row in rows:
            marker = f"{kind} *" if row.differs else kind
            _row(table, marker, row.key, *row.values)
    console.print(table)
    console.print("* the runs differ", style="dim")


@app.command("show")
def show_run(
    ctx: typer.Context,
    run_id: str,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show a run: params, tags, metrics (latest, steps, min/max) and artifacts.

    Example: stratus experiments show run_01j…
    """
    sdk, chosen = client(ctx), project_of(ctx, project)
    run = sdk.experiments.run(run_id, chosen)
    metrics = sdk.experiments.metrics(run_id, chosen)
    artifacts = sdk.experiments.artifacts(run_id, chosen)
    if output != Format.table:
        show({"run": run, "metrics": metrics, "artifacts": artifacts}, output)
        return
    head = _table("RUN", "EXPERIMENT", "NAME", "STATE", "STARTED", "ENDED", "DURATION", "BY")
    _row(
        head,
        run.id,
        run.experiment,
        run.name or "-",
        run.state,
        _when(run.started_at),
        _when(run.ended_at),
        duration_text(run),
        run.created_by,
    )
    console.print(head)
    sections: list[tuple[str, Table]] = []
    if run.params:
        params = _table("PARAM", "VALUE")
        for key, value in run.params.items():
            _row(params, key, value)
        sections.append(("params", params))
    if run.tags:
        tags = _table("TAG", "VALUE")
        for key, text in run.tags.items():
            _row(tags, key, text)
        sections.append(("tags", tags))
    if metrics:
        table = _table("METRIC", "LATEST", "STEP", "POINTS", "MIN", "MAX")
        for m in metrics:
            _row(table, m.key, m.value, str(m.step), str(m.count), m.min, m.max)
        sections.append(("metrics", table))
    if artifacts:
        files = _table("ARTIFACT", "SIZE", "STORED")
        for a in artifacts:
            _row(files, a.path, human_size(a.size), "yes" if a.stored else "no (not uploaded)")
        sections.append(("artifacts", files))
    for _, table in sections:
        console.print()
        console.print(table)


@app.command("pull")
def pull(
    ctx: typer.Context,
    run_id: str,
    dest: Annotated[Path, typer.Argument(help="folder to write the artifacts into")],
    path: Annotated[
        str | None, typer.Option(help="only this artifact, or the folder of artifacts")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Download a run's artifacts (verified) into a folder.

    Example: stratus experiments pull run_01j… ./out --path plots
    """
    folder = client(ctx).experiments.download_artifacts(
        run_id, dest, path, project_of(ctx, project)
    )
    console.print(f"wrote the artifacts of {run_id} into {folder}", markup=False)


@app.command("end")
def end(
    ctx: typer.Context,
    run_id: str,
    state: Annotated[str, typer.Option(help="finished, failed or killed")] = "killed",
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """End a run that is still `running` (say, its process was killed).

    Example: stratus experiments end run_01j… --state killed
    """
    if state not in ("finished", "failed", "killed"):
        raise typer.BadParameter("use finished, failed or killed", param_hint="--state")
    run = client(ctx).experiments.end_run(run_id, state, project=project_of(ctx, project))
    columns = [
        ("RUN", lambda r: r.id),
        ("STATE", lambda r: r.state),
        ("ENDED", lambda r: r.ended_at),
    ]
    show(run, output, columns)


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: str,
    force: Annotated[bool, typer.Option("--force", help="also delete its runs")] = False,
    project: ProjectOption = None,
) -> None:
    """Delete an experiment (with --force, and its runs and their artifacts).

    Example: stratus experiments delete churn --force
    """
    client(ctx).experiments.delete(name, project_of(ctx, project), force=force)
    console.print(f"deleted experiment {name}", markup=False)


@app.command("delete-run")
def delete_run(ctx: typer.Context, run_id: str, project: ProjectOption = None) -> None:
    """Delete a run with its metrics and artifacts.

    Example: stratus experiments delete-run run_01j…
    """
    client(ctx).experiments.delete_run(run_id, project_of(ctx, project))
    console.print(f"deleted run {run_id}", markup=False)
