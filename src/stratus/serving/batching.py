"""Running a model's predict for concurrent requests.

`AdaptiveBatcher` merges requests that arrive while the model is busy into one batch (adding no
latency when it is idle); `DirectRunner` runs each request alone, for models whose predict does
not get cheaper per row in batches. `runner_for` picks one; `take_batch` is the merging policy.

A replica predicts on its event loop (`on_loop`): it has nothing else to do meanwhile, requests
that arrive during a predict wait in the socket and form the next batch, and it saves the hop
to a worker thread and back, which measured 0.3-0.5 ms of CPU per request for a 1-row
LogisticRegression (a third of its cost). Elsewhere predict runs on one worker thread, so the
loop stays free.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from stratus.core.errors import ServiceUnavailable
from stratus.registry.batches import Batch, split_rows
from stratus.registry.flavors.base import PredictionError, prediction_failed

if TYPE_CHECKING:
    from stratus.registry.flavors.base import LoadedModel, Predictions

log = logging.getLogger(__name__)

PredictFn = Callable[[Batch], "Predictions"]
# Under load, requests reach a busy model in waves: those answered together come back
# together. Without care the waves never merge (each predict takes one wave), which starves a
# model whose predict costs about the same for 1 row as for 64. So once batches hold several
# requests, the next batch lingers while its wave is still arriving: until no request came for
# LINGER_GAP_SECONDS, at most a share of the last predict's time (capped). A lone caller
# (batches of one request) never waits.
LINGER_SHARE = 1.0
LINGER_CAP_SECONDS = 0.02
LINGER_GAP_SECONDS = 0.003
OnBatch = Callable[[int, float], None]


class Runner(Protocol):
    """Runs a model's predict for requests coming from one event loop."""

    async def submit(self, batch: Batch) -> Predictions:
        """Predict the rows of one request.

        Args:
            batch: the request's rows, validated against the signature.

        Returns:
            The predictions for exactly these rows (an array, or a dict of arrays).

        Raises:
            PredictionError: the model failed (on this request's batch).
            InvalidInput: the batch does not suit the model.
            ServiceUnavailable: the runner is closed.
        """
        ...

    async def close(self) -> None:
        """Stop taking requests, finish those already submitted, and stop the worker thread."""
        ...


def runner_for(
    model: LoadedModel,
    *,
    max_batch_size: int = 64,
    max_wait_ms: float = 0.0,
    on_batch: OnBatch | None = None,
    on_loop: bool = False,
) -> Runner:
    """An `AdaptiveBatcher` if the model supports batching, else a `DirectRunner`."""
    if model.supports_batching:
        return AdaptiveBatcher(
            model.predict,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            on_batch=on_batch,
            on_loop=on_loop,
        )
    return DirectRunner(model.predict, on_batch=on_batch)


def take_batch(queue_sizes: Sequence[int], max_batch_size: int) -> int:
    """How many requests, from the front of the queue, the next batch takes.

    Requests are taken in order while their rows fit in `max_batch_size`; the first request is
    always taken, so one larger than `max_batch_size` runs alone (requests are never split).

    Args:
        queue_sizes: the rows of each queued request, oldest first.
        max_batch_size: the most rows a batch may hold (at least 1).
    """
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
    total = 0
    for taken, size in enumerate(queue_sizes):
        total += size
        if total > max_batch_size:
            return max(taken, 1)
    return len(queue_sizes)


@dataclass(slots=True)
class _Pending:
    batch: Batch
    future: asyncio.Future[Predictions]


# What the worker thread reports for each predict call: its requests' outcomes, rows, seconds.
_Outcome = tuple[list["Predictions | BaseException"], int, float]


