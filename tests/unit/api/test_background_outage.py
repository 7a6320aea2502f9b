"""A background loop logs an unreachable object store once, not a traceback every pass."""

from __future__ import annotations

import logging

import pytest

from stratus.api.platform import _Outage
from stratus.core.errors import StoreUnavailable


def test_a_store_outage_is_one_line_when_it_starts_and_one_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = _Outage("writing the audit checkpoint")
    caplog.set_level(logging.WARNING, logger="stratus")
    for _ in range(5):
        with outage:
            raise StoreUnavailable("the object store at http://127.0.0.1:9 refuses connections")
    with outage:
        pass
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert "refuses connections" in lines[0] and "will retry" in lines[0]
    assert "works again" in lines[1]
    assert all(record.exc_info is None for record in caplog.records)


def test_any_other_error_is_logged_in_full_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = _Outage("sweeping the object store")
    caplog.set_level(logging.WARNING, logger="stratus")
    with outage:
        raise RuntimeError("a bug")
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[1].args == ("a bug",)


def test_an_interrupt_is_not_swallowed() -> None:
    with pytest.raises(KeyboardInterrupt), _Outage("sweeping"):
        raise KeyboardInterrupt
