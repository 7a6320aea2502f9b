"""One background loop for every controller that works in passes: a daemon thread that runs a
pass (`tick`) every `interval_seconds`, at once when woken, and stops the same way whatever it
was doing. The job scheduler, the pipeline runner, the monitor controller, the alert evaluator
and its notification dispatcher, the capture writer, the store sweeper and the audit checkpoint
each own one (the endpoint controller is an asyncio task instead, on the gateway's event loop).

A failed pass is logged under the loop's name and the loop goes on: a new failure in full, the
same failure again as one line, and one line when a pass works again. An error of a `quiet`
kind (an unreachable object store) is an outage rather than a bug: one line when it starts,
none while it lasts, one when it ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

# One pass. It may ask for a different wait before the next one; None keeps the interval. (A
# timedelta and not a float, so that a pass returning a count cannot be taken for seconds.)
Tick = Callable[[], timedelta | None]

_log = logging.getLogger(__name__)


class BackgroundLoop:
    def __init__(
        self,
        name: str,
        tick: Tick,
        interval_seconds: float,
        *,
        thread_name: str,
        initial_delay_seconds: float = 0.0,
        quiet: tuple[type[Exception], ...] = (),
        interrupt: Callable[[], object] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        """`name` says what a pass does, for the log ("scheduling jobs failed; will retry").
        `interrupt` is called by `stop` once the loop is told to stop, before it waits for the
        pass under way: it cuts short what that pass may be waiting on."""
        self.name = name
        self.interval = interval_seconds
        self._tick = tick
        self._thread_name = thread_name
        self._initial_delay = initial_delay_seconds
        self._quiet = quiet
        self._interrupt = interrupt
        self._log = log or _log
        self._lock = threading.Lock()  # guards _thread against start and stop
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: tuple[object, ...] | None = None  # the failure under way, if any
        self._failures = 0  # passes failed in a row

    @property
    def stopping(self) -> bool:
        """Whether `stop` was called (and `start` not since): a long pass checks it between
        items of work, to end early."""
        return self._stop.is_set()

    def start(self) -> None:
        """Run the first pass after the initial delay, then one every interval. Starting a loop
        that runs does nothing; a stopped loop starts again."""
        with self._lock:
            self._stop.clear()
            if self._thread is not None:  # running (or finishing a pass after a late stop)
                return
            self._wake.clear()
            self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Run the next pass at once (after the one under way, if any); from any thread."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Tell the loop to stop and wait up to `timeout` seconds for the pass under way.
        The same whether the loop runs, never started, or was stopped already."""
        with self._lock:
            self._stop.set()
            thread = self._thread
        self._wake.set()
        if self._interrupt is not None:
            self._interrupt()
        if thread is None or thread is threading.current_thread():
            return
        thread.join(timeout)
        if thread.is_alive():
            self._log.warning(
                "%s did not stop within %g s; it stops when its pass ends", self.name, timeout
            )

    def _run(self) -> None:
        wait = self._initial_delay
        try:
            while True:
                self._wake.wait(wait)
                self._wake.clear()  # a wake from before this point is served by the next pass
                with self._lock:
                    if self._stop.is_set():
                        self._thread = None
                        return
                wait = self._pass()
        finally:  # also when a pass raises what is not an Exception (SystemExit): not swallowed
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _pass(self) -> float:
        """One tick with its errors isolated; the seconds to wait before the next."""
        try:
            wait = self._tick()
        except Exception as exc:
            self._failed(exc)
            return self.interval
        if self._failures:
            self._log.warning("%s works again, after %d failed pass(es)", self.name, self._failures)
            self._failing, self._failures = None, 0
        return self.interval if wait is None else max(0.0, wait.total_seconds())

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        quiet = isinstance(exc, self._quiet)
        # The same failure: for an outage, any error of its kind; otherwise the same type raised
        # at the same line (a message may differ each time, holding a time or a parameter).
        key = (type(exc),) if quiet else (type(exc), *_raised_at(exc))
        if key != self._failing:
            self._failing = key
            if quiet:
                self._log.warning(
                    "%s failed: %s; will retry quietly until it works", self.name, _line(exc)
                )
            else:
                self._log.error("%s failed; will retry", self.name, exc_info=exc)
        elif not quiet:
            self._log.warning(
                "%s failed again (%d passes in a row): %s: %s",
                self.name,
                self._failures,
                type(exc).__name__,
                _line(exc),
            )


def _raised_at(exc: BaseException) -> tuple[str, int]:
    tb = exc.__traceback__
    if tb is None:
        return ("", 0)
    while tb.tb_next is not None:  # the innermost frame: where it was raised
        tb = tb.tb_next
    return (tb.tb_frame.f_code.co_filename, tb.tb_lineno)


def _line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