class AdaptiveBatcher:
    """Merges concurrent requests into batches for one model, predicting on one worker thread
    (or, with `on_loop`, on the event loop itself).

    When the model is idle a request starts at once (after waiting up to `max_wait_ms` for
    company, if that is above 0; on the loop, after the requests already read in the same
    turn of the loop have queued). Requests that arrive while a batch runs queue up; the next
    batch takes as many of them, oldest first, as fit in `max_batch_size` rows. Each request
    gets its own rows' predictions; if predict raises, every request of the batch gets that
    exception. A request whose caller is cancelled is dropped. Use from one event loop.

    Requests whose batches cannot be merged (different inputs, or tensors of different shapes,
    which only happens without a signature) are predicted one by one within the batch.
    """

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_size: int = 64,
        max_wait_ms: float = 0.0,
        on_batch: OnBatch | None = None,
        on_loop: bool = False,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms cannot be negative, got {max_wait_ms}")
        self._predict = predict
        self._max_batch_size = max_batch_size
        self._max_wait = max_wait_ms / 1000
        self._on_batch = on_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stratus-predict")
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0  # rows in the queue, cancelled requests included
        # Busy from the moment a batch is due (waiting for company, or on the worker thread)
        # until the queue is empty; batches chain through callbacks, with no task of their own,
        # so a result reaches its caller in one hop from the worker thread.
        self._busy = False
        self._timer: asyncio.Handle | None = None  # the wait for company, while it lasts
        self._drained: asyncio.Future[None] | None = None  # close() waits on it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._on_loop = on_loop
        self._last_requests = 0  # requests in the last batch, and its predict's seconds
        self._last_seconds = 0.0
        self._last_arrival = 0.0  # loop time of the newest request
        self._linger_until = 0.0  # while lingering: when the batch goes whatever happens

    async def submit(self, batch: Batch) -> Predictions:
        if self._closed:
            raise ServiceUnavailable("the model is shutting down; retry on another replica")
        loop = self._loop = asyncio.get_running_loop()
        pending = _Pending(batch, loop.create_future())
        self._last_arrival = loop.time()
        self._queue.append(pending)
        self._queued_rows += batch.n_rows
        if not self._busy:
            self._busy = True
            linger = 0.0 if self._max_wait else self._linger()
            if self._max_wait > 0 and self._queued_rows < self._max_batch_size:
                self._timer = loop.call_later(self._max_wait, self._start_next)
            elif linger > 0 and self._queued_rows < self._max_batch_size:
                self._begin_linger(linger)
            elif self._on_loop:
                self._timer = loop.call_soon(self._start_next)  # after requests already read
            else:
                self._start_next()
        elif self._timer is not None and self._queued_rows >= self._max_batch_size:
            self._timer.cancel()  # enough company: go now
            self._start_next()
        return await pending.future

    async def close(self) -> None:
        self._closed = True
        if self._busy:
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._drained)
        self._executor.shutdown(wait=False)

    def _start_next(self) -> None:
        """Send the next batch to the worker thread, or go idle if nothing is queued."""
        self._timer = None
        taken = self._take()
        if not taken:
            self._busy = False
            if self._drained is not None and not self._drained.done():
                self._drained.set_result(None)
            return
        loop = self._loop
        assert loop is not None
        if self._on_loop:
            done: Future[list[_Outcome]] = Future()
            try:
                done.set_result(self._run([p.batch for p in taken]))
            except BaseException as exc:  # SystemExit and the like: `_finish` fails the batch
                done.set_exception(exc)
            self._finish(taken, done)
            return
        work = self._executor.submit(self._run, [p.batch for p in taken])
        work.add_done_callback(lambda done: _call_soon_threadsafe(loop, self._finish, taken, done))

    def _finish(self, taken: list[_Pending], work: Future[list[_Outcome]]) -> None:
        """On the event loop, once a batch is predicted: deliver, then start the next batch."""
        try:
            try:
                outcomes = work.result()
            except BaseException as exc:  # SystemExit and the like, which `_run` lets through
                error = prediction_failed(exc)
                outcomes = [([error] * len(taken), sum(p.batch.n_rows for p in taken), 0.0)]
            self._deliver(taken, outcomes)
        finally:
            linger = 0.0 if self._max_wait else self._linger()
            if linger > 0 and self._queue and self._queued_rows < self._max_batch_size:
                self._begin_linger(linger)
            else:
                self._start_next()

    def _begin_linger(self, seconds: float) -> None:
        loop = self._loop
        assert loop is not None
        self._linger_until = loop.time() + seconds
        self._timer = loop.call_later(min(LINGER_GAP_SECONDS, seconds), self._linger_check)

    def _linger_check(self) -> None:
        """Go once the wave stopped arriving (a quiet gap), or the linger is over."""
        loop = self._loop
        assert loop is not None
        now = loop.time()
        quiet = now - self._last_arrival
        if quiet >= LINGER_GAP_SECONDS or now >= self._linger_until:
            self._start_next()
            return
        wait = min(LINGER_GAP_SECONDS - quiet, self._linger_until - now)
        self._timer = loop.call_later(wait, self._linger_check)

    def _linger(self) -> float:
        """How long the next batch waits for company (0 unless batches hold several requests)."""
        if self._last_requests < 2:
            return 0.0
        return min(LINGER_CAP_SECONDS, LINGER_SHARE * self._last_seconds)

    def _take(self) -> list[_Pending]:
        """Pop the next batch's requests off the queue, skipping cancelled ones."""
        queue = self._queue
        live: list[_Pending] = []
        while queue and len(live) < self._max_batch_size:
            pending = queue.popleft()
            self._queued_rows -= pending.batch.n_rows
            if pending.future.done():
                continue
            if live and pending.batch.names != live[0].batch.names:
                queue.appendleft(pending)  # it starts the next batch
                self._queued_rows += pending.batch.n_rows
                break
            live.append(pending)
        n = take_batch([p.batch.n_rows for p in live], self._max_batch_size)
        for pending in reversed(live[n:]):
            queue.appendleft(pending)
            self._queued_rows += pending.batch.n_rows
        return live[:n]

    def _run(self, batches: list[Batch]) -> list[_Outcome]:
        """On the worker thread: predict the batches merged, or one by one if they cannot be."""
        if len(batches) > 1:
            try:
                merged = Batch.concat(batches)
            except ValueError:
                return [self._run_one([batch]) for batch in batches]
            return [self._run_one(batches, merged)]
        return [self._run_one(batches)]

    def _run_one(self, batches: list[Batch], merged: Batch | None = None) -> _Outcome:
        batch = merged if merged is not None else batches[0]
        start = time.perf_counter()
        try:
            result = self._predict(batch)
        except Exception as exc:
            return [exc] * len(batches), batch.n_rows, time.perf_counter() - start
        seconds = time.perf_counter() - start
        if len(batches) == 1:
            return [result], batch.n_rows, seconds
        try:
            parts = split_rows(result, [b.n_rows for b in batches])
        except (ValueError, TypeError):
            error = PredictionError(
                f"the model returned predictions that do not match the {batch.n_rows} rows "
                "it was given"
            )
            return [error] * len(batches), batch.n_rows, seconds
        return parts, batch.n_rows, seconds

    def _deliver(self, taken: list[_Pending], outcomes: list[_Outcome]) -> None:
        results = [result for parts, _, _ in outcomes for result in parts]
        for pending, result in zip(taken, results, strict=True):
            if pending.future.done():  # cancelled while its batch ran
                continue
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)
        self._last_requests = len(taken)
        self._last_seconds = sum(seconds for _, _, seconds in outcomes)
        for _, rows, seconds in outcomes:
            _report(self._on_batch, rows, seconds)


