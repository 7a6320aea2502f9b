"""`stratus login` and `stratus status`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from stratus.cli.context import client
from stratus.cli.output import Format, OutputOption, console, err, show
from stratus.client import Client
from stratus.client._client import certificate_rejected
from stratus.client.credentials import (
    DEFAULT_URL,
    Credentials,
    check_profile_name,
    chosen_profile,
    default_home,
    load_profiles,
    local_ca_path,
    write_credentials,
)
from stratus.core.errors import InvalidInput, ServiceUnavailable

if TYPE_CHECKING:
    from stratus.iam.schemas import WhoAmI


def login(
    ctx: typer.Context,
    username: Annotated[str | None, typer.Option("--username", "-u", help="user name")] = None,
    password: Annotated[
        str | None, typer.Option(help="password (prompted when not given)", show_default=False)
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", "-k", help="store this API key instead")
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(
            "--project",
            "-p",
            help="default project (default: the key's project when it is restricted to one, "
            "else your only project, else 'default')",
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            help="save the login as this profile and make it current (default: the current "
            "profile)",
            show_default=False,
        ),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            "--ca-file",
            help="PEM file of the CA that signed an https platform's certificate, saved with "
            "the login (default: STRATUS_CA_FILE, the profile's, or the CA of `stratus up "
            "--tls` in this home when it signed the platform's certificate; else the "
            "system's trust store)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Log in: exchange a username and password for a short-lived token, or store an API key.

    Both are saved in $STRATUS_HOME/credentials (mode 0600) for later commands, as a profile:
    `--profile NAME` keeps several identities side by side (`stratus profiles list`). An https
    platform's CA (`--ca-file`) is saved with it: copy the `tls/ca.pem` of a platform started
    with `stratus up --tls` to the machine you log in from.

    Example: stratus --url http://stratus.internal:8700 login -u alice --profile alice

    Example: stratus --url https://stratus.internal:8700 login -u alice --ca-file ca.pem
    """
    root = ctx.find_root()
    home = default_home()
    saved = load_profiles(home)
    target = check_profile_name(
        profile or chosen_profile(root.params.get("profile")) or saved.current
    )
    before = saved.profiles.get(target)
    current = saved.profiles.get(saved.current)
    url = (
        root.params.get("url")
        or (before.url if before else None)
        or (current.url if current else None)
        or DEFAULT_URL
    )
    if api_key is None and username is None:
        username = typer.prompt("Username")
    if api_key is None and password is None:
        password = typer.prompt("Password", hide_input=True)
    if api_key is None and not password:
        raise InvalidInput("a password is needed")
    given = ca_file or root.params.get("ca_file")
    saved_ca = next(
        (p.ca_file for p in (before, current) if p and p.url == url.rstrip("/") and p.ca_file),
        None,
    )
    ca = str(Path(given).absolute()) if given else saved_ca

    def attempt(ca: str | None) -> tuple[WhoAmI, Credentials]:
        if api_key is not None:
            with Client(url=url, api_key=api_key, ca_file=ca) as c:
                me = c.whoami()
                return me, Credentials(url=c.url, api_key=api_key, user=me.name, ca_file=c.ca_file)
        assert username is not None and password is not None
        with Client(url=url, api_key="", ca_file=ca) as c:
            token = c.login(username, password)
            me = c.whoami()
            return me, Credentials(url=c.url, token=token.token, user=username, ca_file=c.ca_file)

    try:
        me, creds = attempt(ca)
    except ServiceUnavailable as exc:
        # A platform this home runs with `stratus up --tls` is signed by the home's own CA:
        # trusted when the system's store does not know it (nothing was sent before that).
        local = local_ca_path(home)
        if ca is not None or not local.is_file() or not certificate_rejected(exc):
            raise
        me, creds = attempt(str(local))
    creds.project = project or home_project(me)
    path = write_credentials(creds, home, target, make_current=True)
    console.print(
        f"logged in to {creds.url} as [bold]{escape(creds.user or '')}[/] "
        f"(profile {escape(target)}, default project {escape(creds.project or 'default')}"
        f"{f'; trusting the CA {escape(creds.ca_file)}' if creds.ca_file else ''}; "
        f"saved to {path})",
        highlight=False,
    )
    if before is not None and (before.url, before.user) != (creds.url, creds.user):
        err.print(
            f"replaced the login of profile '{escape(target)}': it was "
            f"{escape(before.user or '?')} "
            f"at {escape(before.url)}; keep both with `stratus login --profile NAME`",
            highlight=False,
        )
    if target != saved.current:
        err.print(
            f"now using profile '{escape(target)}' (it was '{escape(saved.current)}': "
            f"`stratus profiles use {escape(saved.current)}` to go back)",
            highlight=False,
        )


def home_project(me: WhoAmI) -> str | None:
    """The project a login should work in when none is named: the one its key is restricted
    to, a service account's own, or the user's only project when not a member of 'default'."""
    if me.key_project:
        return me.key_project
    if me.kind == "serviceaccount" and "/" in me.name:
        return me.name.split("/", 1)[0]
    if "default" not in me.roles and len(me.roles) == 1 and not me.is_admin:
        return next(iter(me.roles))
    return None


def status(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """Show whether the platform is up and ready, and who you are on it.

    Example: stratus status -o json
    """
    c = client(ctx)
    health = c.health()
    me = c.whoami()
    data = {
        "url": c.url,
        "status": health.get("status"),
        "checks": health.get("checks", {}),
        "you": me.subject,
        "admin": me.is_admin,
        "roles": me.roles,
        "profile": chosen_profile(ctx.find_root().params.get("profile"))
        or load_profiles(default_home()).current,
        "project": c.default_project,
    }
    show(
        data,
        output,
        [
            ("URL", lambda d: d["url"]),
            ("STATUS", lambda d: d["status"]),
            ("DATABASE", lambda d: d["checks"].get("database")),
            ("STORE", lambda d: d["checks"].get("store")),
            ("YOU", lambda d: d["you"]),
            ("ADMIN", lambda d: d["admin"]),
            ("PROFILE", lambda d: d["profile"]),
            ("PROJECT", lambda d: d["project"]),
        ],
    )
