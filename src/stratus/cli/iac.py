"""`stratus plan` and `stratus apply`: resource documents in files, against the platform."""

from __future__ import annotations

import json
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
SIGNS = {"create": "[green]+[/]", "update": "[yellow]~[/]", "delete": "[red]-[/]"}


def _value(value: Any) -> str:
    return "(none)" if value is None else repr(value)


def _print_changes(changes: list[Any], verb: str = "") -> None:
    for change in changes:
        if change.action == "no-op":
            continue
        console.print(
            f"{SIGNS[change.action]} {verb or change.action} {change.address}", highlight=False
        )
        for field in change.fields:
            console.print(
                f"    {field.path}: {_value(field.before)} → {_value(field.after)}",
                highlight=False,
                markup=False,
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
    output: OutputOption = Format.table,
) -> None:
    """Show what applying the files would change, resource by resource and field by field;
    nothing is changed.

    Example: stratus plan -f infra/

    Example: stratus plan -f infra/ --detailed-exitcode -o json   (in CI)
    """
    from stratus.client._iac import load_documents

    documents = load_documents(file)
    result = client(ctx).iac.plan(documents)
    if out is not None:
        saved = {
            "documents": documents,
            "pinned": result.pins(),
            "plan": result.model_dump(mode="json"),
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
        s = result.summary
        console.print(
            f"Plan: {s.create} to create, {s.update} to update, {s.delete} to delete"
            f" ({s.unchanged} unchanged).",
            highlight=False,
        )
    if detailed_exitcode and result.changed:
        raise typer.Exit(2)


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
    output: OutputOption = Format.table,
) -> None:
    """Apply the files (or a saved plan): create and update what they declare, in order
    (projects first), each resource in its own transaction. A failure stops it and says what
    was and was not applied; apply again to finish. A saved plan whose resources changed since
    it was made is refused, and nothing is applied.

    Example: stratus apply -f infra/

    Example: stratus apply plan.json   (saved by stratus plan -f infra/ --out plan.json)
    """
    if (saved is None) == (not file):
        raise typer.BadParameter("give the files (-f) or a saved plan, one of them")
    if saved is not None:
        try:
            kept = json.loads(saved.read_text(encoding="utf-8"))
            documents, pinned = kept["documents"], kept["pinned"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(
                f"{saved}: not a plan saved by `stratus plan --out` ({exc})"
            ) from None
        result = client(ctx).iac.apply(documents, pinned=pinned)
    else:
        result = client(ctx).iac.apply(file or [])
    if output != Format.table:
        show(result, output)
    else:
        _print_changes(result.applied)
        console.print(f"Applied {len(result.applied)} change(s).", highlight=False)
    if result.failed is not None:
        err.print(f"error: {result.error}", highlight=False, markup=False)
        if result.remaining:
            left = ", ".join(c.address for c in result.remaining)
            err.print(f"not applied: {left}", highlight=False, markup=False)
        raise typer.Exit(1)