class DirectRunner:
    """Runs each request alone, one at a time, on one worker thread (for models that gain
    nothing from batches). A request whose caller is cancelled before it starts never runs.
    """

    def __init__(self, predict: PredictFn, *, on_batch: OnBatch | None = None) -> None:
        self._predict = predict
        self._on_batch = on_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stratus-predict")
        self._running: set[asyncio.Future[tuple[Predictions | Exception, float]]] = set()
        self._closed = False

    async def submit(self, batch: Batch) -> Predictions:
        if self._closed:
            raise ServiceUnavailable("the model is shutting down; retry on another replica")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._run, batch)
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        result, seconds = await future
        _report(self._on_batch, batch.n_rows, seconds)
        if isinstance(result, Exception):
            raise result
        return result

    async def close(self) -> None:
        self._closed = True
        if self._running:
            await asyncio.wait(list(self._running))
        self._executor.shutdown(wait=False)

    def _run(self, batch: Batch) -> tuple[Predictions | Exception, float]:
        start = time.perf_counter()
        try:
            result: Predictions | Exception = self._predict(batch)
        except Exception as exc:
            result = exc
        return result, time.perf_counter() - start


def _call_soon_threadsafe(loop: asyncio.AbstractEventLoop, *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(*args)
    except RuntimeError:  # the loop is closed: nobody is waiting for the result any more
        pass


def _report(on_batch: OnBatch | None, rows: int, seconds: float) -> None:
    if on_batch is None:
        return
    try:
        on_batch(rows, seconds)
    except Exception:  # metrics must never fail a request
        log.exception("on_batch(%d, %.6f) raised", rows, seconds)
