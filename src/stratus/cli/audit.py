"""`stratus audit`: read and verify the audit log."""

from __future__ import annotations

from typing import Annotated

import typer

from stratus.cli.context import client
from stratus.cli.listing import cut, iso, parse_optional_time, say_cut
from stratus.cli.output import Format, OutputOption, console, errors, show

app = typer.Typer(help="The audit log of every change and login.", no_args_is_help=True)

EVENT_COLUMNS = [
    ("SEQ", lambda e: e.seq),
    ("TIME", lambda e: e.time),
    ("ACTOR", lambda e: e.actor),
    ("ACTION", lambda e: e.action),
    ("PROJECT", lambda e: e.project),
    ("OUTCOME", lambda e: f"{e.outcome} ({e.status_code})"),
    ("RESOURCE", lambda e: e.resource),
    ("REQUEST", lambda e: e.request_id),
]


@app.command("list")
def list_(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    actor: Annotated[str | None, typer.Option(help="e.g. user:alice")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. buckets.create, or objects.*")] = None,
    since: Annotated[
        str | None, typer.Option(help="from this time: 30m, 1h, 2d, 1w ago, or an ISO time")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="before this time: 30m, 1h, 2d, 1w ago, or an ISO time")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="at most this many")] = 50,
    all_: Annotated[bool, typer.Option("--all", help="every matching entry (no --limit)")] = False,
    oldest_first: Annotated[bool, typer.Option("--oldest-first")] = False,
    output: OutputOption = Format.table,
) -> None:
    """List audit entries, newest first (the first 50 unless --limit or --all; a list that
    is cut says so on stderr).

    Example: stratus audit list -p fraud --since 1h --actor user:alice --action 'objects.*'
    """
    wanted = None if all_ else limit
    events = client(ctx).audit.list(
        project=project,
        actor=actor,
        action=action,
        since=iso(parse_optional_time(since, "--since")),
        until=iso(parse_optional_time(until, "--until")),
        order="asc" if oldest_first else "desc",
        limit=None if wanted is None else wanted + 1,
    )
    events, more = cut(events, wanted)
    show(events, output, EVENT_COLUMNS)
    if more:
        say_cut(len(events), "entries", "use --limit N to see more, or --all")


@app.command("verify")
def verify(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """Check the keyed hash chain and its checkpoint: prove the log intact, or name the first
    entry altered, removed or replaced.

    Example: stratus audit verify
    """
    result = client(ctx).audit.verify()
    if output != Format.table:
        show(result, output)
    elif result.ok:
        anchored = (
            f" (up to entry {result.checkpoint_seq} anchored in the object store)"
            if result.checkpoint_seq is not None
            else ""
        )
        console.print(f"[green]audit log intact[/]: {result.checked} entries verified{anchored}")
    else:
        where = f" (entry {result.first_bad_seq})" if result.first_bad_seq is not None else ""
        errors.print(f"[red]audit log tampered[/]: {result.problem}{where}")
    if not result.ok:
        raise typer.Exit(1)
