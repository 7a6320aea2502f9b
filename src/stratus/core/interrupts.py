"""Ctrl-C is for the control plane: the worker processes it starts do not take it.

A terminal sends SIGINT to its whole foreground process group, so every helper process that
`stratus up` starts in that group (the capture encoder, the replicas' fork server and what it
forks, model load checks) would get it too and die printing a KeyboardInterrupt traceback,
while the control plane stops them itself on its way out. Processes started inside
`children_ignore_ctrl_c()` begin with SIGINT blocked (a blocked signal stays blocked across
fork and exec), so a Ctrl-C in the moment before their own code runs waits; `ignore_ctrl_c()`
in the child then ignores it for good (which drops a pending one). The standard library's
`multiprocessing.resource_tracker` starts its process the same way.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

_CTRL_C = {signal.SIGINT}


@contextmanager
def children_ignore_ctrl_c() -> Iterator[None]:
    """Block SIGINT in this thread while processes (and threads) are started in the block."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _CTRL_C)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_ctrl_c() -> None:
    """In a worker process's main thread: ignore SIGINT from now on, one already sent too."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _CTRL_C)


def take_ctrl_c_again() -> None:
    """In a process that has left the terminal's process group (its own session): SIGINT is
    no longer a Ctrl-C meant for someone else, so deliver it as usual."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _CTRL_C)
