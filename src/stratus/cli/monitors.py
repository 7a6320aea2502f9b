"""`stratus monitors`: an endpoint's captured records, drift reports (printed, and written as
HTML), drift and performance monitors with their history, ground truth, and erasure of one
data subject's records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.listing import (
    AllProjectsOption,
    cut,
    in_scope,
    parse_duration,
    parse_optional_time,
    say_cut,
    with_project,
)
from stratus.cli.output import Format, OutputOption, console, err, show
from stratus.client._monitors import label_from_text
from stratus.monitoring.html import result_page
from stratus.monitoring.schemas import MonitorRead, MonitorResultRead

app = typer.Typer(
    help="Monitoring: captured requests, drift reports, drift and performance monitors, "
    "ground truth, erasure.",
    no_args_is_help=True,
)

MONITOR_COLUMNS = [
    ("NAME", lambda m: m.metadata.name),
    ("ENDPOINT", lambda m: m.spec.endpoint),
    ("TYPE", lambda m: m.spec.type),
    ("WINDOW", lambda m: _window_text(m)),
    ("EVERY", lambda m: _seconds_text(m.spec.interval_seconds)),
    ("STATE", lambda m: m.status.state),
    ("SCORE", lambda m: _num(m.status.score)),
    ("LAST RUN", lambda m: m.status.last_run_at),
    ("MESSAGE", lambda m: m.status.message),
]
RESULT_COLUMNS = [
    ("ID", lambda r: r.id),
    ("TIME", lambda r: r.time),
    ("ROWS", lambda r: r.rows),
    ("ALARM", lambda r: r.alarm),
    ("SCORE", lambda r: _num(r.score)),
    ("REFERENCE", lambda r: r.reference),
]

DurationOption = Annotated[
    str | None,
    typer.Option("--window", "-w", help="how far back to look: 90s, 15m, 1h, 7d"),
]
RowsOption = Annotated[
    int | None, typer.Option("--rows", min=10, help="only the newest N captured rows")
]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _seconds_text(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _window_text(monitor: MonitorRead) -> str:
    window = monitor.spec.window
    parts = []
    if window.seconds:
        parts.append(_seconds_text(window.seconds))
    if window.rows:
        parts.append(f"{window.rows} rows")
    return ", ".join(parts)


# --- captures --------------------------------------------------------------------------------


@app.command("capture")
def capture(
    ctx: typer.Context,
    endpoint: str,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 20,
    since: Annotated[
        str | None,
        typer.Option(help="only records from this time on: 15m, 1h, 2d, 1w ago, or an ISO time"),
    ] = None,
    download: Annotated[
        Path | None,
        typer.Option(help="write the capture files into this folder (their partition layout)"),
    ] = None,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show an endpoint's newest captured records (or download its Parquet files).

    Capture is set per endpoint: stratus endpoints capture NAME --sample 1.0

    Example: stratus monitors capture churn-api --limit 5
    """
    sdk = client(ctx)
    where = project_of(ctx, project)
    start = parse_optional_time(since, "--since")
    if download is not None:
        written = sdk.monitors.download_captures(endpoint, download, since=start, project=where)
        files = sdk.monitors.capture_files(endpoint, since=start, project=where)
        rows = sum(f.rows for f in files)
        console.print(
            f"{len(written)} new files ({len(files)} in all, {rows} rows) under {download}",
            markup=False,
        )
        return
    found = sdk.monitors.captures(endpoint, limit=limit, since=start, project=where)
    if output != Format.table:
        show(found, output)
        return
    if not found.records:
        err.print(
            f"no captured records for {endpoint!r}"
            + (f" ({found.pending} waiting to be written)" if found.pending else "")
            + "; is capture on? (stratus endpoints show "
            + endpoint
            + ")",
            markup=False,
        )
        return
    columns = list(found.records[0])
    for record in found.records[1:]:
        columns += [c for c in record if c not in columns]
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in columns:
        table.add_column(name.upper() if name in ("time", "request_id") else name)
    for record in found.records:
        table.add_row(*(escape(_cell(record.get(c))) for c in columns))
    console.print(table)
    console.print(
        f"{len(found.records)} of {found.total} captured rows"
        + (
            "; --limit N (up to 1000) shows more, --download DIR writes them all"
            if len(found.records) < found.total
            else ""
        )
        + (f"; {found.pending} more waiting to be written" if found.pending else ""),
        markup=False,
        style="dim",
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# --- drift -----------------------------------------------------------------------------------


@app.command("drift")
def drift(
    ctx: typer.Context,
    endpoint: str,
    monitor: Annotated[
        str | None, typer.Option(help="run this monitor now (its result is kept) instead")
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="dataset version to compare with [default: the training data]"),
    ] = None,
    window: DurationOption = None,
    rows: RowsOption = None,
    html: Annotated[
        Path | None, typer.Option(help="where to write the HTML report [drift-ENDPOINT.html]")
    ] = None,
    no_html: Annotated[
        bool, typer.Option("--no-html", help="do not write the HTML report")
    ] = False,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Print a drift report of an endpoint's recent traffic and write it as HTML.

    Per feature: the test's score, KS / chi-square p-values, Wasserstein, Jensen–Shannon and
    PSI; then the share of drifted features and the verdict. Exit status 1 when drifted.

    Example: stratus monitors drift churn-api --window 1h
    """
    sdk = client(ctx)
    where = project_of(ctx, project)
    seconds = parse_duration(window) if window else None
    if monitor is not None:
        if reference is not None:
            raise typer.BadParameter("--reference belongs to the monitor's spec with --monitor")
        result = sdk.monitors.run(monitor, window_seconds=seconds, window_rows=rows, project=where)
        page = None if no_html else sdk.monitors.report_html(monitor, result.id, where)
    else:
        kwargs: dict[str, Any] = {
            "reference": reference,
            "window_seconds": seconds,
            "window_rows": rows,
            "project": where,
        }
        result = sdk.monitors.drift(endpoint, **kwargs)
        page = None if no_html else result_page(result, f"{where}/{endpoint}")
    if output != Format.table:
        show(result, output)
    else:
        print_drift(result)
    if page is not None:
        target = html or Path(f"drift-{endpoint}.html")
        target.write_text(page, encoding="utf-8")
        err.print(f"HTML report: {target}", markup=False)
    if result.alarm:
        raise typer.Exit(1)


def print_drift(result: MonitorResultRead) -> None:
    report = result.report
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in (
        "FEATURE", "KIND", "TEST", "SCORE", "THRESHOLD", "DRIFT",
        "KS p", "CHI² p", "WASSERSTEIN", "JS", "PSI",
    ):  # fmt: skip
        table.add_column(header)
    for f in report.get("features", []):
        table.add_row(
            escape(str(f["name"])),
            f["kind"],
            f["method"],
            _num(f.get("score")),
            _num(f.get("threshold")),
            "[red]yes[/]" if f.get("drifted") else "no",
            _num(f.get("ks_p_value")),
            _num(f.get("chi2_p_value")),
            _num(f.get("wasserstein")),
            _num(f.get("jensenshannon")),
            _num(f.get("psi")),
        )
    console.print(table)
    share = report.get("share") or 0.0
    settings = report.get("settings") or {}
    verdict = "[red]DRIFT[/]" if result.alarm else "[green]no drift[/]"
    window = ""
    if result.window_start and result.window_end:
        window = f" from {result.window_start:%Y-%m-%d %H:%M:%S} to {result.window_end:%H:%M:%S}"
    console.print(
        f"{verdict}: {report.get('drifted_features', 0)} of {len(report.get('features', []))} "
        f"features drifted ({share:.0%}; threshold {settings.get('drift_share', 0.5):.0%}); "
        f"{result.rows} rows{escape(window)} against {escape(result.reference)}"
    )


# --- monitors ----------------------------------------------------------------------------------


@app.command("apply")
def apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option("--file", "-f", help="the monitor spec (YAML)")],
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Create or replace a monitor from a YAML spec.

    Example: stratus monitors apply -f examples/churn/monitor.yaml
    """
    show(
        client(ctx).monitors.apply(file, project=project_of(ctx, project)), output, MONITOR_COLUMNS
    )


@app.command("create")
def create(
    ctx: typer.Context,
    name: str,
    endpoint: Annotated[str, typer.Option("--endpoint", "-e", help="the endpoint to watch")],
    type_: Annotated[str, typer.Option("--type", "-t", help="drift or performance")] = "drift",
    reference: Annotated[
        str | None, typer.Option(help="drift: dataset NAME:VERSION [default: training data]")
    ] = None,
    window: DurationOption = "1h",
    rows: RowsOption = None,
    every: Annotated[str, typer.Option("--every", help="how often it runs: 5m, 1h")] = "5m",
    min_rows: Annotated[int, typer.Option(min=1, help="fewer rows: no verdict")] = 50,
    drift_share: Annotated[
        float | None, typer.Option(min=0.01, max=1.0, help="drift: share of drifted features")
    ] = None,
    minimum: Annotated[
        list[str] | None,
        typer.Option("--min", help="performance: lowest accepted value, e.g. accuracy=0.8"),
    ] = None,
    maximum: Annotated[
        list[str] | None, typer.Option("--max", help="performance: highest, e.g. rmse=3.5")
    ] = None,
    per_version: Annotated[
        bool,
        typer.Option(
            "--per-version/--overall-only",
            help="performance: also hold each served model version to the bounds on its own "
            "(a failing canary alarms while the whole holds)",
        ),
    ] = True,
    prediction: Annotated[
        str,
        typer.Option(
            "--prediction",
            help="what counts as the prediction: label, or probability:CLASS (the probability "
            "answers gave CLASS when asked with --proba / method predict_proba)",
        ),
    ] = "label",
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Create or replace a drift or performance monitor of an endpoint.

    Example: stratus monitors create churn-drift -e churn-api --window 1h --every 5m
    """
    if type_ not in ("drift", "performance"):
        raise typer.BadParameter("--type is drift or performance")
    spec: dict[str, Any] = {
        "name": name,
        "endpoint": endpoint,
        "type": type_,
        "reference": reference,
        "window": {"seconds": parse_duration(window) if window else None, "rows": rows},
        "interval_seconds": parse_duration(every, "--every"),
        "min_rows": min_rows,
        "per_version": per_version,
        "prediction_source": prediction,
    }
    if drift_share is not None:
        spec["drift"] = {"drift_share": drift_share}
    bounds = {"min": _bounds(minimum, "--min"), "max": _bounds(maximum, "--max")}
    if bounds["min"] or bounds["max"]:
        spec["bounds"] = bounds
    show(
        client(ctx).monitors.apply(spec, project=project_of(ctx, project)), output, MONITOR_COLUMNS
    )


def _bounds(values: list[str] | None, option: str) -> dict[str, float]:
    out = {}
    for value in values or []:
        name, sep, number = value.partition("=")
        try:
            out[name.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep:
            raise typer.BadParameter(f"{option}: {value!r} is not METRIC=NUMBER")
    return out


@app.command("list")
def list_(
    ctx: typer.Context,
    endpoint: Annotated[str | None, typer.Option("--endpoint", "-e")] = None,
    project: ProjectOption = None,
    all_projects: AllProjectsOption = False,
    output: OutputOption = Format.table,
) -> None:
    """List monitors with their state and last result."""
    monitors = client(ctx).monitors.list(
        in_scope(ctx, project, all_projects), endpoint, all_projects=all_projects
    )
    show(monitors, output, with_project(MONITOR_COLUMNS, all_projects))


@app.command("show")
def show_(
    ctx: typer.Context,
    name: str,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show a monitor, and its last result in full."""
    sdk = client(ctx)
    where = project_of(ctx, project)
    monitor = sdk.monitors.get(name, where)
    if output != Format.table:
        show(monitor, output)
        return
    show(monitor, output, MONITOR_COLUMNS)
    results = sdk.monitors.results(name, limit=1, project=where)
    if results:
        console.print()
        _print_result(results[0])


@app.command("run")
def run(
    ctx: typer.Context,
    name: str,
    window: DurationOption = None,
    rows: RowsOption = None,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Run a monitor now; exit status 1 when it raises an alarm."""
    seconds = parse_duration(window) if window else None
    result = client(ctx).monitors.run(
        name, window_seconds=seconds, window_rows=rows, project=project_of(ctx, project)
    )
    if output != Format.table:
        show(result, output)
    else:
        _print_result(result)
    if result.alarm:
        raise typer.Exit(1)


def _print_result(result: MonitorResultRead) -> None:
    if result.type == "drift":
        print_drift(result)
        return
    report = result.report
    table = Table(box=None, header_style="bold", pad_edge=False)
    metrics = list((report.get("metrics") or {}).keys())
    table.add_column("MODEL VERSION")
    table.add_column("ROWS")
    for name in metrics:
        table.add_column(name.upper())
    for version, body in (report.get("versions") or {}).items():
        table.add_row(
            escape(version),
            str(body.get("rows")),
            *(_num(body["metrics"].get(m)) for m in metrics),
        )
    table.add_row(
        "[bold]all[/]",
        str(report.get("rows")),
        *(_num(report["metrics"].get(m)) for m in metrics),
    )
    console.print(table)
    breaches = report.get("breaches") or []
    verdict = "[red]ALARM[/]: " + escape(", ".join(breaches)) if breaches else "[green]ok[/]"
    console.print(f"{verdict} ({report.get('task')}, {result.rows} labelled rows)")


@app.command("history")
def history(
    ctx: typer.Context,
    name: str,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500)] = 20,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """A monitor's results, newest first (a list cut at --limit says so on stderr)."""
    results, more = cut(
        client(ctx).monitors.results(name, limit=limit + 1, project=project_of(ctx, project)),
        limit,
    )
    show(results, output, RESULT_COLUMNS)
    if more:
        say_cut(len(results), "results", "use --limit N (up to 500) to see more")


@app.command("delete")
def delete(ctx: typer.Context, name: str, project: ProjectOption = None) -> None:
    """Delete a monitor and its history."""
    client(ctx).monitors.delete(name, project_of(ctx, project))
    console.print(f"monitor {name} deleted", markup=False)


# --- ground truth and erasure ----------------------------------------------------------------


@app.command("ground-truth")
def ground_truth(
    ctx: typer.Context,
    endpoint: str,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="CSV, JSON lines or Parquet: request_id, row, label"),
    ] = None,
    request_id: Annotated[str | None, typer.Option(help="one label: its request id")] = None,
    label: Annotated[str | None, typer.Option(help="one label: the true outcome")] = None,
    row: Annotated[int, typer.Option(min=0, help="one label: the row of the request")] = 0,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Post the true outcomes of captured predictions, by request id.

    Example: stratus monitors ground-truth churn-api --file labels.csv
    """
    sdk = client(ctx)
    if (file is None) == (request_id is None):
        raise typer.BadParameter("give --file, or --request-id with --label")
    if file is not None:
        result = sdk.monitors.ground_truth(endpoint, file, project=project_of(ctx, project))
    else:
        if label is None:
            raise typer.BadParameter("--request-id needs --label")
        item = {"request_id": request_id, "row": row, "label": label_from_text(label)}
        result = sdk.monitors.ground_truth(endpoint, [item], project=project_of(ctx, project))
    if output != Format.table:
        show(result, output)
        return
    console.print(
        f"{result.received} labels received: {result.stored} stored, {result.replaced} replaced",
        markup=False,
    )


@app.command("erase")
def erase(
    ctx: typer.Context,
    subject: Annotated[str, typer.Option(help="the data subject's id (the capture subject)")],
    endpoint: Annotated[str | None, typer.Option("--endpoint", "-e")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Erase one data subject's captured records and ground truth (GDPR); audited.

    Example: stratus monitors erase --subject customer-4711 --yes
    """
    where = project_of(ctx, project)
    if not yes:
        typer.confirm(
            f"erase every captured record of this subject in project {where}?", abort=True
        )
    result = client(ctx).monitors.erase(subject, endpoint=endpoint, project=where)
    if output != Format.table:
        show(result, output)
        return
    console.print(
        f"erased {result.records_removed} records (rewrote {result.files_rewritten} files) "
        f"and {result.ground_truth_removed} labels",
        markup=False,
    )
