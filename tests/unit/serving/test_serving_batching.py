"""Adaptive batching: merged while busy, alone when idle, every request gets its own rows back."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from stratus.core.errors import ServiceUnavailable
from stratus.registry.batches import Batch
from stratus.registry.flavors.base import PredictionError
from stratus.serving.batching import AdaptiveBatcher, DirectRunner, runner_for, take_batch


def rows(*ids: int) -> Batch:
    """A request whose rows carry their ids, so that predictions can be traced back."""
    return Batch({"id": np.array(ids, dtype=np.int64)})


class Model:
    """A predict that returns each row's id, records its batches, and can be held by a test."""

    def __init__(self, *, sleep: float = 0.0, hold: bool = False) -> None:
        self.sleep = sleep
        self.batches: list[list[int]] = []
        self.threads: set[int] = set()
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.active = 0
        self.most_active = 0
        self.fail_on: int | None = None  # raise when a batch holds this id

    def predict(self, batch: Batch) -> np.ndarray:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            self.threads.add(threading.get_ident())
            ids = batch["id"].tolist()
            self.batches.append(ids)
            self.started.set()
            assert self.release.wait(30), "the test never released the model"
            if self.sleep:
                time.sleep(self.sleep)
            if self.fail_on is not None and self.fail_on in ids:
                raise PredictionError(f"the model failed on row {self.fail_on}")
            return batch["id"] * 10
        finally:
            self.active -= 1


def ids_of(predictions: object) -> list[Any]:
    assert isinstance(predictions, np.ndarray)
    return predictions.tolist()  # type: ignore[no-any-return]


async def until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.001)


async def running(model: Model, submit: Callable[[Batch], Awaitable[Any]]) -> asyncio.Task[Any]:
    """Start a request that holds the model (id -1) until `model.release` is set."""
    task = asyncio.ensure_future(submit(rows(-1)))
    await until(model.started.is_set)
    return task


async def queued(submit: Callable[[Batch], Awaitable[Any]], *batches: Batch) -> list[Any]:
    tasks = [asyncio.ensure_future(submit(b)) for b in batches]
    await asyncio.sleep(0)  # let each reach the queue
    return tasks


# --- the policy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queue_sizes", "max_batch_size", "taken"),
    [
        ([], 4, 0),
        ([1], 4, 1),
        ([1, 1, 1, 1, 1], 4, 4),
        ([2, 2], 4, 2),
        ([2, 3], 4, 1),  # the second does not fit: it waits for the next batch
        ([3, 2, 1], 4, 1),  # order is kept: the 1 does not jump the 2
        ([9], 4, 1),  # too large alone: it runs alone, never split
        ([9, 1], 4, 1),
        ([1, 9], 4, 1),
        ([4, 1], 4, 1),
        ([64] * 3, 64, 1),
        ([1] * 100, 64, 64),
        ([1, 1], 1, 1),
    ],
)
def test_take_batch(queue_sizes: list[int], max_batch_size: int, taken: int) -> None:
    assert take_batch(queue_sizes, max_batch_size) == taken


def test_take_batch_needs_room_for_a_row() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        take_batch([1], 0)


# --- the batcher -------------------------------------------------------------------------------


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows() -> None:
    model = Model(sleep=0.005)
    sizes: list[int] = []

    async def main() -> None:
        batcher = AdaptiveBatcher(
            model.predict, max_batch_size=16, on_batch=lambda n, s: sizes.append(n)
        )
        requests = [list(range(i * 10, i * 10 + 1 + i % 3)) for i in range(200)]
        results = await asyncio.gather(*(batcher.submit(rows(*ids)) for ids in requests))
        for ids, result in zip(requests, results, strict=True):
            assert ids_of(result) == [i * 10 for i in ids]
        await batcher.close()

    asyncio.run(main())
    assert len(model.batches) < 50  # 200 requests, far fewer predict calls
    assert max(sizes) <= 16
    assert sum(sizes) == sum(1 + i % 3 for i in range(200))
    assert sizes == [len(b) for b in model.batches]
    assert len(model.threads) == 1 and model.most_active == 1


def test_an_idle_model_runs_each_request_at_once() -> None:
    model = Model()
    sizes: list[int] = []

    async def main() -> None:
        batcher = AdaptiveBatcher(
            model.predict, max_batch_size=64, on_batch=lambda n, s: sizes.append(n)
        )
        for i in range(5):
            assert ids_of(await batcher.submit(rows(i))) == [i * 10]
        await batcher.close()

    asyncio.run(main())
    assert model.batches == [[0], [1], [2], [3], [4]]
    assert sizes == [1] * 5


