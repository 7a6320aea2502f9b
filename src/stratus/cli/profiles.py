"""`stratus profiles`: the named logins of the credentials file (`stratus login --profile`):
list them, choose the current one, remove one. Nothing here talks to the platform."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from stratus.cli.output import Format, OutputOption, console, show
from stratus.client.credentials import (
    DEFAULT_PROFILE,
    chosen_profile,
    credentials_path,
    default_home,
    load_profiles,
    save_profiles,
)
from stratus.core.errors import NotFound

app = typer.Typer(
    help="Named logins (profiles) in the credentials file: list, use, remove.",
    no_args_is_help=True,
)

ProfileArgument = Annotated[str, typer.Argument(help="the profile's name", show_default=False)]


def _missing(name: str, known: list[str]) -> NotFound:
    listed = ", ".join(known) or "none"
    return NotFound(
        f"no profile {name!r} in {credentials_path(default_home())} (profiles: {listed}); "
        f"create it with `stratus login --profile {name}`"
    )


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """List the profiles; `*` marks the one commands use (`--profile` and `STRATUS_PROFILE`
    choose another for one command).

    Example: stratus profiles list
    """
    found = load_profiles(default_home())
    active = chosen_profile(ctx.find_root().params.get("profile")) or found.current
    rows = [
        {
            "name": name,
            "active": name == active,
            "current": name == found.current,
            "url": creds.url,
            "user": creds.user,
            "project": creds.project,
            "auth": "api key" if creds.api_key else "token" if creds.token else None,
        }
        for name, creds in sorted(found.profiles.items())
    ]
    show(
        rows,
        output,
        [
            ("", lambda r: "*" if r["active"] else ""),
            ("NAME", lambda r: r["name"]),
            ("URL", lambda r: r["url"]),
            ("USER", lambda r: r["user"]),
            ("PROJECT", lambda r: r["project"] or "default"),
            ("AUTH", lambda r: r["auth"]),
        ],
    )


@app.command("use")
def use(name: ProfileArgument) -> None:
    """Make a profile the current one: later commands use its platform, identity and project.

    Example: stratus profiles use alice
    """
    found = load_profiles(default_home())
    if name not in found.profiles:
        raise _missing(name, sorted(found.profiles))
    found.current = name
    save_profiles(found, default_home())
    creds = found.profiles[name]
    console.print(
        f"now using profile {escape(name)}: {escape(creds.user or '?')} at {escape(creds.url)}",
        highlight=False,
    )


@app.command("remove")
def remove(name: ProfileArgument) -> None:
    """Forget a profile's login (the current one included: `default` is current after).

    Example: stratus profiles remove old-admin
    """
    found = load_profiles(default_home())
    if name not in found.profiles:
        raise _missing(name, sorted(found.profiles))
    del found.profiles[name]
    if found.current == name:
        found.current = DEFAULT_PROFILE
    save_profiles(found, default_home())
    console.print(f"removed profile {escape(name)}", highlight=False)
