"""Finding things from the command line: times given as `1h` as well as ISO (`--since`), a
note on stderr when a list is cut at its `--limit` (and how to see the rest), and lists across
every project (`-A/--all-projects`, for platform admins) with a PROJECT column."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import typer

from stratus.cli.context import project_of
from stratus.cli.output import Column, err

T = TypeVar("T")

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
TIME_FORMS = "a time ago (30s, 15m, 1h, 2d, 1w) or an ISO time (2026-11-21T09:00:00Z)"


def parse_time(text: str, option: str = "--since", *, now: datetime | None = None) -> datetime:
    """`15m`, `1h`, `2d`, `1w` (that long before now) or an ISO 8601 time (UTC when it names
    no zone); anything else is a usage error naming the accepted forms."""
    match = _RELATIVE.match(text)
    if match:
        seconds = float(match.group(1)) * _SECONDS[match.group(2)]
        try:
            return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
        except OverflowError:
            raise typer.BadParameter(f"{option}: {text!r} reaches too far back") from None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{option}: {text!r} is not {TIME_FORMS}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_duration(text: str, what: str = "--window") -> int:
    """Seconds in `90s`, `15m`, `1h`, `7d`, `2w` (a bare number is seconds)."""
    match = _DURATION.match(text)
    if not match:
        raise typer.BadParameter(f"{what}: {text!r} is not a duration like 90s, 15m, 1h or 7d")
    return int(float(match.group(1)) * _SECONDS[match.group(2) or "s"])


def parse_optional_time(text: str | None, option: str) -> datetime | None:
    return None if text is None else parse_time(text, option)


def iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def cut(items: Sequence[T], limit: int | None) -> tuple[list[T], bool]:
    """The first `limit` of items fetched as `limit + 1`, and whether there were more."""
    if limit is None or len(items) <= limit:
        return list(items), False
    return list(items[:limit]), True


def say_cut(shown: int, noun: str, how: str = "use --limit N to see more, or --all") -> None:
    """Tell (on stderr, so JSON on stdout stays whole) that a list shows only its first rows."""
    err.print(f"showing the first {shown} {noun}; there are more: {how}", highlight=False)


AllProjectsOption = Annotated[
    bool,
    typer.Option(
        "--all-projects",
        "-A",
        help="list across every project (platform admins), with a PROJECT column",
    ),
]


def in_scope(ctx: typer.Context, project: str | None, all_projects: bool) -> str | None:
    """The project a list command lists: None with -A (every project; a --project or
    STRATUS_PROJECT is then left aside), else --project or the login's."""
    return None if all_projects else project_of(ctx, project)


def with_project(columns: Sequence[Column], all_projects: bool) -> list[Column]:
    """The columns, led by PROJECT when the list spans projects."""
    if not all_projects:
        return list(columns)
    project: Column = ("PROJECT", _project_of)
    return [project, *columns]


def _project_of(item: Any) -> Any:
    metadata = getattr(item, "metadata", None)
    return getattr(metadata, "project", None) or getattr(item, "project", None)
