"""The background loop every controller runs on, driven by `wake` with an interval that never
elapses in a test: a pass runs when woken, stop is one path from any state, a failing pass is
logged once in full and then as one line, and recovery is said. Waits have deadlines; nothing
here asserts how long anything took."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from stratus.core.errors import StoreUnavailable
from stratus.core.loop import BackgroundLoop
from stratus.testing import wait_for

NEVER = 3600.0  # an interval no test waits out: passes happen when woken
THREAD = "stratus-test-loop"
LOGGER = "stratus.test.loop"

MakeLoop = Callable[..., BackgroundLoop]


class Script:
    """A tick that plays its outcomes in order (an exception is raised, a function is called,
    anything else is returned as the wait), then returns None; it counts its passes."""

    def __init__(self, *outcomes: BaseException | Callable[[], None] | timedelta | None) -> None:
        self.outcomes = list(outcomes)
        self.passes = 0
        self.during: Callable[[], object] = lambda: None  # run inside each pass

    def __call__(self) -> timedelta | None:
        self.passes += 1
        self.during()
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, BaseException):
            raise outcome
        if callable(outcome):
            outcome()
            return None
        return outcome


@pytest.fixture
def make_loop() -> Iterator[MakeLoop]:
    made: list[BackgroundLoop] = []

    def make(tick: Script, **options: Any) -> BackgroundLoop:
        loop = BackgroundLoop(
            "testing", tick, NEVER, thread_name=THREAD, log=logging.getLogger(LOGGER), **options
        )
        made.append(loop)
        return loop

    yield make
    for loop in made:
        loop.stop(timeout=10)


def until(what: str, check: Callable[[], object]) -> None:
    wait_for(what, check, timeout=10, interval=0.01)


def threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == THREAD and t.is_alive())


def passes(tick: Script, n: int) -> Callable[[], bool]:
    return lambda: tick.passes >= n


def test_a_pass_runs_at_start_and_at_once_when_woken(make_loop: MakeLoop) -> None:
    tick = Script()
    loop = make_loop(tick)
    loop.start()
    until("the first pass", passes(tick, 1))
    for n in (2, 3):
        loop.wake()
        until(f"pass {n}, woken", passes(tick, n))


def test_a_wake_during_a_pass_runs_another_after_it(make_loop: MakeLoop) -> None:
    tick = Script()
    loop = make_loop(tick)
    tick.during = lambda: loop.wake() if tick.passes == 1 else None
    loop.start()
    until("the pass the first one asked for", passes(tick, 2))


def test_an_initial_delay_holds_the_first_pass_until_woken(make_loop: MakeLoop) -> None:
    tick = Script()
    loop = make_loop(tick, initial_delay_seconds=NEVER)
    loop.start()
    assert tick.passes == 0
    loop.wake()
    until("the first pass, woken", passes(tick, 1))


@pytest.mark.parametrize(
    "wait", [timedelta(0), timedelta(seconds=-5)], ids=["zero", "negative-is-zero"]
)
def test_a_pass_may_ask_for_a_shorter_wait(make_loop: MakeLoop, wait: timedelta) -> None:
    tick = Script(wait, wait, wait)
    make_loop(tick).start()
    until("three passes after the first, none woken", passes(tick, 4))


@pytest.mark.parametrize("started", [False, True], ids=["before-start", "running"])
def test_stop_joins_and_can_be_called_again(make_loop: MakeLoop, started: bool) -> None:
    tick = Script()
    loop = make_loop(tick)
    if started:
        loop.start()
        until("the first pass", passes(tick, 1))
    loop.stop(timeout=10)
    assert loop.stopping and threads() == 0
    loop.stop(timeout=10)
    assert loop.stopping and threads() == 0


def test_stop_during_a_pass_interrupts_it_and_waits_for_it(make_loop: MakeLoop) -> None:
    entered, released = threading.Event(), threading.Event()
    seen: list[bool] = []
    tick = Script()
    loop = make_loop(tick, interrupt=released.set)

    def long_pass() -> None:
        entered.set()
        released.wait(30)
        seen.append(loop.stopping)

    tick.during = long_pass
    loop.start()
    until("the pass to begin", entered.is_set)
    loop.stop(timeout=30)
    assert seen == [True]  # the pass saw it should end early
    assert threads() == 0 and tick.passes == 1


def test_start_is_idempotent_and_a_stopped_loop_starts_again(make_loop: MakeLoop) -> None:
    tick = Script()
    loop = make_loop(tick)
    loop.start()
    loop.start()
    until("the first pass", passes(tick, 1))
    assert threads() == 1
    loop.stop(timeout=10)
    loop.start()
    assert not loop.stopping
    until("a pass after starting again", passes(tick, 2))
    assert threads() == 1


def test_what_is_not_an_exception_ends_the_loop(
    make_loop: MakeLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    escaped: list[type[BaseException]] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_type))
    tick = Script(SystemExit(3))
    loop = make_loop(tick)
    loop.start()
    until("the thread to end", lambda: escaped and threads() == 0)
    assert escaped == [SystemExit]  # not swallowed
    loop.start()  # not left half-running: it starts again
    until("a pass after starting again", passes(tick, 2))


def boom() -> RuntimeError:
    return RuntimeError("boom\nSQL: a second line the one-liner leaves out")


def boom_elsewhere() -> None:
    raise boom()  # the same error, raised at another line


def outage() -> StoreUnavailable:
    return StoreUnavailable("the object store at http://127.0.0.1:9 refuses connections")


# (outcomes of the passes, then what is logged: level, with a traceback, a piece of the line)
LOGGED = {
    "the same failure again is one line": (
        [boom(), boom(), boom(), None, None],
        [
            (logging.ERROR, True, "testing failed; will retry"),
            (logging.WARNING, False, "failed again (2 passes in a row): RuntimeError: boom"),
            (logging.WARNING, False, "testing failed again (3 passes in a row)"),
            (logging.WARNING, False, "testing works again, after 3 failed pass(es)"),
        ],
    ),
    "a different failure is logged in full": (
        [boom(), KeyError("k"), KeyError("k"), None],
        [
            (logging.ERROR, True, "testing failed; will retry"),
            (logging.ERROR, True, "testing failed; will retry"),
            (logging.WARNING, False, "testing failed again (3 passes in a row): KeyError: 'k'"),
            (logging.WARNING, False, "testing works again, after 3 failed pass(es)"),
        ],
    ),
    "the same error raised elsewhere is logged in full": (
        [boom(), boom_elsewhere, boom_elsewhere, None],
        [
            (logging.ERROR, True, "testing failed; will retry"),
            (logging.ERROR, True, "testing failed; will retry"),
            (logging.WARNING, False, "failed again (3 passes in a row): RuntimeError: boom"),
            (logging.WARNING, False, "testing works again, after 3 failed pass(es)"),
        ],
    ),
    "a failure after recovering is logged in full again": (
        [boom(), None, boom(), None],
        [
            (logging.ERROR, True, "testing failed; will retry"),
            (logging.WARNING, False, "testing works again, after 1 failed pass(es)"),
            (logging.ERROR, True, "testing failed; will retry"),
            (logging.WARNING, False, "testing works again, after 1 failed pass(es)"),
        ],
    ),
    "an outage is one line when it starts and one when it ends": (
        [outage(), outage(), outage(), None],
        [
            (logging.WARNING, False, "refuses connections; will retry quietly until it works"),
            (logging.WARNING, False, "testing works again, after 3 failed pass(es)"),
        ],
    ),
}


@pytest.mark.parametrize("case", LOGGED)
def test_a_failing_pass_is_logged_and_the_loop_goes_on(
    make_loop: MakeLoop, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    outcomes, expected = LOGGED[case]
    caplog.set_level(logging.WARNING, logger=LOGGER)
    tick = Script(*outcomes)
    loop = make_loop(tick, quiet=(StoreUnavailable,))
    loop.start()
    for n in range(1, len(outcomes) + 1):
        if n > 1:
            loop.wake()
        until(f"pass {n}", passes(tick, n))

    def records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == LOGGER]

    until("every line", lambda: len(records()) >= len(expected))
    loop.stop(timeout=10)
    got = [(r.levelno, r.exc_info is not None, r.getMessage()) for r in records()]
    assert len(got) == len(expected), got
    for (level, traceback, line), (want_level, want_traceback, piece) in zip(
        got, expected, strict=True
    ):
        assert (level, traceback) == (want_level, want_traceback), line
        assert piece in line and "\n" not in line, line
