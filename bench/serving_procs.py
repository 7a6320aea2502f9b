"""The serving benchmark's processes, by PID: is it still the process we saw, stop a set of
them, their PSS, RSS and CPU time from /proc, a free loopback port, and `Cleanup`, which
stops whatever a run started in reverse order, also on Ctrl-C or SIGTERM (`on_sigterm`,
`no_interrupts`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time): tells a reused pid from the process we saw."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        rest = raw[raw.rindex(")") + 2 :].split()
        return None if rest[0] in ("Z", "X") else int(rest[19])
    except (OSError, ValueError, IndexError):
        return None


def parent_pid(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        return int(raw[raw.rindex(")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int, ticks: int | None) -> bool:
    now = start_ticks(pid)
    return now is not None and (ticks is None or now == ticks)


def kill_pids(pids: dict[int, int | None], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace`, each pid only while it is the process we saw."""
    live = {p: t for p, t in pids.items() if p != os.getpid() and alive(p, t)}
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in list(live):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while live and time.monotonic() < deadline:
            live = {p: t for p, t in live.items() if alive(p, t)}
            time.sleep(0.05)
        if not live:
            return
    print(f"  WARNING: could not stop pids {sorted(live)}", flush=True)


def smaps_mb(pids: set[int] | list[int], field: str) -> float:
    """The sum of one `smaps_rollup` field ("Pss", "Rss") over the processes, in MB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total += int(line.split()[1])
    return total / 1024


def pss_mb(pids: set[int] | list[int]) -> float:
    return smaps_mb(pids, "Pss")


def rss_mb(pids: set[int] | list[int]) -> float:
    return smaps_mb(pids, "Rss")


def cpu_seconds(pids: set[int]) -> float:
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = Path(f"/proc/{pid}/stat").read_text()
            rest = raw[raw.rindex(")") + 2 :].split()
            ticks += int(rest[11]) + int(rest[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_idle(pids: Callable[[], set[int]], limit: float, busy: float = 0.1) -> float:
    """Seconds until the processes use less than `busy` of a core over 0.5 s (or `limit`)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        before, at = cpu_seconds(pids()), time.monotonic()
        time.sleep(0.5)
        if cpu_seconds(pids()) - before < busy * (time.monotonic() - at):
            break
    return time.monotonic() - t0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cleanup:
    """What this run started, stopped in reverse order at the end (by PID, never by name)."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, step: Callable[[], None]) -> Callable[[], None]:
        entry = (what, step)
        self._steps.append(entry)

        def run_now() -> None:
            if entry in self._steps:
                step()  # removed only once done: an interrupted step is retried by run()
                self._steps.remove(entry)

        return run_now

    def run(self) -> None:
        while self._steps:
            what, step = self._steps.pop()
            try:
                step()
            except Exception as exc:  # keep stopping the others
                print(f"  WARNING: cleanup of {what} failed: {exc!r}", flush=True)


def on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def no_interrupts() -> Iterator[None]:
    """Cleanup is bounded; a second Ctrl-C must not leave servers behind."""
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