def test_batches_respect_max_batch_size_and_a_large_request_runs_alone() -> None:
    model = Model(hold=True)

    async def main() -> None:
        batcher = AdaptiveBatcher(model.predict, max_batch_size=4)
        first = await running(model, batcher.submit)
        tasks = await queued(
            batcher.submit,
            rows(1),
            rows(2, 3),
            rows(4),  # 1 + 2 + 1 rows: a full batch
            rows(5, 6),  # does not fit beside the large one: runs before it
            rows(*range(10, 20)),  # 10 rows: alone
            rows(7),
            rows(8),
        )
        model.release.set()
        await first
        results = await asyncio.gather(*tasks)
        assert [r.tolist() for r in results] == [
            [10],
            [20, 30],
            [40],
            [50, 60],
            list(range(100, 200, 10)),
            [70],
            [80],
        ]
        await batcher.close()

    asyncio.run(main())
    assert model.batches == [[-1], [1, 2, 3, 4], [5, 6], list(range(10, 20)), [7, 8]]


def test_an_exception_fails_every_request_of_its_batch_only() -> None:
    model = Model(hold=True)
    model.fail_on = 2

    async def main() -> None:
        batcher = AdaptiveBatcher(model.predict, max_batch_size=3)
        first = await running(model, batcher.submit)
        tasks = await queued(batcher.submit, rows(1), rows(2), rows(3), rows(4))
        model.release.set()
        assert (await first).tolist() == [-10]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        errors = outcomes[:3]
        assert all(isinstance(e, PredictionError) for e in errors)
        assert errors[0] is errors[1] is errors[2]
        assert "failed on row 2" in str(errors[0])
        assert ids_of(outcomes[3]) == [40]
        # the batcher keeps serving
        assert ids_of(await batcher.submit(rows(5))) == [50]
        await batcher.close()

    asyncio.run(main())
    assert model.batches == [[-1], [1, 2, 3], [4], [5]]


def test_a_cancelled_request_is_dropped_without_harm() -> None:
    model = Model(hold=True)

    async def main() -> None:
        batcher = AdaptiveBatcher(model.predict, max_batch_size=8)
        first = await running(model, batcher.submit)
        a, b, c = await queued(batcher.submit, rows(1), rows(2), rows(3))
        b.cancel()
        first.cancel()  # its batch is running: the result is thrown away
        await asyncio.sleep(0)
        model.release.set()
        assert (await a).tolist() == [10]
        assert (await c).tolist() == [30]
        for task in (b, first):
            with pytest.raises(asyncio.CancelledError):
                await task
        assert ids_of(await batcher.submit(rows(4))) == [40]
        await batcher.close()

    asyncio.run(main())
    assert model.batches == [[-1], [1, 3], [4]]


def test_close_drains_the_queue_then_refuses_requests() -> None:
    model = Model(hold=True)

    async def main() -> None:
        batcher = AdaptiveBatcher(model.predict, max_batch_size=2)
        first = await running(model, batcher.submit)
        tasks = await queued(batcher.submit, rows(1), rows(2), rows(3))
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0)
        with pytest.raises(ServiceUnavailable, match="shutting down"):
            await batcher.submit(rows(9))
        assert not closing.done()
        model.release.set()
        await closing
        assert all(t.done() for t in [first, *tasks])
        assert [t.result().tolist() for t in tasks] == [[10], [20], [30]]
        await batcher.close()  # twice is fine

    asyncio.run(main())
    assert model.batches == [[-1], [1, 2], [3]]


def test_waiting_for_company_ends_when_a_batch_is_full() -> None:
    model = Model()
    sizes: list[int] = []

    async def main() -> None:
        batcher = AdaptiveBatcher(
            model.predict,
            max_batch_size=2,
            max_wait_ms=60_000,  # a test that waited this long would time out
            on_batch=lambda n, s: sizes.append(n),
        )
        first = asyncio.ensure_future(batcher.submit(rows(1)))
        await asyncio.sleep(0.01)
        assert not first.done() and not model.batches  # waiting for company
        second = await batcher.submit(rows(2))
        assert ids_of(await first) == [10] and ids_of(second) == [20]
        await batcher.close()

    asyncio.run(main())
    assert model.batches == [[1, 2]]
    assert sizes == [2]


def test_a_request_alone_runs_when_the_wait_for_company_ends() -> None:
    model = Model()

    async def main() -> None:
        batcher = AdaptiveBatcher(model.predict, max_batch_size=64, max_wait_ms=1)
        assert ids_of(await batcher.submit(rows(1, 2))) == [10, 20]
        await batcher.close()

    asyncio.run(main())
    assert model.batches == [[1, 2]]


