"""Push-time load checks: a version is loaded once, in a child process under limits, before it
is committed, so a model that cannot load is refused at push rather than found broken at deploy.

The child comes from a `multiprocessing` context the composition root hands in (the local
backend's fork server, whose ML libraries are already imported, or a fresh spawn). It caps its
own memory (RLIMIT_DATA: what it holds when it starts plus the check's budget) and CPU time
(RLIMIT_CPU), says it has started, and loads the folder with the code a replica runs
(`get_flavor(...).load`); the parent also bounds the wall-clock time and kills it past that.
Nothing is ever loaded in the control plane's own process, and the child is told the version's
trust: a flavor refuses an untrusted pickle or user code before it reads a byte of it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from stratus.core.errors import ServiceUnavailable

log = logging.getLogger("stratus.registry.load_checks")

_STARTED = "started"
_KILL_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class LoadLimits:
    """What one load check may use: memory on top of what its process holds when it starts,
    CPU seconds and wall-clock seconds for the load itself, and time for the child to start."""

    memory_bytes: int
    seconds: float
    start_seconds: float = 60.0


@dataclass(frozen=True)
class LoadOutcome:
    """How a load check ended. `detail` is one line for the user: no traceback, no paths."""

    loaded: bool
    detail: str = ""
    needs_trust: bool = False  # the flavor refused to load code from an untrusted version


class LoadChecker:
    """Loads model folders in child processes under `limits`; one call, one child."""

    def __init__(
        self,
        limits: LoadLimits,
        context: Callable[[], Any] = lambda: multiprocessing.get_context("spawn"),
    ) -> None:
        self.limits = limits
        self._context = context

    def check(
        self, path: Path, flavor: str, *, trusted: bool, signature: dict[str, Any] | None
    ) -> LoadOutcome:
        """Load the folder `path` with `flavor` in a child process and say how it went.

        Raises:
            ServiceUnavailable: the child could not be started (the platform's fault, not the
                model's).
        """
        context = self._context()
        receive, send = context.Pipe(duplex=False)
        limits = self.limits
        process = context.Process(
            target=check_in_child,
            args=(send, str(path), flavor, trusted, signature, limits.memory_bytes, limits.seconds),
            name="stratus-load-check",
        )
        try:
            process.start()
        except OSError as exc:
            receive.close()
            send.close()
            raise ServiceUnavailable(f"cannot start a model load check: {exc}") from exc
        send.close()
        try:
            started = _receive(receive, limits.start_seconds)
            if started is _TIMEOUT:
                raise ServiceUnavailable(
                    f"the model load check did not start within {limits.start_seconds:g} s; "
                    "try the commit again"
                )
            if started is None:
                return LoadOutcome(False, _death(process, "before loading"))
            result = _receive(receive, limits.seconds)
            if result is _TIMEOUT:
                return LoadOutcome(
                    False,
                    f"loading took longer than {limits.seconds:g} s, the most a load check "
                    "allows (setting registry.load_check_seconds)",
                )
            if result is None:
                return LoadOutcome(False, _death(process, "while loading"))
            assert isinstance(result, dict)
            if result.get("trace"):
                log.info("model load check of %s failed:\n%s", path.name, result["trace"].rstrip())
            if result["kind"] == "memory":
                return LoadOutcome(False, _memory_detail(limits.memory_bytes))
            return LoadOutcome(
                result["kind"] == "loaded",
                str(result.get("detail", "")),
                needs_trust=result["kind"] == "trust",
            )
        finally:
            receive.close()
            if process.is_alive():
                process.kill()
            process.join(_KILL_WAIT_SECONDS)
            if process.exitcode is not None:
                process.close()  # its sentinel's file descriptor, now rather than at GC


class _Timeout:
    pass


_TIMEOUT = _Timeout()


def _receive(connection: Connection, seconds: float) -> object:
    """The child's next message; None once it is gone, `_TIMEOUT` when none came in time."""
    try:
        if not connection.poll(seconds):
            return _TIMEOUT
        return connection.recv()
    except (EOFError, OSError):
        return None


def _memory_detail(memory_bytes: int) -> str:
    return (
        f"loading needs more memory than the {memory_bytes / 2**20:g} MiB a load check allows "
        "(setting registry.load_check_memory_mib)"
    )


def _death(process: Any, when: str) -> str:
    """Why a child that stopped talking is gone, in the user's terms."""
    process.join(_KILL_WAIT_SECONDS)
    code = process.exitcode
    if code == -signal.SIGXCPU:  # RLIMIT_CPU's soft limit
        return (
            "loading used more CPU time than a load check allows "
            "(setting registry.load_check_seconds)"
        )
    if code == -signal.SIGKILL:  # RLIMIT_CPU's hard limit, or the kernel's OOM killer
        return f"the load check was killed {when} (out of CPU time or memory)"
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"the load check died of {signal.Signals(-code).name} {when}"
    return f"the load check exited {when} (exit code {code})"


# --- the child ---------------------------------------------------------------------------------


def _data_in_use() -> int:
    """VmData of this process (what RLIMIT_DATA counts), in bytes; 0 where /proc has none."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def _limit_self(memory_bytes: int, seconds: float) -> None:
    import resource

    def cap(which: int, soft: int, hard: int) -> None:
        _, current = resource.getrlimit(which)
        if current != resource.RLIM_INFINITY:
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(which, (soft, hard))

    memory = _data_in_use() + memory_bytes
    cap(resource.RLIMIT_DATA, memory, memory)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(usage.ru_utime + usage.ru_stime + seconds)
    cap(resource.RLIMIT_CPU, cpu, cpu + 2)  # SIGXCPU at the soft limit, SIGKILL at the hard


def check_in_child(
    connection: Connection,
    path: str,
    flavor: str,
    trusted: bool,
    signature: dict[str, Any] | None,
    memory_bytes: int,
    seconds: float,
) -> None:
    """The child's body: limit itself, load, send how it went, exit without cleanup."""
    result: dict[str, Any]
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when it stops
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # what a library prints while loading is not the server's log
        os.dup2(devnull, 2)
        _limit_self(memory_bytes, seconds)
        connection.send(_STARTED)
        result = _load(Path(path), flavor, trusted, signature)
    except MemoryError:
        result = {"kind": "memory"}
    except BaseException as exc:  # anything at all is a failed check
        from stratus.registry.flavors.base import describe

        result = {"kind": "error", "detail": f"the load check failed: {describe(exc)}"}
    with contextlib.suppress(BaseException):
        connection.send(result)
        connection.close()
    os._exit(0)  # no atexit handlers, no waiting on threads the model's code may have started


def _load(
    path: Path, flavor: str, trusted: bool, signature: dict[str, Any] | None
) -> dict[str, Any]:
    from stratus.core.errors import PermissionDenied, StratusError
    from stratus.registry.flavors import ModelLoadError, get_flavor
    from stratus.registry.signatures import Signature

    try:
        parsed = Signature.model_validate(signature) if signature else None
        get_flavor(flavor).load(path, trusted=trusted, signature=parsed)
    except PermissionDenied as exc:
        return {"kind": "trust", "detail": exc.detail}
    except ModelLoadError as exc:
        if isinstance(exc.__cause__, MemoryError):
            return {"kind": "memory", "trace": exc.trace}
        return {"kind": "error", "detail": exc.detail, "trace": exc.trace}
    except StratusError as exc:
        return {"kind": "error", "detail": exc.detail}
    return {"kind": "loaded"}
