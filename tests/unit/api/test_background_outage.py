"""The platform's loops on the object store (the sweeper, the audit checkpoint) log an
unreachable store once, not a traceback every pass; any other error in full. Passes are woken
by the test (the interval never elapses); waits have deadlines."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from stratus.api.platform import store_loop
from stratus.core.errors import StoreUnavailable
from stratus.core.loop import BackgroundLoop
from stratus.testing import wait_for


class Work:
    """Fails with each of `failures` in turn, then works; counts its passes."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.passes = 0

    def __call__(self) -> None:
        self.passes += 1
        if self.failures:
            raise self.failures.pop(0)


@pytest.fixture
def loops() -> Iterator[list[BackgroundLoop]]:
    started: list[BackgroundLoop] = []
    yield started
    for loop in started:
        loop.stop(timeout=10)


THREAD = "stratus-test-store-loop"


def run(loops: list[BackgroundLoop], name: str, work: Work, passes: int) -> None:
    loop = store_loop(name, work, 3600, thread_name=THREAD)
    loops.append(loop)
    loop.start()
    assert work.passes == 0  # the first pass comes after one interval, or when woken
    for n in range(1, passes + 1):
        loop.wake()
        wait_for(f"pass {n}", lambda n=n: work.passes >= n, timeout=10, interval=0.01)
    loop.stop(timeout=10)  # the last pass has logged what it had to


def logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the loop logged (not what threads of earlier tests may still be saying)."""
    return [record for record in caplog.records if record.threadName == THREAD]


def test_a_store_outage_is_one_line_when_it_starts_and_one_when_it_ends(
    caplog: pytest.LogCaptureFixture, loops: list[BackgroundLoop]
) -> None:
    caplog.set_level(logging.WARNING, logger="stratus")
    refused = "the object store at http://127.0.0.1:9 refuses connections"
    work = Work(*(StoreUnavailable(refused) for _ in range(5)))
    run(loops, "writing the audit checkpoint", work, passes=6)
    lines = [record.getMessage() for record in logged(caplog)]
    assert len(lines) == 2, lines
    assert "refuses connections" in lines[0] and "will retry" in lines[0]
    assert "works again" in lines[1]
    assert all(record.exc_info is None for record in logged(caplog))


def test_any_other_error_is_logged_in_full_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture, loops: list[BackgroundLoop]
) -> None:
    caplog.set_level(logging.ERROR, logger="stratus")
    work = Work(RuntimeError("a bug"))
    run(loops, "sweeping the object store", work, passes=2)
    (record,) = logged(caplog)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[1] is not None
    assert record.exc_info[1].args == ("a bug",)
