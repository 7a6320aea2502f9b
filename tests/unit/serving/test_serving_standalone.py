"""The standalone replica: the same `Replica` behind plain HTTP, on the gateway's
endpoint-relative paths, with health paths for probes and the requests in flight on /metrics;
and a start that refuses an untrusted pickle as a platform replica does."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from stratus.registry.batches import Batch
from stratus.serving.replica import Replica
from stratus.serving.standalone import StandaloneApp, main, replica_spec
from stratus.serving.standalone_spec import StandaloneSpec

SPEC = StandaloneSpec(model_name="adder", model_version=3, flavor="python")


class Adder:
    """Each row's sum."""

    supports_batching = True

    def predict(self, batch: Batch) -> Any:
        return np.asarray(batch.matrix()).sum(axis=1)


def served(
    tmp_path: Path, check: Callable[[httpx.AsyncClient], Awaitable[None]], **options: Any
) -> None:
    async def run() -> None:
        spec = replica_spec(SPEC, tmp_path, name=options.pop("name", None))
        replica = Replica(spec, Adder())
        app = StandaloneApp(replica, **options)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://replica") as c:
                await check(c)
        finally:
            await replica.close()

    asyncio.run(run())


def test_every_protocol_answers_on_the_gateways_paths(tmp_path: Path) -> None:
    async def check(c: httpx.AsyncClient) -> None:
        plain = await c.post("/predict", json={"instances": [[1, 2], [3, 4]]})
        assert plain.status_code == 200, plain.text
        assert plain.json() == {"predictions": [3, 7]}
        assert plain.headers["x-stratus-model-version"] == "3"
        assert plain.headers["x-request-id"]

        mlflow = await c.post("/invocations", json={"inputs": [[1, 1]]})
        assert mlflow.status_code == 200, mlflow.text
        assert mlflow.json() == {"predictions": [2]}

        v2 = await c.post(
            "/v2/models/adder/infer",
            json={
                "id": "r1",
                "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [5, 6]}],
            },
        )
        assert v2.status_code == 200, v2.text
        assert v2.json()["id"] == "r1"
        assert v2.json()["model_version"] == "3"
        assert v2.json()["outputs"][0]["data"] == [11]
        pinned = await c.post(
            "/v2/models/adder/versions/3/infer",
            json={"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1]}]},
        )
        assert pinned.status_code == 200, pinned.text

        metadata = await c.get("/v2/models/adder")
        assert metadata.status_code == 200
        assert metadata.json()["name"] == "adder"

    served(tmp_path, check)


def test_probes_and_metrics(tmp_path: Path) -> None:
    async def check(c: httpx.AsyncClient) -> None:
        assert (await c.get("/v2/health/live")).json() == {"live": True}
        ready = await c.get("/v2/health/ready")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        assert (await c.get("/v2")).json()["name"] == "stratus"
        await c.post("/predict", json={"instances": [[1, 2]]})
        await c.post("/predict", json={"instances": "not rows"})
        metrics = (await c.get("/metrics")).text
        assert "stratus_inference_in_flight_requests 0.0" in metrics
        assert 'stratus_inference_requests_total{code="200"} 1.0' in metrics
        assert 'stratus_inference_requests_total{code="400"} 1.0' in metrics

    served(tmp_path, check)


def test_the_served_name_is_the_endpoints_when_given(tmp_path: Path) -> None:
    async def check(c: httpx.AsyncClient) -> None:
        ok = await c.post(
            "/v2/models/adder-api/infer",
            json={"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1]}]},
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["model_name"] == "adder-api"
        other = await c.post("/v2/models/adder/infer", json={})
        assert other.status_code == 404
        assert "use /v2/models/adder-api" in other.json()["error"]  # a v2 error body

    served(tmp_path, check, name="adder-api")


def test_wrong_paths_methods_and_sizes_are_answered_as_the_gateway_would(
    tmp_path: Path,
) -> None:
    async def check(c: httpx.AsyncClient) -> None:
        missing = await c.get("/nothing")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert "/predict" in missing.json()["detail"]
        wrong_method = await c.get("/predict")
        assert wrong_method.status_code == 405
        other_version = await c.post("/v2/models/adder/versions/2/infer", json={})
        assert other_version.status_code == 404
        large = await c.post("/predict", content=b"x" * 2000)
        assert large.status_code == 413
        bad = await c.post("/predict", json={"instances": [["a", "b"]]})
        assert bad.status_code == 400
        assert bad.headers["content-type"] == "application/problem+json"

    served(tmp_path, check, max_body_bytes=1000)


@pytest.fixture
def root_logging() -> Iterator[None]:
    """`main` sets up logging as a process would: put the root logger back after it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_an_untrusted_pickle_does_not_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.joblib").write_bytes(b"never read: the flavor refuses it first")
    spec = tmp_path / "serving.json"
    spec.write_text(
        StandaloneSpec(model_name="churn", model_version=2, flavor="sklearn").model_dump_json()
    )
    code = main(["--spec", str(spec), "--model-dir", str(model), "--port", "0"])
    assert code == 3
    err = capsys.readouterr().err
    assert "cannot start" in err
    assert "'model.joblib'" in err
    assert "stratus models trust churn:2" in err


@pytest.mark.usefixtures("root_logging")
def test_a_broken_spec_does_not_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "serving.json"
    spec.write_text(json.dumps({"model_name": "m"}))
    assert main(["--spec", str(spec), "--model-dir", str(tmp_path), "--port", "0"]) == 3
    assert "model_version" in capsys.readouterr().err
