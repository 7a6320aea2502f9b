"""`stratus projects`: projects, their members and their service accounts."""

from __future__ import annotations

from typing import Annotated

import typer

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.output import Format, OutputOption, console, parse_labels, rate_text, show

app = typer.Typer(help="Projects: the tenancy boundary.", no_args_is_help=True)

LabelOption = Annotated[
    list[str] | None, typer.Option("--label", "-l", help="key=value (repeatable)")
]
PROJECT_COLUMNS = [
    ("NAME", lambda p: p.metadata.name),
    ("DESCRIPTION", lambda p: p.spec.description),
    ("YOUR ROLE", lambda p: p.status.your_role),
    ("LABELS", lambda p: p.metadata.labels),
    ("CREATED", lambda p: p.metadata.created_at),
]
MEMBER_COLUMNS = [("SUBJECT", lambda m: m.subject), ("ROLE", lambda m: m.role)]
SA_COLUMNS = [
    ("NAME", lambda a: a.metadata.name),
    ("ROLE", lambda a: a.status.role),
    ("DESCRIPTION", lambda a: a.spec.description),
    ("CREATED", lambda a: a.metadata.created_at),
]


@app.command("create")
def create(
    ctx: typer.Context,
    name: str,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    label: LabelOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Create a project; you become its owner.

    Example: stratus projects create fraud -d "fraud models" -l team=risk
    """
    show(
        client(ctx).projects.create(name, description, parse_labels(label)), output, PROJECT_COLUMNS
    )


@app.command("list")
def list_(
    ctx: typer.Context,
    selector: Annotated[str | None, typer.Option("--selector", "-s", help="e.g. team=risk")] = None,
    output: OutputOption = Format.table,
) -> None:
    """List the projects you can see.

    Example: stratus projects list -s team=risk
    """
    show(client(ctx).projects.list(selector), output, PROJECT_COLUMNS)


@app.command("show")
def show_(ctx: typer.Context, name: str, output: OutputOption = Format.yaml) -> None:
    """Show a project.

    Example: stratus projects show fraud
    """
    show(client(ctx).projects.get(name), output)


@app.command("update")
def update(
    ctx: typer.Context,
    name: str,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    label: LabelOption = None,
    resource_version: Annotated[
        int | None, typer.Option(help="fail unless the project is still at this version")
    ] = None,
    output: OutputOption = Format.table,
) -> None:
    """Change a project's description or labels (labels are replaced as a whole).

    Example: stratus projects update fraud -l team=risk -l tier=prod
    """
    project = client(ctx).projects.update(
        name,
        description=description,
        labels=parse_labels(label),
        resource_version=resource_version,
    )
    show(project, output, PROJECT_COLUMNS)


@app.command("limit")
def limit(
    ctx: typer.Context,
    name: str,
    rps: Annotated[
        float | None,
        typer.Option("--rps", help="requests per second, per caller", show_default=False),
    ] = None,
    burst: Annotated[
        int | None, typer.Option(help="requests at once [one second's worth]", show_default=False)
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="lift the project's limit")] = False,
    output: OutputOption = Format.table,
) -> None:
    """Limit each caller's requests into a project (admins only): every API key or login gets
    its own bucket; past it, requests get 429 with Retry-After.

    Example: stratus projects limit fraud --rps 50 --burst 100
    """
    if off == (rps is not None):
        raise typer.BadParameter("give --rps (and --burst), or --off")
    project = client(ctx).projects.set_rate_limit(name, None if off else rps, burst)
    show(
        project, output, [*PROJECT_COLUMNS, ("RATE LIMIT", lambda p: rate_text(p.spec.rate_limit))]
    )


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Delete a project (refused while it still holds buckets).

    Example: stratus projects delete fraud --yes
    """
    if not yes:
        typer.confirm(f"Delete project {name!r}?", abort=True)
    client(ctx).projects.delete(name)
    console.print(f"deleted project {name}")


@app.command("members")
def members(ctx: typer.Context, name: str, output: OutputOption = Format.table) -> None:
    """List who has which role in a project.

    Example: stratus projects members fraud
    """
    show(client(ctx).projects.members(name), output, MEMBER_COLUMNS)


@app.command("add-member")
def add_member(
    ctx: typer.Context,
    name: str,
    role: Annotated[str, typer.Option("--role", "-r", help="owner, editor, viewer or invoker")],
    user: Annotated[str | None, typer.Option("--user", "-u")] = None,
    service_account: Annotated[str | None, typer.Option("--service-account", "-a")] = None,
    output: OutputOption = Format.table,
) -> None:
    """Give a user or service account a role in a project (replaces its previous role).

    Example: stratus projects add-member fraud --user alice --role editor
    """
    member = client(ctx).projects.set_member(name, role, user=user, service_account=service_account)
    show(member, output, MEMBER_COLUMNS)


@app.command("remove-member")
def remove_member(ctx: typer.Context, name: str, subject: str) -> None:
    """Take a member's role away (SUBJECT is user:NAME or serviceaccount:NAME).

    Example: stratus projects remove-member fraud user:alice
    """
    client(ctx).projects.remove_member(name, subject)
    console.print(f"removed {subject} from {name}")


sa_app = typer.Typer(help="Service accounts: identities for programs.", no_args_is_help=True)


@sa_app.command("create")
def sa_create(
    ctx: typer.Context,
    name: str,
    project: ProjectOption = None,
    role: Annotated[str | None, typer.Option("--role", "-r", help="role in the project")] = None,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    output: OutputOption = Format.table,
) -> None:
    """Create a service account in a project, optionally with a role.

    Example: stratus serviceaccounts create ci -p fraud --role editor
    """
    c = client(ctx)
    account = c.service_accounts.create(
        name, project=project_of(ctx, project), role=role, description=description
    )
    show(account, output, SA_COLUMNS)


@sa_app.command("list")
def sa_list(
    ctx: typer.Context, project: ProjectOption = None, output: OutputOption = Format.table
) -> None:
    """List a project's service accounts.

    Example: stratus serviceaccounts list -p fraud
    """
    show(client(ctx).service_accounts.list(project_of(ctx, project)), output, SA_COLUMNS)


@sa_app.command("delete")
def sa_delete(ctx: typer.Context, name: str, project: ProjectOption = None) -> None:
    """Delete a service account and its keys.

    Example: stratus serviceaccounts delete ci -p fraud
    """
    client(ctx).service_accounts.delete(name, project_of(ctx, project))
    console.print(f"deleted service account {name}")
