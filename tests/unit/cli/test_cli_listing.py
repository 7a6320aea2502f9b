"""The CLI's list helpers: `--since` times (relative or ISO, anything else a usage error
naming the forms) and cutting a list fetched one past its limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import typer

from stratus.cli.listing import cut, parse_time

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        (" 2d ", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_relative_times_count_back_from_now(text: str, ago: timedelta) -> None:
    assert parse_time(text, now=NOW) == NOW - ago


@pytest.mark.parametrize(
    ("text", "when"),
    [
        ("2026-11-21T09:00:00Z", datetime(2026, 11, 21, 9, tzinfo=UTC)),
        ("2026-11-21T09:00:00", datetime(2026, 11, 21, 9, tzinfo=UTC)),  # no zone: UTC
        ("2026-11-21", datetime(2026, 11, 21, tzinfo=UTC)),
        (
            "2026-11-21T10:00:00+01:00",
            datetime(2026, 11, 21, 10, tzinfo=timezone(timedelta(hours=1))),
        ),
    ],
)
def test_iso_times_are_taken_as_they_are(text: str, when: datetime) -> None:
    assert parse_time(text, now=NOW) == when


@pytest.mark.parametrize("text", ["yesterday", "1y", "h", "-1h", "", "10 parsecs", "1e999999d"])
def test_anything_else_is_a_usage_error_naming_the_forms(text: str) -> None:
    with pytest.raises(typer.BadParameter) as caught:
        parse_time(text, "--since", now=NOW)
    message = str(caught.value)
    assert message.startswith("--since: ")
    assert "30s, 15m, 1h, 2d, 1w" in message or "too far back" in message


def test_cut_keeps_the_limit_and_says_whether_there_were_more() -> None:
    assert cut([1, 2, 3], 2) == ([1, 2], True)
    assert cut([1, 2], 2) == ([1, 2], False)
    assert cut([1, 2, 3], None) == ([1, 2, 3], False)
