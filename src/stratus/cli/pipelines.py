"""`stratus pipelines`: apply pipeline specs, run them (and follow them), read their runs'
steps and logs, resume a failed run, and manage the webhook secret."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.listing import AllProjectsOption, in_scope, with_project
from stratus.cli.output import Format, OutputOption, console, err, show, waiting
from stratus.client import Client
from stratus.pipelines.schemas import RunRead, RunState, StepState, TriggerKind

app = typer.Typer(
    help="Pipelines: apply specs, run them, follow runs, resume failed ones.",
    no_args_is_help=True,
)

PIPELINE_COLUMNS = [
    ("NAME", lambda p: p.metadata.name),
    ("STEPS", lambda p: " → ".join(s.name for s in p.spec.steps)),
    ("TRIGGERS", lambda p: _triggers(p)),
    ("RUNS", lambda p: p.status.runs),
    (
        "LAST",
        lambda p: f"#{p.status.last_run} {p.status.last_state.value}" if p.status.last_run else "-",
    ),
    ("UPDATED", lambda p: p.metadata.updated_at),
]
RUN_COLUMNS = [
    ("RUN", lambda r: r.number),
    ("STATE", lambda r: r.state.value),
    ("TRIGGER", lambda r: r.trigger.value),
    ("DATASETS", lambda r: ", ".join(f"{k}:{v}" for k, v in r.datasets.items()) or "-"),
    ("STEP", lambda r: _current(r)),
    ("STARTED", lambda r: r.started_at or "-"),
    ("MESSAGE", lambda r: r.message.splitlines()[0] if r.message else ""),
]
_MARKS = {
    StepState.succeeded: "[green]✓[/]",
    StepState.failed: "[red]✗[/]",
    StepState.running: "[yellow]…[/]",
    StepState.pending: " ",
    StepState.skipped: "-",
}


def _triggers(pipeline: object) -> str:
    triggers = pipeline.spec.triggers  # type: ignore[attr-defined]
    parts = ["manual"]
    if triggers.schedule:
        parts.append(f"cron {triggers.schedule}")
    parts += [f"dataset {d}" for d in triggers.datasets]
    if triggers.webhook:
        parts.append("webhook")
    parts += [f"alert {a}" for a in triggers.alerts]
    return ", ".join(parts)


def _current(run: RunRead) -> str:
    step = next((s for s in run.steps if s.state != StepState.succeeded), None)
    return "-" if step is None else f"{step.name} ({step.state.value})"


@app.command("apply")
def apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option("--file", "-f", help="the pipeline spec (YAML)")],
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Create or update a pipeline from its spec; code folders its steps name are uploaded.

    Example: stratus pipelines apply -f examples/churn/pipeline.yaml
    """
    pipeline = client(ctx).pipelines.apply(file, project_of(ctx, project))
    show(pipeline, output, PIPELINE_COLUMNS)
    if output == Format.table and pipeline.webhook_secret:
        sdk = client(ctx)
        console.print(
            f"\nwebhook: POST {sdk.url}{pipeline.status.webhook_url}\n"
            f"secret (shown once; send it as X-Stratus-Webhook-Secret): "
            f"{pipeline.webhook_secret}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@app.command("list")
def list_(
    ctx: typer.Context,
    project: ProjectOption = None,
    all_projects: AllProjectsOption = False,
    output: OutputOption = Format.table,
) -> None:
    """List pipelines with their steps, triggers and last run."""
    found = client(ctx).pipelines.list(
        in_scope(ctx, project, all_projects), all_projects=all_projects
    )
    show(found, output, with_project(PIPELINE_COLUMNS, all_projects))


@app.command("show")
def show_(
    ctx: typer.Context,
    name: str,
    run: Annotated[
        int | None, typer.Option("--run", "-r", help="show this run's steps", show_default=False)
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="print the run's steps as they go until it ends (the newest run without "
            "--run); exit 1 if it fails",
        ),
    ] = False,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show a pipeline (its steps, triggers and recent runs), or one run's steps; --follow
    prints a run's progress until it ends.

    Example: stratus pipelines show churn --run 3 --follow
    """
    sdk = client(ctx)
    where = project_of(ctx, project)
    if follow:
        number = run if run is not None else sdk.pipelines.get_run(name, None, where).number
        _end(_follow_run(sdk, name, number, where), output)
    if run is not None:
        found = sdk.pipelines.get_run(name, run, where)
        if output != Format.table:
            show(found, output)
        else:
            _print_run(found)
        return
    pipeline = sdk.pipelines.get(name, where)
    if output != Format.table:
        show(pipeline, output)
        return
    show(pipeline, output, PIPELINE_COLUMNS)
    if pipeline.status.webhook_url:
        console.print(f"webhook: POST {sdk.url}{pipeline.status.webhook_url}", markup=False)
    if pipeline.status.next_scheduled_at:
        console.print(f"next scheduled run: {pipeline.status.next_scheduled_at}", markup=False)
    runs = sdk.pipelines.runs(name, where)[:10]
    if runs:
        console.print()
        show(runs, output, RUN_COLUMNS)


def _print_run(run: RunRead) -> None:
    colour = {"succeeded": "green", "failed": "red"}.get(run.state.value, "yellow")
    console.print(
        f"{escape(run.pipeline)} run #{run.number}: [{colour}]{run.state.value}[/] "
        f"({run.trigger.value}) — {escape(run.message.splitlines()[0] if run.message else '')}"
    )
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in ("", "STEP", "TYPE", "ATTEMPTS", "SECONDS", "MESSAGE"):
        table.add_column(header)
    for step in run.steps:
        table.add_row(
            _MARKS[step.state],
            escape(step.name),
            step.type,
            str(step.attempts),
            "-" if step.seconds is None else f"{step.seconds:.1f}",
            escape(step.message.splitlines()[0] if step.message else ""),
        )
    console.print(table)


@app.command("run")
def run(
    ctx: typer.Context,
    name: str,
    dataset: Annotated[
        list[str] | None,
        typer.Option("--dataset", "-d", help="pin NAME=VERSION (repeatable)", show_default=False),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="kept with the run")] = "",
    follow: Annotated[
        bool, typer.Option("--follow/--detach", "-f", help="print steps until the run ends")
    ] = False,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Start a run. With --follow, print each step as it goes, and exit 1 if the run fails.

    Example: stratus pipelines run churn --follow
    """
    pinned: dict[str, int] = {}
    for item in dataset or []:
        key, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise typer.BadParameter(f"--dataset {item!r} must look like NAME=VERSION")
        pinned[key] = int(value)
    sdk = client(ctx)
    where = project_of(ctx, project)
    started = sdk.pipelines.run(name, where, datasets=pinned, reason=reason)
    if output != Format.table:
        show(started, output)
    else:
        console.print(f"run #{started.number} of {name} started", markup=False)
    if follow:
        _follow(sdk, name, started.number, where)


def _follow(sdk: Client, name: str, number: int, project: str) -> None:
    if _follow_run(sdk, name, number, project).state != RunState.succeeded:
        raise typer.Exit(1)


def _follow_run(
    sdk: Client, name: str, number: int, project: str, deadline: float | None = None
) -> RunRead:
    """Print each step on stderr as its state or message changes until the run ends, then
    its end; the finished run. TimeoutError once `deadline` (monotonic) passes first."""
    seen: dict[str, tuple[str, str]] = {}
    while True:
        current = sdk.pipelines.get_run(name, number, project)
        for step in current.steps:
            state = (step.state.value, step.message)
            if seen.get(step.name) != state and step.state != StepState.pending:
                seen[step.name] = state
                first = step.message.splitlines()[0] if step.message else ""
                err.print(f"{_MARKS[step.state]} {escape(step.name)}: {escape(first)}")
        if current.state.finished:
            break
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise TimeoutError(
                f"run #{number} of pipeline {name!r} is still {current.state.value} "
                f"(at step {_current(current)}) when the --timeout ran out"
            )
        time.sleep(1.0 if deadline is None else max(0.0, min(1.0, deadline - now)))
    colour = "green" if current.state == RunState.succeeded else "red"
    err.print(f"[{colour}]run #{number} {current.state.value}[/]: {escape(current.message)}")
    return current


def _end(run: RunRead, output: Format) -> NoReturn:
    """Print a finished run (its steps, or JSON/YAML) and exit: 0 if it succeeded, else 1."""
    if output != Format.table:
        show(run, output)
    else:
        _print_run(run)
    raise typer.Exit(0 if run.state == RunState.succeeded else 1)


def _trigger_text(run: RunRead) -> str:
    """e.g. `dataset churn:2`, `alert churn-drift, value 1.0`, `manual, reason retrain`."""
    kind, detail = run.trigger.value, run.trigger_detail
    head = f"{kind} {detail[kind]}" if kind in detail else kind
    rest = [f"{k} {v}" for k, v in detail.items() if k not in (kind, "labels")]
    return ", ".join([head, *rest])


class Until(StrEnum):
    started = "started"
    finished = "finished"


def _moment(text: str) -> datetime:
    """An ISO 8601 time (naive: local time), or a span before now: 90s, 10m, 2h, 1d."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        from stratus.cli.listing import parse_duration  # one syntax for spans everywhere

        try:
            seconds = parse_duration(text, "--since")
        except typer.BadParameter:
            raise typer.BadParameter(
                f"--since: {text!r} is neither an ISO 8601 time (2026-05-01T09:00:00Z) nor a "
                "span before now (90s, 10m, 1h)"
            ) from None
        return datetime.now(UTC) - timedelta(seconds=seconds)
    return moment.astimezone(UTC)


@app.command("wait")
def wait(
    ctx: typer.Context,
    name: str,
    run: Annotated[
        int | None,
        typer.Option("--run", "-r", help="wait for this run (it may not have started yet)"),
    ] = None,
    next_run: Annotated[
        bool, typer.Option("--next-run", help="wait for the first run to start after this")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            help="wait for the first run created since this time: ISO 8601 "
            "(2026-05-01T09:00:00Z) or a span before now (90s, 10m, 1h)",
            show_default=False,
        ),
    ] = None,
    trigger: Annotated[
        TriggerKind | None,
        typer.Option(help="only a run started by this trigger", show_default=False),
    ] = None,
    until: Annotated[
        Until,
        typer.Option("--for", help="finished: until the run ends; started: until it exists"),
    ] = Until.finished,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="seconds to wait in all")
    ] = 600.0,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Wait for a pipeline run, in a script: for the run to exist, then (unless --for
    started) to end, printing its steps on stderr as they go. Exit 0 when it succeeded, 1
    when it failed or was cancelled, or when --timeout ran out first (the message says what
    it still waited for). Without --run, --next-run or --since: the newest run, or the first
    to start.

    A run that new data starts begins a second or so after the push: note the time before
    pushing (or use --since 5m), so the run is not missed.

    Example: stratus pipelines wait churn --since 5m --trigger dataset --timeout 600
    """
    if run is not None and (next_run or since is not None or trigger is not None):
        raise typer.BadParameter("--run names the run: give no --next-run, --since or --trigger")
    if next_run and since is not None:
        raise typer.BadParameter("--next-run and --since both say which run: give one")
    start = _moment(since) if since is not None else None
    sdk = client(ctx)
    where = project_of(ctx, project)
    deadline = time.monotonic() + timeout
    with waiting(f"waiting for a run of {name} to start…"):
        found = sdk.pipelines.wait_for_run(
            name,
            where,
            number=run,
            next_run=next_run,
            since=start,
            trigger=trigger,
            timeout=timeout,
        )
    err.print(
        f"run #{found.number} of {name} ({_trigger_text(found)}): {found.state.value}",
        markup=False,
        highlight=False,
    )
    if until == Until.started:
        show(found, output, RUN_COLUMNS)
        return
    _end(_follow_run(sdk, name, found.number, where, deadline), output)


@app.command("runs")
def runs(
    ctx: typer.Context,
    name: str,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """List a pipeline's runs, newest first."""
    show(client(ctx).pipelines.runs(name, project_of(ctx, project)), output, RUN_COLUMNS)


@app.command("logs")
def logs(
    ctx: typer.Context,
    name: str,
    run: Annotated[int | None, typer.Argument(help="the run (default: the newest)")] = None,
    jobs: Annotated[bool, typer.Option("--jobs/--no-jobs", help="include the jobs' output")] = True,
    project: ProjectOption = None,
) -> None:
    """Print a run's log: every step's messages, and the output of the jobs it ran.

    Example: stratus pipelines logs churn 3
    """
    sdk = client(ctx)
    where = project_of(ctx, project)
    found = sdk.pipelines.get_run(name, run, where)
    for step in found.steps:
        sys.stdout.write(f"==> {step.name} ({step.type}, {step.state.value})\n")
        sys.stdout.write(step.log)
        job = step.outputs.get("job")
        if jobs and job:
            sys.stdout.write(f"--- job {job}\n")
            for chunk in sdk.jobs.logs(str(job), where):
                sys.stdout.write(chunk.decode(errors="replace"))
    sys.stdout.flush()


@app.command("resume")
def resume(
    ctx: typer.Context,
    name: str,
    run: int,
    follow: Annotated[bool, typer.Option("--follow/--detach", "-f")] = False,
    project: ProjectOption = None,
) -> None:
    """Run a failed run again from the step that failed.

    Example: stratus pipelines resume churn 3 --follow
    """
    sdk = client(ctx)
    where = project_of(ctx, project)
    resumed = sdk.pipelines.resume(name, run, where)
    console.print(f"run #{resumed.number} resumes at {_current(resumed)}", markup=False)
    if follow:
        _follow(sdk, name, run, where)


@app.command("cancel")
def cancel(ctx: typer.Context, name: str, run: int, project: ProjectOption = None) -> None:
    """Cancel a run: its remaining steps are skipped."""
    cancelled = client(ctx).pipelines.cancel(name, run, project_of(ctx, project))
    console.print(f"run #{cancelled.number}: {cancelled.state.value}", markup=False)


@app.command("webhook")
def webhook(
    ctx: typer.Context,
    name: str,
    rotate: Annotated[
        bool, typer.Option("--rotate", help="make a new secret (shown once)")
    ] = False,
    project: ProjectOption = None,
) -> None:
    """Show the pipeline's webhook URL; with --rotate, a new secret (the old one stops working).

    Example: stratus pipelines webhook churn --rotate
    """
    sdk = client(ctx)
    where = project_of(ctx, project)
    pipeline = (
        sdk.pipelines.rotate_webhook(name, where) if rotate else sdk.pipelines.get(name, where)
    )
    if not pipeline.status.webhook_url:
        err.print(f"pipeline {escape(name)} has no webhook trigger (triggers: webhook: true)")
        raise typer.Exit(1)
    console.print(f"POST {sdk.url}{pipeline.status.webhook_url}", markup=False, soft_wrap=True)
    if pipeline.webhook_secret:
        console.print(f"secret: {pipeline.webhook_secret}", markup=False, soft_wrap=True)


@app.command("delete")
def delete(ctx: typer.Context, name: str, project: ProjectOption = None) -> None:
    """Delete a pipeline and its runs (not while a run is in progress)."""
    client(ctx).pipelines.delete(name, project_of(ctx, project))
    console.print(f"deleted pipeline {name}", markup=False)