def test_a_model_that_exits_fails_its_batch_not_the_replica() -> None:
    def predict(batch: Batch) -> np.ndarray:
        if 1 in batch["id"].tolist():
            raise SystemExit(3)
        return batch["id"]

    async def main() -> None:
        batcher = AdaptiveBatcher(predict)
        with pytest.raises(PredictionError, match="SystemExit: 3"):
            await batcher.submit(rows(1))
        assert ids_of(await batcher.submit(rows(2))) == [2]
        await batcher.close()

    asyncio.run(main())


def test_dict_predictions_are_cut_per_request() -> None:
    model = Model(hold=True)

    def predict(batch: Batch) -> Any:
        ids = model.predict(batch)
        return {"label": ids, "proba": np.column_stack([ids, -ids])}

    async def main() -> None:
        batcher = AdaptiveBatcher(predict)
        first = await running(model, batcher.submit)
        a, b = await queued(batcher.submit, rows(1, 2), rows(3))
        model.release.set()
        await first
        a, b = await a, await b
        assert a["label"].tolist() == [10, 20]
        assert a["proba"].tolist() == [[10, -10], [20, -20]]
        assert b["label"].tolist() == [30] and b["proba"].tolist() == [[30, -30]]
        await batcher.close()

    asyncio.run(main())
    assert model.batches == [[-1], [1, 2, 3]]


def test_predictions_that_do_not_match_the_rows_fail_the_batch() -> None:
    model = Model(hold=True)

    def predict(batch: Batch) -> np.ndarray:
        return model.predict(batch)[:1]

    async def main() -> None:
        batcher = AdaptiveBatcher(predict)
        first = await running(model, batcher.submit)
        tasks = await queued(batcher.submit, rows(1), rows(2))
        model.release.set()
        assert ids_of(await first) == [-10]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(e, PredictionError) for e in outcomes)
        assert "do not match the 2 rows" in str(outcomes[0])
        await batcher.close()

    asyncio.run(main())


def test_requests_with_different_inputs_are_not_merged() -> None:
    seen: list[tuple[str, ...]] = []

    def predict(batch: Batch) -> np.ndarray:
        seen.append(batch.names)
        return np.zeros(batch.n_rows)

    async def main() -> None:
        batcher = AdaptiveBatcher(predict)
        tensor = Batch({"t": np.zeros((1, 2))})
        other_shape = Batch({"t": np.zeros((1, 3))})
        await asyncio.gather(
            batcher.submit(rows(1)),
            batcher.submit(Batch({"x": np.zeros(1)})),
            batcher.submit(tensor),
            batcher.submit(other_shape),  # same names, cannot be concatenated
        )
        await batcher.close()

    asyncio.run(main())
    assert seen == [("id",), ("x",), ("t",), ("t",)]


