"""`stratus models`: push model versions, inspect them, move aliases, read cards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.listing import AllProjectsOption, in_scope, with_project
from stratus.cli.output import (
    Format,
    OutputOption,
    QuietOption,
    console,
    human_size,
    parse_labels,
    show,
    transfer_progress,
)
from stratus.registry.references import parse_ref

app = typer.Typer(
    help="The model registry: versions, flavors, aliases, cards.", no_args_is_help=True
)

MODEL_COLUMNS = [
    ("NAME", lambda m: m.metadata.name),
    ("VERSIONS", lambda m: m.status.versions),
    ("LATEST", lambda m: m.status.latest_version),
    ("ALIASES", lambda m: m.status.aliases),
    ("DESCRIPTION", lambda m: m.spec.description),
    ("CREATED", lambda m: m.metadata.created_at),
]
VERSION_COLUMNS = [
    ("VERSION", lambda v: v.version),
    ("STATE", lambda v: v.state),
    ("GATE", lambda v: v.verdict.status if v.verdict else "-"),
    ("FLAVOR", lambda v: v.flavor),
    ("TRUSTED", lambda v: v.trusted if v.needs_trust else "-"),
    ("SIZE", lambda v: human_size(v.size)),
    ("ALIASES", lambda v: ",".join(v.aliases) or "-"),
    ("METRICS", lambda v: {k: round(x, 4) for k, x in v.metrics.items()}),
    ("CREATED", lambda v: v.created_at),
    ("BY", lambda v: v.created_by),
]
KeyValues = Annotated[list[str] | None, typer.Option(help="key=value (repeatable)")]


def _numbers(values: list[str] | None, what: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (parse_labels(values) or {}).items():
        try:
            out[key] = float(value)
        except ValueError:
            raise typer.BadParameter(f"{what} {key}={value!r} is not a number") from None
    return out


def _read_sample(path: Path) -> Any:
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    if path.suffix in (".parquet", ".pq"):
        return pq.read_table(path)
    if path.suffix == ".csv":
        return pa_csv.read_csv(path)
    raise typer.BadParameter(f"{path}: the sample must be a .csv or .parquet file")


@app.command("push")
def push(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="a model file, or a folder of model files")],
    name: Annotated[str, typer.Option("--name", "-n", help="model name")],
    project: ProjectOption = None,
    flavor: Annotated[
        str | None,
        typer.Option(help="sklearn, onnx, xgboost, lightgbm, mlflow or python (default: detected)"),
    ] = None,
    trusted: Annotated[
        bool, typer.Option(help="allow pickle/joblib or user code to load (owners only)")
    ] = False,
    sample: Annotated[
        Path | None, typer.Option(help="CSV or Parquet rows to infer the signature from")
    ] = None,
    metric: KeyValues = None,
    param: KeyValues = None,
    tag: KeyValues = None,
    dataset_version: Annotated[str | None, typer.Option(help="lineage: the training data")] = None,
    run: Annotated[str | None, typer.Option(help="lineage: the training run")] = None,
    commit: Annotated[str | None, typer.Option(help="lineage: the source commit")] = None,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    card: Annotated[Path | None, typer.Option(help="a markdown model card")] = None,
    alias: Annotated[str | None, typer.Option(help="point this alias at the new version")] = None,
    quiet: QuietOption = False,
    output: OutputOption = Format.table,
) -> None:
    """Push a model file or folder as a new immutable version (uploads only new files).

    Example: stratus models push model.skops -n churn --sample train.csv --alias staging
    """
    if not path.exists():
        raise typer.BadParameter(f"{path} does not exist", param_hint="PATH")
    c = client(ctx)
    project = project_of(ctx, project)
    total = sum(
        p.stat().st_size for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()
    )
    with transfer_progress(f"↑ {name}", total, quiet) as advance:
        version = c.models.push(
            path,
            name,
            project=project,
            flavor=flavor,
            trusted=trusted,
            sample=_read_sample(sample) if sample else None,
            metrics=_numbers(metric, "metric"),
            params=parse_labels(param),
            tags=parse_labels(tag),
            dataset_version=dataset_version,
            training_run=run,
            source_commit=commit,
            description=description,
            card=card.read_text() if card else "",
            progress=advance,
        )
    if alias:
        c.models.set_alias(
            name, alias, version.version, project=project, reason="stratus models push"
        )
        version = c.models.version(f"{name}:{version.version}", project)
    show(version, output, VERSION_COLUMNS)


@app.command("list")
def list_(
    ctx: typer.Context,
    project: ProjectOption = None,
    all_projects: AllProjectsOption = False,
    selector: Annotated[str | None, typer.Option("--selector", "-s")] = None,
    output: OutputOption = Format.table,
) -> None:
    """List a project's models.

    Example: stratus models list -p fraud
    """
    found = client(ctx).models.list(
        in_scope(ctx, project, all_projects), selector, all_projects=all_projects
    )
    show(found, output, with_project(MODEL_COLUMNS, all_projects))


@app.command("versions")
def versions(
    ctx: typer.Context,
    name: str,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """List a model's versions, newest first.

    Example: stratus models versions churn
    """
    show(client(ctx).models.versions(name, project_of(ctx, project)), output, VERSION_COLUMNS)


@app.command("show")
def show_(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME (latest), NAME:VERSION or NAME@ALIAS")],
    project: ProjectOption = None,
    output: OutputOption = Format.yaml,
) -> None:
    """Show a version: flavor, files, signature, metrics, params, lineage, a gate's verdict.

    Example: stratus models show churn@production
    """
    show(client(ctx).models.version(ref, project_of(ctx, project)), output)


@app.command("alias")
def alias(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME:VERSION to point the alias at")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. production")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="why (kept in the history)")] = "",
    remove: Annotated[bool, typer.Option("--remove", help="remove the alias instead")] = False,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Point an alias at a version (or --remove it); every move is audited and kept.

    Example: stratus models alias churn:4 production -r "beats v3 on the holdout"
    """
    parsed = parse_ref(ref)
    c = client(ctx)
    project = project_of(ctx, project)
    if remove:
        c.models.delete_alias(parsed.model, alias_name, project=project, reason=reason)
        console.print(f"removed alias {alias_name} of {parsed.model}", markup=False)
        return
    if parsed.version is None:
        raise typer.BadParameter("name the version: NAME:VERSION", param_hint="REF")
    moved = c.models.set_alias(
        parsed.model, alias_name, parsed.version, project=project, reason=reason
    )
    show(
        moved,
        output,
        [
            ("ALIAS", lambda a: a.alias),
            ("VERSION", lambda a: a.version),
            ("BY", lambda a: a.updated_by),
        ],
    )


