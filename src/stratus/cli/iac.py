"""`stratus plan`, `stratus apply`, `stratus destroy` and `stratus iac`: resource documents
in files, against the platform."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from stratus.cli.context import client
from stratus.cli.output import Format, OutputOption, console, err, show
from stratus.core.errors import InvalidInput

FilesOption = Annotated[
    list[Path],
    typer.Option(
        "--file", "-f", help="a YAML file (one or more documents) or a folder of them (repeat)"
    ),
]
EnvOption = Annotated[
    str | None,
    typer.Option("--env", help="also read values.ENV.yaml beside the files (after values.yaml)"),
]
VarOption = Annotated[
    list[str] | None,
    typer.Option("-var", "--var", help="NAME=VALUE: a variable for ${NAME} in the files (repeat)"),
]


class _Outcome:
    """Whether the last `stratus plan --detailed-exitcode` exited 2 for changes (the entry
    point tells that from a usage error, which click also exits 2 for)."""

    changes_planned = False


outcome = _Outcome()
SIGNS = {
    "create": "[green]+[/]",
    "update": "[yellow]~[/]",
    "replace": "[red]-/+[/]",
    "delete": "[red]-[/]",
    "drift": "[magenta]![/]",
}


def _variables(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{pair!r}: write -var NAME=VALUE")
        out[name] = value
    return out


def _value(value: Any) -> str:
    return "(none)" if value is None else repr(value)


def _print_changes(changes: list[Any]) -> None:
    for change in changes:
        if change.action == "no-op":
            continue
        note = f"  ({change.note})" if change.note else ""
        console.print(
            f"{SIGNS[change.action]} {change.action} {change.address}{note}", highlight=False
        )
        for field in change.fields:
            console.print(
                f"    {field.path}: {_value(field.before)} → {_value(field.after)}",
                highlight=False,
                markup=False,
            )
        for by in change.changed_by:
            console.print(
                f"    by {by.actor} at {by.time:%Y-%m-%d %H:%M:%S} UTC ({by.action})",
                highlight=False,
                markup=False,
            )


def _summary(result: Any) -> str:
    s = result.summary
    if result.mode == "refresh-only":
        return f"Drift: {s.drift} resource(s) differ from the files ({s.unchanged} as declared)."
    if result.mode == "destroy":
        return f"Destroy: {s.delete} to delete ({s.unchanged} absent)."
    return (
        f"Plan: {s.create} to create, {s.update} to update, "
        + (f"{s.replace} to replace, " if s.replace else "")
        + f"{s.delete} to delete ({s.unchanged} unchanged)."
    )


def plan(
    ctx: typer.Context,
    file: FilesOption,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="save the plan (the documents and every resource's version) for "
            "`stratus apply PLAN`, which refuses it if anything changed since",
            show_default=False,
        ),
    ] = None,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode", help="exit 0 without changes, 2 with changes, 1 on errors"
        ),
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="also delete what the files do not declare of the kinds they declare, in "
            "their projects (without it: only what the files created)",
        ),
    ] = False,
    refresh_only: Annotated[
        bool,
        typer.Option(
            "--refresh-only",
            help="report drift: what changed outside the files since they were applied, "
            "and by whom",
        ),
    ] = False,
    destroy: Annotated[
        bool, typer.Option("--destroy", help="plan the removal of what the files declare")
    ] = False,
    env: EnvOption = None,
    var: VarOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show what applying the files would change, resource by resource and field by field;
    nothing is changed.

    Example: stratus plan -f infra/

    Example: stratus plan -f infra/ --env prod --detailed-exitcode -o json   (in CI)

    Example: stratus plan -f infra/ --refresh-only   (drift, and who made it)
    """
    from stratus.client._iac import load_documents

    outcome.changes_planned = False
    if refresh_only and (destroy or prune):
        raise typer.BadParameter("--refresh-only reports drift: it takes no --destroy or --prune")
    mode = "refresh-only" if refresh_only else "destroy" if destroy else "apply"
    documents = load_documents(file, env=env, variables=_variables(var))
    result = client(ctx).iac.plan(documents, mode=mode, prune=prune)  # type: ignore[arg-type]
    if out is not None:
        if refresh_only:
            raise typer.BadParameter("a refresh-only plan reports drift; there is nothing to save")
        saved = {
            "documents": documents,
            "pinned": result.pins(),
            "plan": result.model_dump(mode="json"),
            "files": [str(f) for f in file],
            "env": env,
            "variables": _variables(var),
        }
        temp = out.with_name(f".{out.name}.tmp")
        temp.write_text(json.dumps(saved, indent=2, default=str))
        temp.replace(out)
        err.print(
            f"saved the plan to {out}: `stratus apply {out}` applies exactly it",
            markup=False,
            soft_wrap=True,
        )
    if output != Format.table:
        show(result, output)
    else:
        _print_changes(result.changes)
        console.print(_summary(result), highlight=False)
    if detailed_exitcode and result.changed:
        outcome.changes_planned = True
        raise typer.Exit(2)


