"""`stratus keys`: API keys for users and service accounts."""

from __future__ import annotations

from typing import Annotated

import typer

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.listing import parse_duration
from stratus.cli.output import Format, OutputOption, console, err, rate_text, show

app = typer.Typer(help="API keys (the secret is shown once, at creation).", no_args_is_help=True)

KEY_COLUMNS = [
    ("KEY ID", lambda k: k.key_id),
    ("NAME", lambda k: k.name),
    ("OWNER", lambda k: k.owner),
    ("PROJECT", lambda k: k.project),
    ("STATE", lambda k: k.state),
    ("EXPIRES", lambda k: k.expires_at),
    ("LAST USED", lambda k: k.last_used_at),
]
AccountOption = Annotated[
    str | None, typer.Option("--service-account", "-a", help="a service account of --project")
]


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", "-n")] = "default",
    user: Annotated[str | None, typer.Option("--user", "-u", help="for this user (admins)")] = None,
    service_account: AccountOption = None,
    project: ProjectOption = None,
    restrict: Annotated[
        bool, typer.Option("--restrict", help="a user key that works only in --project")
    ] = False,
    expires_in_days: Annotated[float | None, typer.Option(help="days until it expires")] = None,
    output: OutputOption = Format.table,
) -> None:
    """Create an API key for yourself, another user (admins), or a service account.

    Example: stratus keys create --service-account ci -p fraud --expires-in-days 90
    """
    c = client(ctx)
    if service_account:
        key = c.service_accounts.create_key(
            service_account,
            project=project_of(ctx, project),
            key_name=name,
            expires_in_days=expires_in_days,
        )
    else:
        key = c.keys.create(
            name,
            user=user,
            project=project_of(ctx, project) if restrict else None,
            expires_in_days=expires_in_days,
        )
    if output != Format.table:
        show(key, output)
        return
    show(key, output, KEY_COLUMNS)
    err.print("The key (shown once; keep it safe):")
    console.print(key.secret, highlight=False, soft_wrap=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="every user's keys (admins)")] = False,
    service_account: AccountOption = None,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """List your keys, every user's (--all), or a service account's.

    Example: stratus keys list --service-account ci -p fraud
    """
    c = client(ctx)
    if service_account:
        keys = c.service_accounts.list_keys(service_account, project_of(ctx, project))
    else:
        keys = c.keys.list(all=all_)
    show(keys, output, KEY_COLUMNS)


@app.command("limit")
def limit(
    ctx: typer.Context,
    key_id: str,
    rps: Annotated[
        float | None, typer.Option("--rps", help="requests per second", show_default=False)
    ] = None,
    burst: Annotated[
        int | None, typer.Option(help="requests at once [one second's worth]", show_default=False)
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="lift the key's limit")] = False,
    output: OutputOption = Format.table,
) -> None:
    """Limit one API key's requests, to the API and to endpoints (admins only); past the
    limit, requests get 429 with Retry-After.

    Example: stratus keys limit 3f2a9c0d1e4b5a6f --rps 10 --burst 20
    """
    if off == (rps is not None):
        raise typer.BadParameter("give --rps (and --burst), or --off")
    key = client(ctx).keys.set_rate_limit(key_id, None if off else rps, burst)
    show(key, output, [*KEY_COLUMNS, ("RATE LIMIT", lambda k: rate_text(k.rate_limit))])


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: str,
    service_account: AccountOption = None,
    project: ProjectOption = None,
) -> None:
    """Revoke a key at once.

    Example: stratus keys revoke 3f2a9c0d1e4b5a6f
    """
    c = client(ctx)
    if service_account:
        c.service_accounts.revoke_key(service_account, key_id, project_of(ctx, project))
    else:
        c.keys.revoke(key_id)
    console.print(f"revoked key {key_id}")


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    key_id: str,
    overlap: Annotated[
        str,
        typer.Option(help="how long the old key keeps working: 90s, 15m, 24h, 7d (0: none)"),
    ] = "24h",
    service_account: AccountOption = None,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Replace a key with a new one; the old one expires after --overlap.

    The new key has the same owner, name, project and lifetime, and is shown once. The old
    key keeps working for --overlap (a day by default), time to roll the new one out.

    Example: stratus keys rotate 3f2a9c0d1e4b5a6f --overlap 1h
    """
    seconds = parse_duration(overlap, "--overlap")
    c = client(ctx)
    if service_account:
        key = c.service_accounts.rotate_key(
            service_account, key_id, project_of(ctx, project), overlap_seconds=seconds
        )
    else:
        key = c.keys.rotate(key_id, overlap_seconds=seconds)
    if output != Format.table:
        show(key, output)
        return
    show(key, output, KEY_COLUMNS)
    ends = key.replaced.expires_at
    err.print(
        f"key {key_id} stops working "
        + ("now" if key.replaced.state != "active" or ends is None else f"at {ends.isoformat()}")
    )
    err.print("The new key (shown once; keep it safe):")
    console.print(key.secret, highlight=False, soft_wrap=True)
