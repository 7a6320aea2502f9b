"""Size-capped log files for replica processes: what a replica prints goes through a pipe to a
small writer process of its own, which appends to `<id>.log` and, past `max_bytes`, moves it to
`<id>.log.1` (and `.1` to `.2`, …, keeping `backups` of them), as logging's
RotatingFileHandler does. The writer is forked by the replica before it loads anything, so it
outlives a crash of the replica, drains the pipe and exits at its end of file.

`remove_logs` deletes a log with its backups, when its replica goes. Run as a program, this
module starts a command (the replica, when it is spawned rather than forked) with its output
so redirected: `python -m stratus.compute.rotating_logs LOG MAX_BYTES BACKUPS COMMAND…`.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3
_CHUNK = 65536


def backups_of(path: Path, backups: int) -> list[Path]:
    return [path.with_name(f"{path.name}.{n}") for n in range(1, backups + 1)]


def rotate(path: Path, backups: int) -> None:
    """`path` becomes `path.1`, `path.1` becomes `path.2`…; the oldest is dropped."""
    if backups < 1:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    olds = backups_of(path, backups)
    for older, newer in zip(reversed(olds[1:]), reversed(olds[:-1]), strict=True):
        with contextlib.suppress(FileNotFoundError):
            os.replace(newer, older)
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, olds[0])


class RotatingWriter:
    """Appends bytes to a file, rotating it rather than going past `max_bytes`: what does not
    fit is cut at its last line break that does (mid-line only when no whole line fits)."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            room = self.max_bytes - self._size
            if len(view) <= room:
                part = len(view)
            else:
                cut = bytes(view[:room]).rfind(b"\n") + 1 if room > 0 else 0
                part = cut or (room if self._size == 0 else 0)
            if part == 0:
                self._rotate()
                continue
            self._write_all(view[:part])
            view = view[part:]

    def _write_all(self, view: memoryview) -> None:
        while view:
            written = os.write(self._fd, view)
            self._size += written
            view = view[written:]

    def _rotate(self) -> None:
        os.close(self._fd)
        rotate(self.path, self.backups)
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        os.close(self._fd)


def pump(source: int, writer: RotatingWriter) -> None:
    """Copy from the file descriptor `source` until its end."""
    while True:
        try:
            data = os.read(source, _CHUNK)
        except InterruptedError:  # pragma: no cover - PEP 475 retries os.read
            continue
        if not data:
            return
        writer.write(data)


def redirect_output(path: Path, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS) -> int:
    """Point this process's stdout and stderr at a rotating log file written by a child
    process; the child's pid. Call it before any thread starts (it forks)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer: ignores the signals meant for the replica, ends with the pipe
        code = 0
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            # nothing of the replica's stays open here (sockets, the starter's pipes)
            os.closerange(3, read_end)
            os.closerange(read_end + 1, os.sysconf("SC_OPEN_MAX"))
            writer = RotatingWriter(path, max_bytes, backups)
            pump(read_end, writer)
            writer.close()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(read_end)
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)
    return pid


def remove_logs(path: Path) -> None:
    """Delete a log file and its rotated backups."""
    for candidate in [path, *path.parent.glob(f"{path.name}.*")]:
        suffix = candidate.name[len(path.name) :]
        if candidate == path or suffix[1:].isdigit():
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()


def main(argv: list[str]) -> None:
    """Redirect the output, then become the command (same pid: the replica's handle holds it)."""
    log_path, max_bytes, backups, *command = argv
    redirect_output(Path(log_path), int(max_bytes), int(backups))
    os.execv(command[0], command)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
