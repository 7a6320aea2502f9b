"""The collector in long-running servers: what startup built is frozen out of full
collections (which stopped the gateway for 100-200 ms each), in the control plane and in
every replica."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stratus.core import heap


@pytest.fixture(autouse=True)
def collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_freeze_moves_what_is_alive_out_of_sight_and_raises_the_thresholds() -> None:
    kept = [{"n": i} for i in range(10_000)]
    assert gc.get_freeze_count() == 0
    frozen = heap.freeze()
    assert frozen == gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == heap.THRESHOLDS
    assert not any(o is kept for o in gc.get_objects(2))  # a full collection skips it now


def test_the_control_plane_freezes_its_startup_objects(
    embedded_platform: Callable[..., Any],
) -> None:
    from stratus.api.app import create_api

    api = create_api(embedded_platform())

    async def started() -> tuple[int, tuple[int, int, int]]:
        async with api.router.lifespan_context(api):
            return gc.get_freeze_count(), gc.get_threshold()

    frozen, thresholds = asyncio.run(started())
    assert frozen > 100_000  # FastAPI, pydantic, SQLAlchemy, the routes
    assert thresholds == heap.THRESHOLDS


def test_a_replica_freezes_what_its_fork_server_gave_it_before_anything_else(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from stratus.serving import replica

    calls: list[bool] = []
    monkeypatch.setattr(heap, "freeze", lambda *, collect=True: calls.append(collect) or 0)
    with pytest.raises(SystemExit):
        replica.main(["--spec"])  # a usage error, after the first freeze
    assert calls == [False]  # no collection: it would write to every inherited object