def _report(result: Any, output: Format, verb: str) -> None:
    if output != Format.table:
        show(result, output)
    else:
        _print_changes(result.applied)
        for kept in result.kept:
            console.print(f"  kept {kept.address}: {kept.note}", highlight=False, markup=False)
        console.print(f"{verb} {len(result.applied)} change(s).", highlight=False)
    if result.error:
        err.print(f"error: {result.error}", highlight=False, markup=False)
        if result.remaining:
            left = ", ".join(c.address for c in result.remaining)
            err.print(f"not applied: {left} (apply again to finish)", highlight=False, markup=False)
        raise typer.Exit(1)


def apply(
    ctx: typer.Context,
    saved: Annotated[
        Path | None,
        typer.Argument(help="a plan saved by `stratus plan --out`", show_default=False),
    ] = None,
    file: Annotated[
        list[Path] | None,
        typer.Option(
            "--file", "-f", help="a YAML file (one or more documents) or a folder of them (repeat)"
        ),
    ] = None,
    prune: Annotated[
        bool,
        typer.Option("--prune", help="also delete what the files do not declare (see plan)"),
    ] = False,
    env: EnvOption = None,
    var: VarOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Apply the files (or a saved plan): create, update and delete as `stratus plan` shows,
    in order (projects first), each resource in its own transaction. A failure stops it and
    says what was and was not applied; apply again to finish. A saved plan whose resources
    changed since it was made is refused, and nothing is applied.

    Example: stratus apply -f infra/

    Example: stratus apply plan.json   (saved by stratus plan -f infra/ --out plan.json)
    """
    if (saved is None) == (not file):
        raise typer.BadParameter("give the files (-f) or a saved plan, one of them")
    iac = client(ctx).iac
    if saved is not None:
        try:
            kept = json.loads(saved.read_text(encoding="utf-8"))
            documents, pinned, made = kept["documents"], kept["pinned"], kept["plan"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(
                f"{saved}: not a plan saved by `stratus plan --out` ({exc})"
            ) from None
        if kept.get("files"):  # read the files again for their code folders (same content)
            from stratus.client._iac import load_documents

            again = load_documents(
                kept["files"], env=kept.get("env"), variables=kept.get("variables") or {}
            )
            if again != documents:
                raise InvalidInput(
                    f"{saved}: the files changed since the plan was saved: plan again"
                )
            source: Any = [Path(f) for f in kept["files"]]
            env, variables = kept.get("env"), kept.get("variables") or {}
        else:
            source, env, variables = documents, None, {}
        result = iac.apply(
            source,
            pinned=pinned,
            plan_id=made.get("id") or None,
            mode=made.get("mode", "apply"),
            prune=bool(made.get("prune")),
            env=env,
            variables=variables,
        )
        verb = "Destroyed:" if made.get("mode") == "destroy" else "Applied"
    else:
        result = iac.apply(file or [], prune=prune, env=env, variables=_variables(var))
        verb = "Applied"
    _report(result, output, verb)


def destroy(
    ctx: typer.Context,
    file: FilesOption,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask (for CI)")] = False,
    env: EnvOption = None,
    var: VarOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Remove what the files declare, in reverse order (alert rules before monitors before
    endpoints ...), after showing it and asking. A project still holding what files do not
    manage (datasets, models, runs) is kept, and said so.

    Example: stratus destroy -f infra/

    Example: stratus destroy -f infra/ --yes   (in CI)
    """
    from stratus.client._iac import load_documents

    documents = load_documents(file, env=env, variables=_variables(var))
    iac = client(ctx).iac
    planned = iac.plan(documents, mode="destroy")
    if not planned.changed:
        console.print("Nothing to destroy: none of the declared resources exists.")
        return
    if not yes:
        _print_changes(planned.changes)
        console.print(_summary(planned), highlight=False)
        if not sys.stdin.isatty():
            raise typer.BadParameter("destroy asks before it deletes: give --yes to go ahead")
        typer.confirm("Delete these resources?", abort=True)
    result = iac.apply(documents, mode="destroy", pinned=planned.pins(), plan_id=planned.id)
    _report(result, output, "Destroyed:")


# --- `stratus iac`: schema and leases --------------------------------------------------------

app = typer.Typer(
    help="Infrastructure as code: the files' JSON Schema, apply leases.", no_args_is_help=True
)


@app.command("schema")
def schema(
    ctx: typer.Context,
    output_file: Annotated[
        Path | None,
        typer.Option("--output-file", "-o", help="write here (default: standard output)"),
    ] = None,
) -> None:
    """Write the JSON Schema of resource documents, for editors to complete and check files
    (YAML language servers: `# yaml-language-server: $schema=stratus.schema.json`).

    Example: stratus iac schema -o stratus.schema.json
    """
    text = json.dumps(client(ctx).iac.schema(), indent=2) + "\n"
    if output_file is None:
        sys.stdout.write(text)
        return
    temp = output_file.with_name(f".{output_file.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    temp.replace(output_file)
    err.print(f"wrote {output_file}", markup=False, highlight=False, soft_wrap=True)


@app.command("leases")
def leases(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    output: OutputOption = Format.table,
) -> None:
    """Applies in progress: which project's lease who holds, and until when.

    Example: stratus iac leases
    """
    held = client(ctx).iac.leases(project)
    if not held and output == Format.table:
        console.print("No apply holds a lease.")
        return
    show(held, output)


@app.command("unlock")
def unlock(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="the project whose lease to break")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Break a project's apply lease (project admins): for an apply that died, rather than
    waiting for its lease to expire. The apply holding it, if alive, stops at its next
    resource.

    Example: stratus iac unlock churn
    """
    if not yes:
        typer.confirm(f"Break the apply lease of project {project!r}?", abort=True)
    held = client(ctx).iac.unlock(project)
    console.print(
        f"broke the lease of {held['project']} held by {held['holder']} ({held['apply_id']})",
        highlight=False,
        markup=False,
    )


def export_iac(
    ctx: typer.Context,
    project: Annotated[str, typer.Option("--project", "-p", help="the project to export")],
    output_dir: Annotated[
        Path,
        typer.Option(
            "--output-dir", "-o", help="the folder to write the files to (made if missing)"
        ),
    ],
) -> None:
    """Write the project's live state as files that plan to no change (one per kind, with
    each pipeline's code folder): the way to adopt an existing project into Git.
    Credentials appear as `secret:NAME` references or `****` (keep what is stored), never
    as values; add `from_env` to a Secret to recreate it elsewhere.

    Example: stratus export iac -p churn -o infra/
    """
    documents = client(ctx).iac.export(project, output_dir)
    err.print(
        f"wrote {len(documents)} resource(s) to {output_dir}: `stratus plan -f {output_dir}` "
        "shows no change",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