@app.command("history")
def history(
    ctx: typer.Context,
    name: str,
    alias_name: Annotated[str | None, typer.Option("--alias", "-a", help="one alias only")] = None,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show every alias move of a model: who, when, from, to, why.

    Example: stratus models history churn --alias production
    """
    events = client(ctx).models.alias_history(name, alias_name, project_of(ctx, project))
    show(
        events,
        output,
        [
            ("TIME", lambda e: e.time),
            ("ALIAS", lambda e: e.alias),
            ("FROM", lambda e: e.from_version),
            ("TO", lambda e: e.to_version),
            ("BY", lambda e: e.actor),
            ("REASON", lambda e: e.reason),
        ],
    )


@app.command("card")
def card(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS")],
    set_: Annotated[
        Path | None, typer.Option("--set", help="replace the card with this file")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Print a version's model card (markdown), or replace it with --set.

    Example: stratus models card churn:4 --set MODEL_CARD.md
    """
    c = client(ctx)
    project = project_of(ctx, project)
    if set_ is not None:
        c.models.update_version(ref, project=project, card=set_.read_text())
    typer.echo(c.models.card(ref, project))


@app.command("trust")
def trust(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME:VERSION")],
    revoke: Annotated[bool, typer.Option("--revoke", help="take the trust back")] = False,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Mark a version trusted, so its pickle/joblib files or user code may load (owners only).

    Example: stratus models trust churn:4
    """
    version = client(ctx).models.update_version(
        ref, project=project_of(ctx, project), trusted=not revoke
    )
    show(version, output, VERSION_COLUMNS)


@app.command("accept")
def accept(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME:VERSION")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="why (kept with the verdict)")],
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Accept a version a pipeline gate rejected, so it may get aliases and be deployed
    (owners only; the verdict keeps the refusal and your reason).

    Example: stratus models accept churn:4 -r "the holdout was mislabelled"
    """
    version = client(ctx).models.accept(ref, reason, project=project_of(ctx, project))
    show(version, output, VERSION_COLUMNS)


@app.command("pull")
def pull(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS")],
    dest: Annotated[Path, typer.Argument(help="folder to write the files into")],
    project: ProjectOption = None,
) -> None:
    """Download a version's files (verified) into a folder.

    Example: stratus models pull churn@production ./model
    """
    folder = client(ctx).models.pull(ref, dest, project_of(ctx, project))
    console.print(f"wrote {ref} into {folder}", markup=False)


@app.command("delete")
def delete(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME (the whole model) or NAME:VERSION")],
    force: Annotated[bool, typer.Option("--force", help="also delete versions / aliases")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y")] = False,
    project: ProjectOption = None,
) -> None:
    """Delete a version, or a whole model.

    Example: stratus models delete churn:2
    """
    parsed = parse_ref(ref)
    c = client(ctx)
    project = project_of(ctx, project)
    if parsed.version is None and parsed.alias is None:
        if not yes:
            typer.confirm(f"Delete model {parsed.model!r}?", abort=True)
        c.models.delete(parsed.model, project, force=force)
        console.print(f"deleted model {parsed.model}", markup=False)
        return
    c.models.delete_version(ref, project, force=force)
    console.print(f"deleted {ref}", markup=False)
