"""The root of the `stratus` command: global options, command groups, one-line errors."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from stratus._version import __version__
from stratus.cli.context import Globals
from stratus.cli.lazy_group import lazy_group
from stratus.cli.output import QuietOption, errors, set_quiet
from stratus.core.errors import StratusError

# Every command, as `module:attribute` (a Typer app or a command function), in the order help
# lists them: a module is imported only when its command runs (`lazy_group.py`).
COMMANDS = {
    "up": "stratus.cli.up:up",
    "login": "stratus.cli.login:login",
    "status": "stratus.cli.login:status",
    "profiles": "stratus.cli.profiles:app",
    "db": "stratus.cli.up:db_app",
    "projects": "stratus.cli.projects:app",
    "serviceaccounts": "stratus.cli.projects:sa_app",
    "users": "stratus.cli.users:app",
    "keys": "stratus.cli.keys:app",
    "secrets": "stratus.cli.secrets:app",
    "buckets": "stratus.cli.buckets:app",
    "data": "stratus.cli.data:app",
    "experiments": "stratus.cli.experiments:app",
    "models": "stratus.cli.models:app",
    "deploy": "stratus.cli.deploy:deploy",
    "endpoints": "stratus.cli.endpoints:app",
    "predict": "stratus.cli.predict:predict",
    "functions": "stratus.cli.functions:app",
    "jobs": "stratus.cli.jobs:app",
    "batch-predict": "stratus.cli.batch:batch_predict",
    "pipelines": "stratus.cli.pipelines:app",
    "monitors": "stratus.cli.monitors:app",
    "alerts": "stratus.cli.alerts:app",
    "cost": "stratus.cli.cost:app",
    "prices": "stratus.cli.cost:prices_app",
    "quotas": "stratus.cli.quotas:app",
    "budgets": "stratus.cli.budgets:app",
    "reservations": "stratus.cli.quotas:reservations_app",
    "plan": "stratus.cli.iac:plan",
    "apply": "stratus.cli.iac:apply",
    "destroy": "stratus.cli.iac:destroy",
    "iac": "stratus.cli.iac:app",
    "export": "stratus.cli.export:app",
    "audit": "stratus.cli.audit:app",
    "admin": "stratus.cli.admin:app",
}

app = typer.Typer(
    name="stratus",
    cls=lazy_group(COMMANDS),
    help="Stratus: a self-hosted cloud for the machine-learning lifecycle.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stratus {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(envvar="STRATUS_URL", help="platform URL [http://127.0.0.1:8700]")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="STRATUS_API_KEY", help="API key or token", show_default=False),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            envvar="STRATUS_PROFILE",
            help="the credentials file's profile to use (default: the current one)",
            show_default=False,
        ),
    ] = None,
    ca_file: Annotated[
        str | None,
        typer.Option(
            envvar="STRATUS_CA_FILE",
            help="PEM file of the CA an https platform's certificate is checked against "
            "(default: the profile's, else the system's)",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[bool, typer.Option(help="show tracebacks on errors")] = False,
    quiet: QuietOption = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """Stratus: storage, identity, training, registry, serving and monitoring for ML.

    Example: stratus --url http://127.0.0.1:8700 projects list
    """
    ctx.obj = Globals(url=url, api_key=api_key, debug=debug, profile=profile, ca_file=ca_file)


def _planned_changes(reset: bool = False) -> bool:
    from stratus.cli import iac

    if reset:
        iac.outcome.changes_planned = False
    return iac.outcome.changes_planned


def run(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 on success, 1 on a failed operation, 2 on bad usage.

    Typer handles usage errors (exit 2) and aborts (exit 1) itself; a StratusError or an OS
    error becomes one line on stderr (the traceback only with --debug).
    """
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    set_quiet(False)  # until -q says otherwise (tests run many commands in one process)
    if "--detailed-exitcode" in args:
        _planned_changes(reset=True)  # (tests run many commands in one process)
    try:
        app(args=args, prog_name="stratus")
    except SystemExit as exc:
        if exc.code == 2 and "--detailed-exitcode" in args and not _planned_changes():
            sys.exit(1)  # as Terraform's: 2 means changes only, any error is 1
        raise
    except StratusError as exc:
        if debug:
            raise
        errors.print(f"[red]error:[/] {escape(exc.detail)}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except OSError as exc:
        if debug:
            raise
        errors.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)
