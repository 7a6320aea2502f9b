"""A replica's log is capped in size and rotated by its own writer process, which outlives a
crash of the replica (kill -9) and still writes what the replica printed last; the log and its
backups are removed together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from stratus.compute.processes import group_members
from stratus.compute.rotating_logs import RotatingWriter, remove_logs


def test_the_writer_rotates_before_passing_the_cap(tmp_path: Path) -> None:
    log = tmp_path / "r.log"
    writer = RotatingWriter(log, max_bytes=100, backups=2)
    for n in range(10):
        writer.write(f"line {n:02d} ".encode() * 4)  # 32 bytes: three fit in a file
    writer.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["r.log", "r.log.1", "r.log.2"]  # older ones dropped
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())
    assert log.read_bytes() == b"line 09 " * 4
    assert (tmp_path / "r.log.1").read_bytes().startswith(b"line 06 ")
    (tmp_path / "r.log.x").write_text("not a backup")
    remove_logs(log)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.log.x"]


def test_a_crashed_process_output_is_rotated_and_its_last_words_kept(tmp_path: Path) -> None:
    log = tmp_path / "r.log"
    program = textwrap.dedent(
        """
        import os, signal, sys
        for n in range(400):
            print(f"line {n:04d} " + "x" * 40, flush=True)
        print("last words", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "stratus.compute.rotating_logs", str(log), "4096", "3",
         sys.executable, "-c", program],
        start_new_session=True,
    )  # fmt: skip
    assert process.wait(timeout=60) == -signal.SIGKILL
    deadline = time.monotonic() + 10  # the writer drains the pipe, then exits
    while group_members(process.pid):
        assert time.monotonic() < deadline, "the log writer did not finish"
        time.sleep(0.02)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["r.log", "r.log.1", "r.log.2", "r.log.3"]
    assert all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())
    assert log.read_text().splitlines()[-1] == "last words"
    assert log.stat().st_mode & 0o777 == 0o600
    assert os.path.getsize(log) > 0
