"""`stratus users`: platform users (admins manage them)."""

from __future__ import annotations

from typing import Annotated

import typer

from stratus.cli.context import client
from stratus.cli.output import Format, OutputOption, console, parse_labels, show

app = typer.Typer(help="Users of the platform (admins only).", no_args_is_help=True)

USER_COLUMNS = [
    ("NAME", lambda u: u.metadata.name),
    ("EMAIL", lambda u: u.spec.email),
    ("ADMIN", lambda u: u.spec.is_admin),
    ("PLATFORM ROLE", lambda u: u.spec.platform_role or "-"),
    ("DISABLED", lambda u: u.spec.disabled),
    ("PASSWORD", lambda u: u.status.has_password),
    ("CREATED", lambda u: u.metadata.created_at),
]


@app.command("create")
def create(
    ctx: typer.Context,
    name: str,
    password: Annotated[
        str | None,
        typer.Option(help="password; use --prompt-password to type it", show_default=False),
    ] = None,
    prompt_password: Annotated[bool, typer.Option(help="ask for the password")] = False,
    email: Annotated[str | None, typer.Option()] = None,
    admin: Annotated[bool, typer.Option("--admin", help="make a platform admin")] = False,
    platform_role: Annotated[
        str | None,
        typer.Option(
            "--platform-role",
            help="metrics-reader: reads every project's /metrics series and nothing else",
            show_default=False,
        ),
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l")] = None,
    output: OutputOption = Format.table,
) -> None:
    """Create a user (with a password to log in, or none and use API keys).

    Example: stratus users create alice --prompt-password --email alice@example.com
    """
    if prompt_password:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = client(ctx).users.create(
        name,
        password,
        email=email,
        is_admin=admin,
        platform_role=platform_role,
        labels=parse_labels(label),
    )
    show(user, output, USER_COLUMNS)


@app.command("list")
def list_(
    ctx: typer.Context,
    selector: Annotated[str | None, typer.Option("--selector", "-s")] = None,
    output: OutputOption = Format.table,
) -> None:
    """List users.

    Example: stratus users list -o json
    """
    show(client(ctx).users.list(selector), output, USER_COLUMNS)


@app.command("show")
def show_(ctx: typer.Context, name: str, output: OutputOption = Format.yaml) -> None:
    """Show a user.

    Example: stratus users show alice
    """
    show(client(ctx).users.get(name), output)


@app.command("update")
def update(
    ctx: typer.Context,
    name: str,
    password: Annotated[str | None, typer.Option(show_default=False)] = None,
    prompt_password: Annotated[bool, typer.Option(help="ask for a new password")] = False,
    email: Annotated[str | None, typer.Option()] = None,
    admin: Annotated[bool | None, typer.Option("--admin/--no-admin")] = None,
    disabled: Annotated[bool | None, typer.Option("--disable/--enable")] = None,
    platform_role: Annotated[
        str | None,
        typer.Option("--platform-role", help="metrics-reader, or none", show_default=False),
    ] = None,
    output: OutputOption = Format.table,
) -> None:
    """Change a user: password, email, admin flag, or disable them.

    Example: stratus users update alice --disable
    """
    if prompt_password:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    user = client(ctx).users.update(
        name,
        password=password,
        email=email,
        is_admin=admin,
        disabled=disabled,
        platform_role=platform_role,
    )
    show(user, output, USER_COLUMNS)


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y")] = False,
) -> None:
    """Delete a user and their keys.

    Example: stratus users delete alice -y
    """
    if not yes:
        typer.confirm(f"Delete user {name!r}?", abort=True)
    client(ctx).users.delete(name)
    console.print(f"deleted user {name}")
