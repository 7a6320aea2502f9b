"""`stratus quotas`: a project's limits on replicas, vCPUs, memory, GPUs, jobs and stored bytes
(`show`; `set` by platform admins)."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from stratus.billing.schemas import QuotasRead, ReservationsRead
from stratus.cli.context import ProjectOption, client
from stratus.cli.output import Format, OutputOption, human_size, show

app = typer.Typer(
    help="Quotas: what a project may hold (replicas, vCPUs, memory, GPUs, jobs, bytes).",
    no_args_is_help=True,
)

NAMES = ("replicas", "vcpus", "memory_gib", "gpus", "jobs", "stored_bytes")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str) -> int:
    """`500MiB`, `10GiB`, `2T`, `1048576`: a number of bytes (binary units)."""
    found = _SIZE.match(text)
    if found is None:
        raise typer.BadParameter(f"{text!r}: give bytes, or a size such as 500MiB or 10GiB")
    unit = (found.group(2) or "").lower()[:1]
    return int(float(found.group(1)) * _UNITS[unit])


def _figure(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if name == "stored_bytes":
        return human_size(int(value))
    return f"{value:g}"


def _show(found: QuotasRead, output: Format) -> None:
    if output is not Format.table:
        show(found, output)
        return
    limits = found.limits.model_dump()
    rows = [
        {"quota": name, "limit": limits[name], "used": found.used.get(name, 0.0)} for name in NAMES
    ]
    columns = [
        ("QUOTA", lambda r: r["quota"]),
        ("LIMIT", lambda r: _figure(r["quota"], r["limit"]) if r["limit"] is not None else "none"),
        ("IN USE", lambda r: _figure(r["quota"], r["used"])),
    ]
    show(rows, Format.table, columns)


@app.command("show")
def show_quotas(
    ctx: typer.Context, project: ProjectOption = None, output: OutputOption = Format.table
) -> None:
    """A project's quotas and what it holds of each (replicas and their sizes count an
    autoscaled variant at its maximum; jobs count while pending, queued or running).

    Example: stratus quotas show -p fraud
    """
    _show(client(ctx).quotas.get(project), output)


@app.command("set")
def set_quotas(
    ctx: typer.Context,
    replicas: Annotated[int | None, typer.Option(min=0, help="replicas of all endpoints")] = None,
    vcpus: Annotated[float | None, typer.Option(min=0, help="vCPUs of replicas and jobs")] = None,
    memory_gib: Annotated[
        float | None, typer.Option("--memory-gib", min=0, help="GiB of replicas and jobs")
    ] = None,
    gpus: Annotated[int | None, typer.Option(min=0, help="GPUs of replicas and jobs")] = None,
    jobs: Annotated[int | None, typer.Option(min=0, help="jobs pending, queued or running")] = None,
    stored: Annotated[str | None, typer.Option("--stored", help="bytes kept, e.g. 500GiB")] = None,
    unset: Annotated[
        list[str] | None,
        typer.Option("--unset", help=f"remove a limit: one of {', '.join(NAMES)} (repeatable)"),
    ] = None,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Set a project's quotas (platform admins); limits not given stay as they are. A request
    that would go over one is refused (403) naming the quota, its limit and the use.

    Example: stratus quotas set -p fraud --replicas 8 --vcpus 16 --memory-gib 64 --stored 500GiB
    """
    for name in unset or []:
        if name not in NAMES:
            raise typer.BadParameter(f"--unset {name}: quotas are {', '.join(NAMES)}")
    given = {
        "replicas": replicas,
        "vcpus": vcpus,
        "memory_gib": memory_gib,
        "gpus": gpus,
        "jobs": jobs,
        "stored_bytes": parse_bytes(stored) if stored is not None else None,
    }
    if all(v is None for v in given.values()) and not unset:
        raise typer.BadParameter("give at least one limit (--replicas, --vcpus, …) or --unset")
    c = client(ctx)
    limits = c.quotas.get(project).limits.model_dump()
    limits.update({k: v for k, v in given.items() if v is not None})
    for name in unset or []:
        limits[name] = None
    _show(c.quotas.set(project, **limits), output)


reservations_app = typer.Typer(
    help="Reserved capacity: instances a project has committed to, priced at the reserved rate.",
    no_args_is_help=True,
)


def _show_reservations(found: ReservationsRead, output: Format) -> None:
    if output is not Format.table:
        show(found, output)
        return
    rows = [{"type": k, "count": v} for k, v in sorted(found.instance_types.items())]
    show(
        rows,
        Format.table,
        [("INSTANCE TYPE", lambda r: r["type"]), ("RESERVED", lambda r: r["count"])],
    )


@reservations_app.command("show")
def show_reservations(
    ctx: typer.Context, project: ProjectOption = None, output: OutputOption = Format.table
) -> None:
    """The capacity a project has reserved.

    Example: stratus reservations show -p fraud
    """
    _show_reservations(client(ctx).reservations.get(project), output)


@reservations_app.command("set")
def set_reservations(
    ctx: typer.Context,
    reserved: Annotated[
        list[str], typer.Argument(help="TYPE=COUNT, e.g. cpu.small=2 (0 removes a type)")
    ],
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Set what a project has reserved (platform admins), replacing what it had: each hour,
    the first COUNT x 3600 instance-seconds of a type its replicas and on-demand jobs use are
    priced at the reserved rate.

    Example: stratus reservations set -p fraud cpu.small=2 gpu.small=1
    """
    types: dict[str, int] = {}
    for item in reserved:
        name, _, count = item.partition("=")
        if not name or not count.isdigit():
            raise typer.BadParameter(f"{item!r}: give TYPE=COUNT, e.g. cpu.small=2")
        types[name] = int(count)
    _show_reservations(client(ctx).reservations.set(types, project), output)
