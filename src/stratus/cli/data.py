"""`stratus data`: push datasets as immutable versions, see their schemas and profiles, pull
them back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.listing import AllProjectsOption, in_scope, with_project
from stratus.cli.output import (
    Format,
    OutputOption,
    QuietOption,
    console,
    human_size,
    show,
    transfer_progress,
)
from stratus.data.schemas import COLUMN_TAGS

app = typer.Typer(help="Datasets: versions, schemas, profiles, column tags.", no_args_is_help=True)

DATASET_COLUMNS = [
    ("NAME", lambda d: d.metadata.name),
    ("VERSIONS", lambda d: d.status.versions),
    ("LATEST", lambda d: d.status.latest_version),
    ("TAGS", lambda d: {k: ",".join(v) for k, v in d.spec.column_tags.items()}),
    ("DESCRIPTION", lambda d: d.spec.description),
    ("CREATED", lambda d: d.metadata.created_at),
]
VERSION_COLUMNS = [
    ("VERSION", lambda v: v.version),
    ("STATE", lambda v: v.state),
    ("ROWS", lambda v: v.rows),
    ("COLUMNS", lambda v: len(v.columns)),
    ("FILES", lambda v: len(v.files)),
    ("SIZE", lambda v: human_size(v.size)),
    ("VALIDATION", lambda v: _validation_state(v.validation)),
    ("CREATED", lambda v: v.created_at),
    ("BY", lambda v: v.created_by),
]
TagsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--tag",
        help=f"COLUMN=TAG, tags: {', '.join(COLUMN_TAGS)} (repeatable)",
        show_default=False,
    ),
]


def parse_tags(values: list[str] | None) -> dict[str, list[str]] | None:
    """`["email=pii", "churned=label"]` → `{"email": ["pii"], "churned": ["label"]}`."""
    if not values:
        return None
    tags: dict[str, list[str]] = {}
    for value in values:
        column, sep, tag = value.rpartition("=")
        if not sep or not column or tag not in COLUMN_TAGS:
            raise typer.BadParameter(
                f"{value!r}: use COLUMN=TAG with a tag among {', '.join(COLUMN_TAGS)}",
                param_hint="--tag",
            )
        tags.setdefault(column, []).append(tag)
    return tags


@app.command("push")
def push(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="a .csv, .parquet or .jsonl file, or a folder")],
    dataset: Annotated[str, typer.Option("--dataset", "-n", help="dataset name")],
    tag: TagsOption = None,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    project: ProjectOption = None,
    quiet: QuietOption = False,
    output: OutputOption = Format.table,
) -> None:
    """Push data as a new immutable version (the same content again makes none).

    Example: stratus data push train.csv --dataset churn --tag email=pii --tag churned=label
    """
    if not path.exists():
        raise typer.BadParameter(f"{path} does not exist", param_hint="PATH")
    tags = parse_tags(tag)
    c = client(ctx)
    total = sum(
        p.stat().st_size for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()
    )
    with transfer_progress(f"↑ {dataset}", total, quiet) as advance:
        version = c.datasets.push(
            path,
            dataset,
            project=project_of(ctx, project),
            description=description,
            column_tags=tags,
            progress=advance,
        )
    show(version, output, VERSION_COLUMNS)
    if output == Format.table and version.existing:
        console.print(f"the same content is version {version.version}: no new version made")


@app.command("list")
def list_(
    ctx: typer.Context,
    project: ProjectOption = None,
    all_projects: AllProjectsOption = False,
    selector: Annotated[str | None, typer.Option("--selector", "-s")] = None,
    output: OutputOption = Format.table,
) -> None:
    """List a project's datasets.

    Example: stratus data list -p fraud
    """
    found = client(ctx).datasets.list(
        in_scope(ctx, project, all_projects), selector, all_projects=all_projects
    )
    show(found, output, with_project(DATASET_COLUMNS, all_projects))


@app.command("versions")
def versions(
    ctx: typer.Context,
    name: str,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """List a dataset's versions, newest first.

    Example: stratus data versions churn
    """
    show(client(ctx).datasets.versions(name, project_of(ctx, project)), output, VERSION_COLUMNS)


@app.command("show")
def show_(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME (the latest version) or NAME:VERSION")],
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show a version: rows, files and the schema with each column's tags.

    Example: stratus data show churn:2
    """
    version = client(ctx).datasets.version(ref, project_of(ctx, project))
    if output != Format.table:
        show(version, output)
        return
    show(version, output, VERSION_COLUMNS)
    if version.lineage is not None:
        made = [
            f"{what} {value}"
            for what, value in (
                ("predicted by model", version.lineage.model_version),
                ("from dataset", version.lineage.dataset_version),
                ("in job", version.lineage.job),
            )
            if value
        ]
        console.print()
        console.print("lineage: " + ", ".join(made), markup=False, highlight=False)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in ("COLUMN", "TYPE", "NULLABLE", "TAGS"):
        table.add_column(header)
    for column in version.columns:
        table.add_row(
            column.name, column.type, "yes" if column.nullable else "no", ",".join(column.tags)
        )
    console.print()
    console.print(table)


