"""Large objects stream through the platform: the server's memory stays flat whatever the size."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratus.testing import LocalPlatform

MiB = 1024 * 1024
MAX_GROWTH = 150 * MiB


def generated(size: int, seed: int, digest: hashlib._Hash) -> Iterator[bytes]:
    """`size` pseudo-random bytes in 1 MiB chunks, made on the fly (and hashed as they go)."""
    rng = random.Random(seed)
    left = size
    while left:
        chunk = rng.randbytes(min(MiB, left))
        digest.update(chunk)
        left -= len(chunk)
        yield chunk


def peak_rss(pid: int) -> int:
    """The process's high-water resident set size (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(256 * MiB, id="256MiB"),
        pytest.param(1024 * MiB, id="1GiB", marks=pytest.mark.slow),
    ],
)
def test_large_object_round_trip_in_flat_memory(tmp_path: Path, size: int) -> None:
    with LocalPlatform(tmp_path / "home") as p, p.client() as c:
        c.buckets.create("big", project="default")
        # Warm up (imports, thread pools, first key) so the baseline is the steady state.
        c.buckets.upload("big", "warm-up", b"w" * (3 * MiB), project="default")
        assert len(c.buckets.read("big", "warm-up", project="default")) == 3 * MiB
        before = peak_rss(p.pid)

        sent = hashlib.sha256()
        started = time.monotonic()
        version = c.buckets.upload(
            "big", "huge.bin", generated(size, seed=size, digest=sent), project="default"
        )
        uploaded = time.monotonic()
        assert version.size == size
        assert version.sha256 == sent.hexdigest()

        received = hashlib.sha256()
        count = 0
        for chunk in c.buckets.stream("big", "huge.bin", project="default"):
            received.update(chunk)
            count += len(chunk)
        downloaded = time.monotonic()
        assert count == size
        assert received.hexdigest() == sent.hexdigest()

        after = peak_rss(p.pid)
        growth = after - before
        print(
            f"\n{size // MiB} MiB: upload {uploaded - started:.1f}s, "
            f"download {downloaded - uploaded:.1f}s, server peak RSS "
            f"{before / MiB:.0f} -> {after / MiB:.0f} MiB"
        )
        assert growth < MAX_GROWTH, f"the server's peak RSS grew by {growth / MiB:.0f} MiB"
        # Nothing was left behind in the store's temp area.
        assert not any((p.home / "store" / "tmp").iterdir())
