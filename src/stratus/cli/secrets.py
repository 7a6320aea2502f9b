"""`stratus secrets`: a project's named, versioned secrets. A value goes in from a hidden
prompt, a file or standard input (never as an argument, which shells keep in their history)
and never comes back out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.output import Format, OutputOption, console, show

app = typer.Typer(
    help="Secrets: set once, given to jobs and replicas as environment variables, never shown.",
    no_args_is_help=True,
)

COLUMNS = [
    ("NAME", lambda s: s.name),
    ("VERSION", lambda s: s.version),
    ("SET BY", lambda s: s.created_by),
    ("UPDATED", lambda s: s.updated_at),
    ("DESCRIPTION", lambda s: s.description or "-"),
]
VERSION_COLUMNS = [
    ("VERSION", lambda v: v.version),
    ("SET BY", lambda v: v.created_by),
    ("AT", lambda v: v.created_at),
    ("DESCRIPTION", lambda v: v.description or "-"),
]


PlatformOption = Annotated[
    bool,
    typer.Option(
        "--platform", help="a secret of the platform itself, not of a project (admins only)"
    ),
]


def _value(from_file: Path | None) -> str:
    if from_file is not None:
        try:
            text = from_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {from_file}: {exc.strerror}") from None
        return text.removesuffix("\n")
    if sys.stdin.isatty():
        return str(typer.prompt("Value", hide_input=True, confirmation_prompt=True))
    return sys.stdin.read().removesuffix("\n")


@app.command("set")
def set_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the secret's name (also its variable's name)")],
    from_file: Annotated[
        Path | None,
        typer.Option("--from-file", help="read the value from this file", show_default=False),
    ] = None,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    platform: PlatformOption = False,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Set a secret (a new version each time): the value comes from --from-file, standard
    input, or a hidden prompt. Jobs and replicas that name it get it as an environment
    variable; it is never shown, logged or audited.

    Example: stratus secrets set WAREHOUSE_TOKEN -p fraud < token.txt

    Example: stratus jobs run --code ./train --secret WAREHOUSE_TOKEN -p fraud

    Example: stratus secrets set S3_SECRET --platform --from-file s3.txt

    A platform secret is named in settings as secret:NAME, e.g.
    STRATUS_STORE_S3_SECRET_ACCESS_KEY=secret:S3_SECRET.
    """
    value = _value(from_file)
    read = client(ctx).secrets.set(
        name,
        value,
        project=None if platform else project_of(ctx, project),
        description=description,
        platform=platform,
    )
    show(read, output, COLUMNS)


@app.command("list")
def list_(
    ctx: typer.Context,
    platform: PlatformOption = False,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """List a project's (or the platform's) secrets: names, versions, who set them.

    Example: stratus secrets list -p fraud
    """
    c = client(ctx)
    found = c.secrets.list(platform=True) if platform else c.secrets.list(project_of(ctx, project))
    show(found, output, COLUMNS)


@app.command("show")
def show_(
    ctx: typer.Context,
    name: str,
    platform: PlatformOption = False,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """A secret's versions: who set each and when (never a value).

    Example: stratus secrets show WAREHOUSE_TOKEN -p fraud
    """
    c = client(ctx)
    where = None if platform else project_of(ctx, project)
    read = c.secrets.get(name, where, platform=platform)
    if output != Format.table:
        show(read, output)
        return
    show(read.versions, output, VERSION_COLUMNS)


@app.command("delete")
def delete(
    ctx: typer.Context, name: str, platform: PlatformOption = False, project: ProjectOption = None
) -> None:
    """Delete every version of a secret (jobs and replicas already running keep theirs).

    Example: stratus secrets delete WAREHOUSE_TOKEN -p fraud
    """
    where = None if platform else project_of(ctx, project)
    client(ctx).secrets.delete(name, where, platform=platform)
    console.print(f"deleted secret {name}")