def test_a_failing_on_batch_does_not_fail_requests(caplog: pytest.LogCaptureFixture) -> None:
    def on_batch(n: int, seconds: float) -> None:
        raise RuntimeError("metrics are down")

    async def main() -> None:
        batcher = AdaptiveBatcher(Model().predict, on_batch=on_batch)
        assert ids_of(await batcher.submit(rows(1))) == [10]
        await batcher.close()

    asyncio.run(main())
    assert "on_batch(1," in caplog.text


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        AdaptiveBatcher(Model().predict, max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        AdaptiveBatcher(Model().predict, max_wait_ms=-1)


# --- the direct runner -------------------------------------------------------------------------


def test_direct_runner_runs_requests_alone_on_one_thread() -> None:
    model = Model(sleep=0.001)
    sizes: list[int] = []

    async def main() -> None:
        runner = DirectRunner(model.predict, on_batch=lambda n, s: sizes.append(n))
        requests = [list(range(i * 10, i * 10 + 1 + i % 2)) for i in range(20)]
        results = await asyncio.gather(*(runner.submit(rows(*ids)) for ids in requests))
        for ids, result in zip(requests, results, strict=True):
            assert ids_of(result) == [i * 10 for i in ids]
        await runner.close()
        with pytest.raises(ServiceUnavailable):
            await runner.submit(rows(1))

    asyncio.run(main())
    assert len(model.batches) == 20
    assert sorted(sizes) == sorted(1 + i % 2 for i in range(20))
    assert len(model.threads) == 1 and model.most_active == 1


def test_direct_runner_raises_the_models_error_and_close_drains() -> None:
    model = Model(hold=True)
    model.fail_on = 2
    sizes: list[int] = []

    async def main() -> None:
        runner = DirectRunner(model.predict, on_batch=lambda n, s: sizes.append(n))
        first = await running(model, runner.submit)
        ok, bad, dropped = await queued(runner.submit, rows(1), rows(2), rows(3))
        dropped.cancel()
        closing = asyncio.ensure_future(runner.close())
        await asyncio.sleep(0)
        model.release.set()
        await closing
        assert (await first).tolist() == [-10] and (await ok).tolist() == [10]
        with pytest.raises(PredictionError, match="failed on row 2"):
            await bad

    asyncio.run(main())
    assert model.batches == [[-1], [1], [2]]  # the cancelled request never ran
    assert sizes == [1, 1, 1]  # failures are measured too


def test_runner_for_picks_by_supports_batching() -> None:
    class Loaded:
        def __init__(self, batching: bool) -> None:
            self.supports_batching = batching

        def predict(self, batch: Batch) -> np.ndarray:
            return np.zeros(batch.n_rows)

    async def main() -> None:
        batcher = runner_for(Loaded(True), max_batch_size=8)
        direct = runner_for(Loaded(False))
        assert isinstance(batcher, AdaptiveBatcher) and isinstance(direct, DirectRunner)
        for runner in (batcher, direct):
            assert ids_of(await runner.submit(rows(1, 2))) == [0, 0]
            await runner.close()

    asyncio.run(main())


# --- predicting on the event loop (as replicas do) ---------------------------------------------


def test_on_the_loop_requests_read_together_are_one_batch() -> None:
    model = Model()
    sizes: list[int] = []

    async def main() -> None:
        batcher = AdaptiveBatcher(
            model.predict, max_batch_size=4, on_batch=lambda n, s: sizes.append(n), on_loop=True
        )
        results = await asyncio.gather(*(batcher.submit(rows(i)) for i in range(6)))
        assert [ids_of(r) for r in results] == [[i * 10] for i in range(6)]
        assert ids_of(await batcher.submit(rows(7))) == [70]  # idle: alone, at once
        await batcher.close()
        with pytest.raises(ServiceUnavailable):
            await batcher.submit(rows(8))

    asyncio.run(main())
    assert model.batches == [[0, 1, 2, 3], [4, 5], [7]]
    assert sizes == [4, 2, 1]
    assert model.threads == {threading.get_ident()}  # no worker thread


def test_on_the_loop_a_failure_fails_its_batch_only() -> None:
    model = Model()
    model.fail_on = 2

    def exits(batch: Batch) -> np.ndarray:
        raise SystemExit(3)

    async def main() -> None:
        batcher = AdaptiveBatcher(model.predict, max_batch_size=2, on_loop=True)
        results = await asyncio.gather(
            *(batcher.submit(rows(i)) for i in range(4)), return_exceptions=True
        )
        assert isinstance(results[2], PredictionError) and isinstance(results[3], PredictionError)
        assert [ids_of(r) for r in results[:2]] == [[0], [10]]
        await batcher.close()
        exiting = AdaptiveBatcher(exits, on_loop=True)
        with pytest.raises(PredictionError, match="SystemExit"):
            await exiting.submit(rows(1))
        await exiting.close()

    asyncio.run(main())


@pytest.mark.parametrize("on_loop", [True, False], ids=["on-loop", "thread"])
def test_after_a_busy_batch_the_next_one_waits_for_its_wave(
    monkeypatch: pytest.MonkeyPatch, on_loop: bool
) -> None:
    """Requests answered together come back together, a little apart: once batches hold several
    requests, the next batch lingers so that such a wave is predicted in one call."""
    from stratus.serving import batching

    monkeypatch.setattr(batching, "LINGER_GAP_SECONDS", 0.2)  # generous: no timing race
    monkeypatch.setattr(batching, "LINGER_CAP_SECONDS", 5.0)
    model = Model(sleep=0.3)

    async def main() -> None:
        batcher = AdaptiveBatcher(model.predict, max_batch_size=64, on_loop=on_loop)
        await asyncio.gather(*(batcher.submit(rows(i)) for i in range(4)))
        first = asyncio.ensure_future(batcher.submit(rows(10)))
        await asyncio.sleep(0.02)  # the wave's second request, a little later
        second = asyncio.ensure_future(batcher.submit(rows(11)))
        assert [ids_of(r) for r in await asyncio.gather(first, second)] == [[100], [110]]
        await batcher.close()

    asyncio.run(main())
    assert model.batches[-1] == [10, 11]  # one call, not two
    assert sorted(i for b in model.batches[:-1] for i in b) == [0, 1, 2, 3]


def test_a_lone_caller_never_lingers(monkeypatch: pytest.MonkeyPatch) -> None:
    from stratus.serving import batching

    monkeypatch.setattr(batching, "LINGER_GAP_SECONDS", 30.0)  # a linger would time the test out
    monkeypatch.setattr(batching, "LINGER_CAP_SECONDS", 30.0)
    model = Model(sleep=0.01)

    async def main() -> None:
        batcher = AdaptiveBatcher(model.predict, on_loop=True)
        for i in range(3):
            assert ids_of(await asyncio.wait_for(batcher.submit(rows(i)), 10)) == [i * 10]
        await batcher.close()

    asyncio.run(main())
    assert model.batches == [[0], [1], [2]]
