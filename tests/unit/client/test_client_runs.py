"""The SDK's run logic that needs no server: buffering metric points into batches, steps per
key, points kept when the platform is unreachable, params made JSON scalars, and how a run's
end state follows the block's outcome. (The real server is driven end to end in
tests/integration/test_tracking.py.)"""

from __future__ import annotations

import math
from typing import Any

import pytest

from stratus.client._runs import ActiveRun, param_value
from stratus.core.errors import InvalidInput, ServiceUnavailable
from stratus.tracking import schemas as ts


def _run(state: str = "running", **fields: Any) -> ts.RunRead:
    return ts.RunRead.model_validate(
        {
            "id": "run_1",
            "experiment": "e",
            "project": "p",
            "name": "",
            "state": state,
            "created_by": "user:x",
            "started_at": "2030-01-01T00:00:00Z",
            "ended_at": None,
            "params": {},
            "tags": {},
            "metrics": {},
            **fields,
        }
    )


class FakeExperiments:
    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.ended: list[tuple[str, dict[str, str] | None]] = []
        self.unreachable = 0

    def log_batch(self, run_id: str, *, metrics: Any = (), **_: Any) -> ts.RunRead:
        if self.unreachable:
            self.unreachable -= 1
            raise ServiceUnavailable("cannot reach Stratus")
        self.batches.append(list(metrics))
        return _run()

    def end_run(self, run_id: str, state: str, *, tags: Any = None, **_: Any) -> ts.RunRead:
        self.ended.append((state, tags))
        return _run(state)


class FakeClient:
    def __init__(self) -> None:
        self.experiments = FakeExperiments()
        self.closed = False

    def close(self) -> None:
        self.closed = True


def active(client: FakeClient, flush_every: int = 3, flush_seconds: float = 3600) -> ActiveRun:
    return ActiveRun(
        client,  # type: ignore[arg-type]
        _run(),
        "p",
        owns_client=True,
        flush_every=flush_every,
        flush_seconds=flush_seconds,
    )


def test_points_go_out_in_batches_with_steps_counted_per_key() -> None:
    client = FakeClient()
    run = active(client)
    run.log_metrics({"loss": 0.9, "acc": 0.5})
    assert client.experiments.batches == []  # buffered
    run.log_metric("loss", 0.8)
    assert [(p["key"], p["step"]) for p in client.experiments.batches[0]] == [
        ("loss", 0), ("acc", 0), ("loss", 1),
    ]  # fmt: skip
    run.log_metric("loss", float("nan"), step=10)
    run.log_metric("loss", 0.7)  # after the highest step logged
    run.end()
    assert [(p["step"], p["value"]) for p in client.experiments.batches[1]][1] == (11, 0.7)
    assert math.isnan(client.experiments.batches[1][0]["value"])
    assert client.experiments.ended == [("finished", None)] and client.closed
    run.end()  # once only
    assert len(client.experiments.ended) == 1


def test_time_flushes_and_bad_points_are_refused_where_logged() -> None:
    client = FakeClient()
    run = active(client, flush_every=1000, flush_seconds=0)
    run.log_metric("loss", 1.0)
    assert len(client.experiments.batches) == 1
    with pytest.raises(InvalidInput, match="letters, digits"):
        run.log_metric("bad key", 1.0)
    with pytest.raises(InvalidInput, match="not a number"):
        run.log_metric("loss", "high")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="negative"):
        run.log_metric("loss", 1.0, step=-1)


def test_points_stay_buffered_while_the_platform_is_unreachable() -> None:
    client = FakeClient()
    run = active(client, flush_every=2)
    client.experiments.unreachable = 1
    run.log_metric("loss", 1.0)
    with pytest.raises(ServiceUnavailable):
        run.log_metric("loss", 0.9)
    run.log_metric("loss", 0.8)
    run.end()
    sent = [p["value"] for batch in client.experiments.batches for p in batch]
    assert sent == [1.0, 0.9, 0.8]


def test_the_block_decides_the_end_state() -> None:
    for error, state in ((ValueError("boom"), "failed"), (KeyboardInterrupt(), "killed")):
        client = FakeClient()
        with pytest.raises(type(error)):
            with active(client):
                raise error
        [(ended, tags)] = client.experiments.ended
        assert ended == state and tags is not None and type(error).__name__ in tags["error"]
    client = FakeClient()
    with pytest.raises(SystemExit), active(client):
        raise SystemExit(0)
    assert client.experiments.ended == [("finished", None)]


def test_params_become_json_scalars() -> None:
    np = pytest.importorskip("numpy")
    assert param_value(np.float32(0.5)) == 0.5 and isinstance(param_value(np.int64(3)), int)
    assert (
        param_value([64, 32]) == "[64, 32]" and param_value({"b": 1, "a": 2}) == '{"a": 2, "b": 1}'
    )
    assert param_value(math.inf) == "inf" and param_value(None) is None
    assert param_value(object).startswith("<class")
