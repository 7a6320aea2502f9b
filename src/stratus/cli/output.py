"""Printing results: `--output table|json|yaml` for every command that prints."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

# yaml and rich.progress are imported where they are used: most commands print neither, and
# every module imported here is paid by every command at start (`stratus --version` too).

console = Console()
if not console.is_terminal:
    console = Console(width=250)  # piped output: do not wrap tables at 80 columns
err = Console(stderr=True)  # notes, progress bars and spinners: silenced by -q
errors = Console(stderr=True)  # errors: never silenced


def set_quiet(quiet: bool = True) -> None:
    """`-q`: print only results (stdout) and errors; no notes, progress bars or spinners."""
    err.quiet = quiet


def _quiet_option(value: bool) -> bool:
    if value:
        set_quiet()
    return value


QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        callback=_quiet_option,
        help="print only results and errors: no progress bars, spinners or notes",
    ),
]


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[
    Format, typer.Option("--output", "-o", help="table, json or yaml", case_sensitive=False)
]

Column = tuple[str, Callable[[Any], Any]]


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(_plain(data), sort_keys=False).rstrip()


def show(data: Any, output: Format, columns: Sequence[Column] | None = None) -> None:
    """Print one item or a list, as a table (with `columns`) or as JSON/YAML."""
    if output == Format.json:
        typer.echo(json.dumps(_plain(data), indent=2))
        return
    if output == Format.yaml:
        typer.echo(_yaml(data))
        return
    items = data if isinstance(data, list) else [data]
    if columns is None:
        for item in items:
            typer.echo(_yaml(item))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header, _ in columns:
        table.add_column(header)
    for item in items:
        table.add_row(*(_cell(getter(item)) for _, getter in columns))
    console.print(table)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def parse_labels(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    labels: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"label {item!r} must look like key=value")
        labels[key] = value
    return labels


@contextmanager
def transfer_progress(
    label: str, total: int | None, quiet: bool
) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar for an upload or download; yields `advance(bytes)`.

    No bar when quiet or when stderr is not a terminal (`advance` then does nothing).
    """
    if quiet or err.quiet or not err.is_terminal:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    with progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


@contextmanager
def count_progress(label: str, total: int | None, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar counting items (rows, say); yields `advance(count)`.

    No bar when quiet or when stderr is not a terminal (`advance` then does nothing).
    """
    if quiet or err.quiet or not err.is_terminal:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    with progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


@contextmanager
def waiting(label: str, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """A Rich spinner on stderr while something slow happens (none when not a terminal);
    yields `update(text)`, which replaces the label (and does nothing without a spinner)."""
    if quiet or err.quiet or not err.is_terminal:
        yield lambda text: None
        return
    with err.status(label) as status:
        yield lambda text: status.update(text)


def rate_text(limit: Any) -> str:
    """A rate limit (`RateLimitSpec`) as a table shows it: `10/s, burst 20`, or `-`."""
    if limit is None:
        return "-"
    return f"{limit.requests_per_second:g}/s, burst {limit.burst}"
