"""What the local backend reads of processes and writes for them: /proc stat fields (to tell a
live process from a reused pid), process-group members, atomic record files and log tails.

Shared by replicas (`local.py`) and jobs (`local_jobs.py`); Linux only.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

LOG_TAIL_LINES = 20


def proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state letter, parent pid, process group, start time in clock ticks) of a process,
    or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces and ")"
    return rest[0], int(rest[1]), int(rest[2]), int(rest[19])  # fields 3, 4, 5 and 22


def process_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot."""
    stat = proc_stat(pid)
    return stat[3] if stat else None


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group `pgid`."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = proc_stat(int(entry.name))
        if stat is not None and stat[2] == pgid and stat[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def write_atomic(path: Path, data: bytes) -> None:
    """Write `path` (readable by this user only: a replica's spec holds its secret and the
    keys of its artifact) under a temporary name, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def tail_lines(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    window = max(16384, lines * 512)
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - window))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(tail_lines(path, lines))


def exit_after(body: Callable[[], int]) -> NoReturn:
    """End a forked child with what `body` returns (1 if it raised: its traceback goes to the
    child's stderr), its output flushed, without running the parent's exit handlers."""
    code = 1
    try:
        code = body()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.flush()
        os._exit(code)