@app.command("profile")
def profile(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME (the latest version) or NAME:VERSION")],
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show a version's profile: per column its nulls, and statistics for numbers or the top
    categories for strings (the reference drift monitoring compares with).

    Example: stratus data profile churn:2 -o json
    """
    data = client(ctx).datasets.profile(ref, project_of(ctx, project))
    if output != Format.table:
        show(data, output)
        return
    console.print(f"{data['rows']} rows", markup=False)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in ("COLUMN", "KIND", "NULLS", "MIN", "MEAN", "MAX", "STD", "TOP"):
        table.add_column(header)
    for column in data["columns"]:
        table.add_row(*_profile_row(column))
    console.print(table)


def _profile_row(column: dict[str, Any]) -> list[str]:
    numeric = column.get("numeric") or {}
    categorical = column.get("categorical") or {}

    def number(key: str) -> str:
        value = numeric.get(key)
        return "-" if value is None else f"{value:.4g}"

    top = ", ".join(f"{c['value']} ({c['count']})" for c in categorical.get("top", [])[:3])
    return [
        column["name"],
        column["kind"],
        f"{column['nulls']} ({column['null_share']:.1%})",
        number("min"),
        number("mean"),
        number("max"),
        number("std"),
        top or "-",
    ]


@app.command("validate")
def validate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME (the latest version) or NAME:VERSION")],
    rules: Annotated[
        Path, typer.Option("--rules", "-r", help="the rules file (YAML)", show_default=False)
    ],
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Check a version against validation rules: print each rule with its failing rows, store
    the report with the version, and exit 1 when a rule fails.

    Rules: columns (type, not_null, min, max, allowed, unique, finite, max_null_share),
    row-count bounds, extra columns, and drift from a reference version (max_psi,
    max_mean_shift). See docs/datasets.md.

    Example: stratus data validate churn:2 --rules rules.yaml
    """
    sdk = client(ctx)
    with console.status(f"validating {ref}…"):
        report = sdk.datasets.validate(ref, rules, project_of(ctx, project))
    if output != Format.table:
        show(report, output)
    else:
        _print_report(report)
    if not report.passed:
        raise typer.Exit(1)


def _shown(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


def _validation_state(summary: Any) -> str:
    if summary is None:
        return "-"
    return "passed" if summary.passed else "failed"


def _print_report(report: Any) -> None:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in ("", "CHECK", "COLUMN", "EXPECTED", "OBSERVED", "FAILING"):
        table.add_column(header)
    for check in report.report.checks:
        table.add_row(
            "[green]✓[/]" if check.passed else "[red]✗[/]",
            escape(check.check),
            escape(check.column or "-"),
            escape(check.expected),
            escape(check.observed),
            "-" if check.failing is None else str(check.failing),
        )
    where = f"{report.dataset}:{report.version}"
    against = f" (drift against {report.reference})" if report.reference else ""
    console.print(f"{where}: {report.report.rows} rows{against}", markup=False)
    console.print(table)
    for check in report.report.checks:
        if check.passed or not check.examples:
            continue
        console.print(
            f"\nfailing rows of {check.column} {check.check} "
            f"(first {len(check.examples)} of {check.failing}):",
            markup=False,
        )
        for example in check.examples:
            values = ", ".join(f"{k}={_shown(v)}" for k, v in example["values"].items())
            console.print(f"  row {example['row']}: {values}", markup=False)
    failed = sum(1 for c in report.report.checks if not c.passed)
    if report.passed:
        console.print(f"\n[green]passed[/]: {len(report.report.checks)} checks")
    else:
        console.print(f"\n[red]failed[/]: {failed} of {len(report.report.checks)} checks")


@app.command("validations")
def validations(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME (the latest version) or NAME:VERSION")],
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """List a version's stored validation reports, newest first.

    Example: stratus data validations churn:2
    """
    found = client(ctx).datasets.validations(ref, project_of(ctx, project))
    columns = [
        ("ID", lambda v: v.id),
        ("RESULT", lambda v: "passed" if v.passed else "failed"),
        ("CHECKS", lambda v: len(v.report.checks)),
        ("FAILED", lambda v: sum(1 for c in v.report.checks if not c.passed)),
        ("REFERENCE", lambda v: v.reference or "-"),
        ("CREATED", lambda v: v.created_at),
        ("BY", lambda v: v.created_by),
    ]
    show(found, output, columns)


@app.command("pull")
def pull(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME (the latest version) or NAME:VERSION")],
    dest: Annotated[Path, typer.Argument(help="folder to write the files into")],
    project: ProjectOption = None,
) -> None:
    """Download a version's files (verified) into a folder.

    Example: stratus data pull churn:2 ./data
    """
    folder = client(ctx).datasets.pull(ref, dest, project_of(ctx, project))
    console.print(f"wrote {ref} into {folder}", markup=False)


@app.command("tag")
def tag_(
    ctx: typer.Context,
    name: str,
    tag: TagsOption = None,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Set column tags (they replace the dataset's current ones).

    Example: stratus data tag churn --tag email=pii --tag customer_id=id
    """
    tags = parse_tags(tag) or {}
    dataset = client(ctx).datasets.tag(name, tags, project_of(ctx, project))
    show(dataset, output, DATASET_COLUMNS)


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: str,
    force: Annotated[bool, typer.Option("--force", help="also delete its versions")] = False,
    project: ProjectOption = None,
) -> None:
    """Delete a dataset (with --force, and its versions).

    Example: stratus data delete churn --force
    """
    client(ctx).datasets.delete(name, project_of(ctx, project), force=force)
    console.print(f"deleted dataset {name}", markup=False)
