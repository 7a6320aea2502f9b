"""`stratus login` and `stratus status`."""

from __future__ import annotations

from typing import Annotated

import typer

from stratus.cli.context import client
from stratus.cli.output import Format, OutputOption, console, show
from stratus.client import Client
from stratus.client.credentials import Credentials, default_home, write_credentials
from stratus.core.errors import InvalidInput


def login(
    ctx: typer.Context,
    username: Annotated[str | None, typer.Option("--username", "-u", help="user name")] = None,
    password: Annotated[
        str | None, typer.Option(help="password (prompted when not given)", show_default=False)
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", "-k", help="store this API key instead")
    ] = None,
    project: Annotated[str | None, typer.Option("--project", "-p", help="default project")] = None,
) -> None:
    """Log in: exchange a username and password for a short-lived token, or store an API key.

    Both are saved in $STRATUS_HOME/credentials (mode 0600) for later commands.

    Example: stratus login --url http://stratus.internal:8700 -u alice
    """
    root = ctx.find_root()
    url = root.params.get("url")
    if api_key is None and username is None:
        username = typer.prompt("Username")
    if api_key is not None:
        with Client(url=url, api_key=api_key) as c:
            me = c.whoami()
            creds = Credentials(url=c.url, api_key=api_key, user=me.name, project=project)
    else:
        assert username is not None
        if password is None:
            password = typer.prompt("Password", hide_input=True)
        if not password:
            raise InvalidInput("a password is needed")
        with Client(url=url, api_key="") as c:
            token = c.login(username, password)
            creds = Credentials(url=c.url, token=token.token, user=username, project=project)
    path = write_credentials(creds, default_home())
    console.print(f"logged in to {creds.url} as [bold]{creds.user}[/] (saved to {path})")


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
        ],
    )
