"""`stratus alerts`: apply alert rules from YAML, read them and their history, send a test
notification, and manage notification channels (`stratus alerts channels`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.listing import AllProjectsOption, cut, in_scope, say_cut, with_project
from stratus.cli.output import Format, OutputOption, console, show
from stratus.monitoring.alert_schemas import AlertRuleRead, ChannelRead

app = typer.Typer(
    help="Alert rules on the platform's metrics: apply, list, history, test; channels.",
    no_args_is_help=True,
)
channels_app = typer.Typer(
    help="Notification channels: webhook, Slack-compatible webhook, email.",
    no_args_is_help=True,
)
app.add_typer(channels_app, name="channels")

FileOption = Annotated[
    Path, typer.Option("--file", "-f", help="a YAML file: one item, a list, or a `rules:` list")
]
_STATE_COLOUR = {"firing": "red", "pending": "yellow", "inactive": "green", "resolved": "green"}


def _condition(rule: AlertRuleRead) -> str:
    spec = rule.spec
    match = ",".join(f'{k}="{v}"' for k, v in sorted(spec.match.items()))
    selector = f"{spec.metric}{{{match}}}" if match else spec.metric
    wait = f" for {spec.for_seconds:g}s" if spec.for_seconds else ""
    return f"{selector} {spec.comparison} {spec.threshold:g}{wait}"


RULE_COLUMNS = [
    ("NAME", lambda r: r.metadata.name),
    ("STATE", lambda r: r.status.state if r.spec.enabled else "disabled"),
    ("SEVERITY", lambda r: r.spec.severity),
    ("CONDITION", _condition),
    ("CHANNELS", lambda r: ", ".join(r.spec.channels) or "-"),
    ("EVALUATED", lambda r: r.status.last_evaluated_at),
]
EVENT_COLUMNS = [
    ("TIME", lambda e: e.time),
    ("RULE", lambda e: e.rule),
    ("STATE", lambda e: e.state),
    ("SEVERITY", lambda e: e.severity),
    ("VALUE", lambda e: "-" if e.value is None else f"{e.value:g}"),
    ("LABELS", lambda e: e.labels),
    ("SOURCE", lambda e: e.source),
    (
        "NOTIFIED",
        lambda e: (
            ", ".join(f"{n.channel}:{'ok' if n.ok else 'failed'}" for n in e.notifications) or "-"
        ),
    ),
]
CHANNEL_COLUMNS = [
    ("NAME", lambda c: c.metadata.name),
    ("TYPE", lambda c: c.spec.type),
    ("TARGET", lambda c: _target(c)),
    ("RULES", lambda c: ", ".join(c.status.rules) or "-"),
    ("UPDATED", lambda c: c.metadata.updated_at),
]


def _target(channel: ChannelRead) -> str:
    spec = channel.spec
    if spec.type == "email":
        return f"{', '.join(spec.to)} via {spec.smtp_host}:{spec.smtp_port}"
    return spec.url or "-"


@app.command("apply")
def apply(
    ctx: typer.Context,
    file: FileOption,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Create or replace the alert rules of a YAML file.

    Example: stratus alerts apply -f alerts.yaml
    """
    rules = client(ctx).alerts.apply_file(file, project_of(ctx, project))
    show(rules, output, RULE_COLUMNS)


@app.command("list")
def list_(
    ctx: typer.Context,
    project: ProjectOption = None,
    all_projects: AllProjectsOption = False,
    output: OutputOption = Format.table,
) -> None:
    """List alert rules with their state (the worst over their series)."""
    found = client(ctx).alerts.list(in_scope(ctx, project, all_projects), all_projects=all_projects)
    show(found, output, with_project(RULE_COLUMNS, all_projects))


@app.command("show")
def show_(
    ctx: typer.Context,
    name: str,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show a rule and each series it watches.

    Example: stratus alerts show high-error-ratio
    """
    rule = client(ctx).alerts.get(name, project_of(ctx, project))
    if output != Format.table:
        show(rule, output)
        return
    show(rule, output, RULE_COLUMNS)
    if rule.status.message:
        console.print(rule.status.message, markup=False)
    if rule.status.instances:
        console.print()
        show(
            rule.status.instances,
            output,
            [
                ("STATE", lambda i: i.state),
                ("VALUE", lambda i: "-" if i.value is None else f"{i.value:g}"),
                ("SINCE", lambda i: i.active_since),
                ("LABELS", lambda i: i.labels),
            ],
        )


@app.command("delete")
def delete(ctx: typer.Context, name: str, project: ProjectOption = None) -> None:
    """Delete an alert rule (its history stays)."""
    client(ctx).alerts.delete(name, project_of(ctx, project))
    console.print(f"deleted alert rule {name}", markup=False)


@app.command("history")
def history(
    ctx: typer.Context,
    rule: Annotated[
        str | None, typer.Option("--rule", "-r", help="only this rule", show_default=False)
    ] = None,
    state: Annotated[
        str | None,
        typer.Option("--state", help="firing or resolved", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10000)] = 50,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Firing and resolved changes, newest first, with what each channel answered.

    Example: stratus alerts history --rule high-error-ratio
    """
    if state is not None and state not in ("firing", "resolved"):
        raise typer.BadParameter("--state is firing or resolved")
    events, more = cut(
        client(ctx).alerts.history(
            project_of(ctx, project), rule=rule, state=state, limit=limit + 1
        ),
        limit,
    )
    show(events, output, EVENT_COLUMNS)
    if more:
        say_cut(len(events), "changes", "use --limit N (up to 10000) to see more")


@app.command("test")
def test(
    ctx: typer.Context,
    name: str,
    resolved: Annotated[
        bool, typer.Option("--resolved", help="send a resolved notification instead")
    ] = False,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Send a test notification of a rule to its channels now; exit 1 if one fails.

    Example: stratus alerts test high-error-ratio
    """
    result = client(ctx).alerts.test(
        name, project_of(ctx, project), state="resolved" if resolved else "firing"
    )
    if output != Format.table:
        show(result, output)
    else:
        for item in result.results:
            mark = "[green]✓[/]" if item.ok else "[red]✗[/]"
            console.print(f"{mark} {escape(item.channel)}: {escape(item.detail)}")
    if not all(item.ok for item in result.results):
        raise typer.Exit(1)


# --- channels --------------------------------------------------------------------------------


@channels_app.command("apply")
def channels_apply(
    ctx: typer.Context,
    file: FileOption,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Create or replace the notification channels of a YAML file (secrets are stored
    encrypted and shown as ****).

    Example: stratus alerts channels apply -f oncall.yaml
    """
    channels = client(ctx).alerts.channels.apply_file(file, project_of(ctx, project))
    show(channels, output, CHANNEL_COLUMNS)


@channels_app.command("list")
def channels_list(
    ctx: typer.Context,
    project: ProjectOption = None,
    all_projects: AllProjectsOption = False,
    output: OutputOption = Format.table,
) -> None:
    """List notification channels and the rules that use them."""
    found = client(ctx).alerts.channels.list(
        in_scope(ctx, project, all_projects), all_projects=all_projects
    )
    show(found, output, with_project(CHANNEL_COLUMNS, all_projects))


@channels_app.command("delete")
def channels_delete(ctx: typer.Context, name: str, project: ProjectOption = None) -> None:
    """Delete a notification channel (not while a rule uses it)."""
    client(ctx).alerts.channels.delete(name, project_of(ctx, project))
    console.print(f"deleted notification channel {name}", markup=False)
