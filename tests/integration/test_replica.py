"""A real replica process: loads a model version, answers the three protocols over the wire,
batches concurrent requests, refuses bad input clearly, and stops cleanly."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from stratus.serving.connections import ReplicaConnection, ReplicaGone
from stratus.serving.wire import Kind

pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from stratus.registry.signatures import infer_signature

    data = load_breast_cancer(as_frame=True)
    x = data.data.to_numpy()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, data.target)
    root = tmp_path_factory.mktemp("replica-model")
    skops_io.dump(model, root / "model.skops")
    signature = infer_signature(data.data.head(10)).model_dump(mode="json")
    return {"dir": root, "x": x, "expected": model.predict(x), "signature": signature,
            "columns": list(data.data.columns)}  # fmt: skip


SECRET = "replica-secret-for-tests"


def _spec(tmp: Path, model: dict[str, Any], **extra: Any) -> Path:
    spec = {
        "model_dir": str(model["dir"]),
        "flavor": "sklearn",
        "signature": model["signature"],
        "model_name": "cancer",
        "model_version": 3,
        "address": f"unix://{tmp / 'replica.sock'}",
        "secret": SECRET,
        **extra,
    }
    path = tmp / "spec.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture
def replica(
    tmp_path: Path, model_dir: dict[str, Any]
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    spec = _spec(tmp_path, model_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "stratus.serving.replica", "--spec", str(spec)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    socket = tmp_path / "replica.sock"
    deadline = time.monotonic() + 60
    while not socket.exists():
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        assert time.monotonic() < deadline, "the replica did not come up"
        time.sleep(0.05)
    try:
        yield process, socket
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stdout:
            process.stdout.close()


class WireClient:
    """A test's view of a replica: the gateway's connection, with JSON answers."""

    def __init__(self, connection: ReplicaConnection) -> None:
        self.connection = connection
        self.hello = connection.hello

    @classmethod
    async def connect(cls, socket: Path) -> WireClient:
        return cls(await ReplicaConnection.open(f"unix://{socket}", SECRET))

    async def call(
        self, kind: Kind, body: bytes, ctype: str = "application/json"
    ) -> tuple[int, Any]:
        frame = await self.connection.call(kind, ctype, body)
        return frame.status, orjson.loads(frame.body)

    async def close(self) -> None:
        await self.connection.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_the_three_protocols(replica: Any, model_dir: dict[str, Any]) -> None:
    _, socket = replica
    x, expected, columns = model_dir["x"], model_dir["expected"], model_dir["columns"]

    async def scenario() -> None:
        client = await WireClient.connect(socket)
        assert client.hello["model"] == "cancer" and client.hello["version"] == 3
        status, plain = await client.call(
            Kind.PLAIN_PREDICT, orjson.dumps({"instances": x[:3].tolist()})
        )
        assert status == 200 and plain["predictions"] == expected[:3].tolist()
        split = {"dataframe_split": {"columns": columns, "data": x[3:5].tolist()}}
        status, mlflow = await client.call(Kind.MLFLOW_INVOCATIONS, orjson.dumps(split))
        assert status == 200 and mlflow["predictions"] == expected[3:5].tolist()
        v2 = {"inputs": [{"name": "input-0", "shape": [2, 30], "datatype": "FP64",
                          "data": x[5:7].ravel().tolist()}]}  # fmt: skip
        status, out = await client.call(Kind.V2_INFER, orjson.dumps(v2))
        assert status == 200, out
        assert out["model_name"] == "cancer" and out["model_version"] == "3"
        assert out["outputs"][0]["data"] == expected[5:7].tolist()
        status, meta = await client.call(Kind.METADATA, b"")
        assert status == 200 and len(meta["inputs"]) == 30
        await client.close()

    run(scenario())


def test_bad_input_is_a_400_naming_the_problem(replica: Any, model_dir: dict[str, Any]) -> None:
    _, socket = replica
    record = dict(zip(model_dir["columns"], model_dir["x"][0].tolist(), strict=True))
    record["mean radius"] = "abc"

    async def scenario() -> None:
        client = await WireClient.connect(socket)
        status, problem = await client.call(Kind.PLAIN_PREDICT, b"{not json")
        assert status == 400 and "JSON" in problem["detail"]
        status, problem = await client.call(
            Kind.PLAIN_PREDICT, orjson.dumps({"instances": [[1.0] * 29]})
        )
        assert status == 400 and "29" in problem["detail"]
        status, problem = await client.call(
            Kind.MLFLOW_INVOCATIONS, orjson.dumps({"dataframe_records": [record]})
        )
        assert status == 400 and "mean radius" in problem["detail"]
        # the replica keeps serving after bad requests
        status, _ = await client.call(Kind.PLAIN_PREDICT, orjson.dumps({"instances": [[1.0] * 30]}))
        assert status == 200
        await client.close()

    run(scenario())


def test_concurrent_requests_are_batched_and_routed_back(
    replica: Any, model_dir: dict[str, Any]
) -> None:
    _, socket = replica
    x, expected = model_dir["x"], model_dir["expected"]

    async def scenario() -> dict[str, Any]:
        client = await WireClient.connect(socket)
        rows = np.arange(400) % len(x)
        bodies = [orjson.dumps({"instances": [x[i].tolist()]}) for i in rows]
        answers = await asyncio.gather(*(client.call(Kind.PLAIN_PREDICT, b) for b in bodies))
        for i, (status, out) in zip(rows, answers, strict=True):
            assert status == 200 and out["predictions"] == [int(expected[i])]
        status, stats = await client.call(Kind.STATS, b"")
        await client.close()
        return stats

    stats = run(scenario())
    assert stats["requests"] >= 400
    assert stats["batches"] < stats["requests"]  # concurrency turned into batches
    assert max(int(k) for k in stats["batch_sizes"]) > 1


def test_sigterm_stops_cleanly(replica: Any) -> None:
    process, socket = replica
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    assert not socket.exists()


def test_untrusted_pickles_do_not_load(tmp_path: Path, model_dir: dict[str, Any]) -> None:
    import joblib
    import skops.io

    folder = tmp_path / "pickled"
    folder.mkdir()
    joblib.dump(
        skops.io.load(
            model_dir["dir"] / "model.skops",
            trusted=skops.io.get_untrusted_types(file=model_dir["dir"] / "model.skops"),
        ),
        folder / "model.joblib",
    )  # noqa: E501
    spec = _spec(tmp_path, {**model_dir, "dir": folder})
    result = subprocess.run(
        [sys.executable, "-m", "stratus.serving.replica", "--spec", str(spec)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 3
    assert "trusted" in result.stderr and "model.joblib" in result.stderr


def test_a_dying_replica_fails_pending_calls_at_once(replica: Any) -> None:
    process, socket = replica

    async def scenario() -> None:
        connection = await ReplicaConnection.open(f"unix://{socket}", SECRET)
        assert connection.in_flight == 0
        body = orjson.dumps({"instances": [[1.0] * 30]})
        assert (await connection.call(Kind.PLAIN_PREDICT, "application/json", body)).status == 200
        process.kill()
        process.wait(10)
        with pytest.raises(ReplicaGone):
            await connection.call(Kind.PLAIN_PREDICT, "application/json", body, timeout=10)
        assert connection.closed
        await connection.close()

    run(scenario())
