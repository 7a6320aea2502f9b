"""The Open Inference Protocol through the gateway, in process: real replicas (`Replica.answer`)
behind stand-in connections. Binary tensors in and out, `Inference-Header-Content-Length` both
ways, server metadata, version routes, `{"error": ...}` bodies on v2 paths only, `model_name`
as called, and a captured binary request read back."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry
from starlette.types import Receive, Scope, Send

from stratus._version import __version__
from stratus.endpoints.gateway import Gateway
from stratus.endpoints.metrics import InferenceMetrics
from stratus.endpoints.routing import EndpointRoute, ReplicaLink, RouteTable, VariantRoute
from stratus.iam.authenticating import Authenticator
from stratus.registry.batches import Batch
from stratus.registry.signatures import Signature, TensorSpec
from stratus.serving.capture import CaptureBuffer, to_rows
from stratus.serving.connections import ReplicaConnection
from stratus.serving.replica import Replica, ReplicaSpec
from stratus.serving.wire import Kind, ResponseFrame

SIGNATURE = Signature(
    inputs=[TensorSpec(name=n, dtype="float64") for n in ("a", "b")],
    outputs=[TensorSpec(name="total", dtype="float64")],
)


class Adder:
    """A model: the sum of each row, plus its version (so answers show who answered)."""

    supports_batching = False

    def __init__(self, version: int) -> None:
        self.version = version

    def predict(self, batch: Batch) -> Any:
        total = batch.matrix().sum(axis=1) + self.version * 100
        return {"total": total, "big": total > 150, "label": np.where(total > 150, "hi", "lo")}


class InProcess:
    """Stands in for a replica connection: hands each frame to a real replica's `answer`."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.closed = False
        self.in_flight = 0
        self.content_types: list[str] = []

    async def call(
        self, kind: Kind, content_type: str, body: bytes, timeout: float | None = None
    ) -> ResponseFrame:
        self.content_types.append(content_type)
        status, payload = await self.replica.answer(kind, content_type, body, 5)
        return ResponseFrame(5, status, payload)


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    body = b'{"detail": "the app"}'
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": body})


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.connections: dict[int, InProcess] = {}
        metrics = InferenceMetrics(CollectorRegistry())
        variants = []
        for version, traffic in ((1, 100), (2, 0)):  # version 2 only when asked for by number
            spec = ReplicaSpec(
                model_dir=tmp_path, flavor="python", model_name="adder", model_version=version,
                endpoint="p/sum", signature=SIGNATURE.model_dump(), secret="s" * 32,
            )  # fmt: skip
            connection = InProcess(Replica(spec, Adder(version)))
            self.connections[version] = connection
            name = f"v{version}"
            link = ReplicaLink(f"r{version}", cast(ReplicaConnection, connection))
            series = metrics.series("p", "sum", name, f"adder:{version}")
            variants.append(VariantRoute(name, traffic, False, f"adder:{version}", series, [link]))
        self.routes = RouteTable()
        self.routes.set(
            EndpointRoute(
                uid="uid", project="p", name="sum", public=True, variants=variants,
                phase="ready", capture=1.0,
            )
        )  # fmt: skip
        self.capture = CaptureBuffer(100)
        self.gateway = Gateway(
            _app,
            self.routes,
            cast(Authenticator, object()),  # a public endpoint: never asked
            max_body_bytes=1 << 20,
            timeout_seconds=5.0,
            capture=self.capture,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.gateway)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                return await http.request(method, path, **kwargs)

        return asyncio.run(send())

    def close(self) -> None:
        for connection in self.connections.values():
            asyncio.run(connection.replica.close())


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path)
    yield made
    made.close()


PREFIX = "/inference/p/sum"
ROOT = {"X-Stratus-Project": "p"}


def binary_request(rows: np.ndarray, **document: Any) -> tuple[bytes, dict[str, str]]:
    """A body as tritonclient's `set_data_from_numpy` makes it: JSON, then the raw tensor."""
    raw = rows.astype("<f4").tobytes()
    tensor = {"name": "x", "shape": list(rows.shape), "datatype": "FP32",
              "parameters": {"binary_data_size": len(raw)}}  # fmt: skip
    header = orjson.dumps({"inputs": [tensor], **document})
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def read_binary(answer: httpx.Response) -> dict[str, Any]:
    """The outputs of a binary answer, as tritonclient's `InferResult.as_numpy` reads them."""
    length = int(answer.headers["inference-header-content-length"])
    header = orjson.loads(answer.content[:length])
    at, arrays = length, {}
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        raw = answer.content[at : at + size]
        at += size
        if output["datatype"] == "BYTES":
            values, i = [], 0
            while i < len(raw):
                (n,) = struct.unpack_from("<I", raw, i)
                values.append(raw[i + 4 : i + 4 + n].decode())
                i += 4 + n
            arrays[output["name"]] = values
        else:
            dtype = {"FP64": "<f8", "BOOL": "?"}[output["datatype"]]
            arrays[output["name"]] = np.frombuffer(raw, dtype=dtype).tolist()
    assert at == len(answer.content)
    return {"header": header, **arrays}


@pytest.mark.parametrize("prefix", [PREFIX, ""], ids=["gateway prefix", "root"])
def test_binary_in_binary_out(setup: Setup, prefix: str) -> None:
    rows = np.array([[1.0, 2.0], [100.0, 60.5]])
    body, headers = binary_request(rows, parameters={"binary_data_output": True})
    answer = setup.request(
        "POST", f"{prefix}/v2/models/sum/infer", content=body, headers={**headers, **ROOT}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["x-stratus-model-version"] == "adder:1"
    out = read_binary(answer)
    assert out["header"]["model_name"] == "sum" and out["header"]["model_version"] == "1"
    assert out["total"] == [103.0, 260.5]
    assert out["big"] == [False, True] and out["label"] == ["lo", "hi"]
    # the replica learnt where the JSON ends from the content type the gateway forwarded
    forwarded = setup.connections[1].content_types[-1]
    assert forwarded.endswith(f"inference-header-content-length={headers[next(iter(headers))]}")


def test_json_outputs_for_a_binary_request_and_outputs_that_choose(setup: Setup) -> None:
    body, headers = binary_request(np.array([[1.0, 2.0]]))
    answer = setup.request("POST", f"{PREFIX}/v2/models/sum/infer", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in answer.headers
    assert answer.json()["outputs"][0] == {
        "name": "total", "shape": [1], "datatype": "FP64", "data": [103.0],
    }  # fmt: skip
    body, headers = binary_request(
        np.array([[1.0, 2.0]]),
        outputs=[{"name": "total", "parameters": {"binary_data": True}}, {"name": "label"}],
    )
    mixed = setup.request("POST", f"{PREFIX}/v2/models/sum/infer", content=body, headers=headers)
    length = int(mixed.headers["inference-header-content-length"])
    header = orjson.loads(mixed.content[:length])
    assert [o["name"] for o in header["outputs"]] == ["total", "label"]
    assert header["outputs"][1]["data"] == ["lo"]
    assert np.frombuffer(mixed.content[length:], "<f8").tolist() == [103.0]


def test_a_captured_binary_request_reads_back_as_rows(setup: Setup) -> None:
    body, headers = binary_request(np.array([[1.0, 2.0], [3.0, 4.0]]),
                                   parameters={"binary_data_output": True})  # fmt: skip
    answer = setup.request("POST", f"{PREFIX}/v2/models/sum/infer", content=body, headers=headers)
    assert answer.status_code == 200
    (record,) = setup.capture.drain()
    rows = to_rows([record], lambda version: SIGNATURE)
    assert rows.skipped == 0
    assert rows.columns["a"] == [1.0, 3.0] and rows.columns["b"] == [2.0, 4.0]
    assert rows.columns["prediction.total"] == [103.0, 107.0]


def test_server_metadata_at_the_root_and_under_the_prefix(setup: Setup) -> None:
    for path in ("/v2", f"{PREFIX}/v2"):
        answer = setup.request("GET", path)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.json() == {
            "name": "stratus", "version": __version__, "extensions": ["binary_tensor_data"],
        }  # fmt: skip
    assert setup.request("POST", "/v2").json() == {
        "error": "POST is not allowed here; use GET or HEAD", "code": "method-not-allowed",
    }  # fmt: skip


def test_version_routes_pick_the_version_asked_for(setup: Setup) -> None:
    body = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]}
    )
    for prefix, headers in ((PREFIX, {}), ("", ROOT)):
        for version in ("1", "2"):
            path = f"{prefix}/v2/models/sum/versions/{version}"
            infer = setup.request("POST", f"{path}/infer", content=body, headers=headers)
            assert infer.status_code == 200, infer.text
            assert infer.json()["model_version"] == version
            assert infer.json()["model_name"] == "sum"
            assert infer.json()["outputs"][0]["data"] == [3.0 + 100 * int(version)]
            meta = setup.request("GET", path, headers=headers)
            assert meta.json()["name"] == "sum" and meta.json()["versions"] == [version]
            assert [i["name"] for i in meta.json()["inputs"]] == ["a", "b"]
            ready = setup.request("GET", f"{path}/ready", headers=headers)
            assert ready.status_code == 200 and ready.json()["version"] == version
    # without a version, the traffic split decides: version 2 has none
    plain = setup.request("POST", f"{PREFIX}/v2/models/sum/infer", content=body)
    assert plain.json()["model_version"] == "1"
    unknown = setup.request("POST", f"{PREFIX}/v2/models/sum/versions/7/infer", content=body)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/json"
    assert unknown.json()["error"] == (
        "endpoint 'sum' serves no version '7' (versions served: 1, 2)"
    )
    for path in ("versions/7", "versions/7/ready"):
        assert setup.request("GET", f"{PREFIX}/v2/models/sum/{path}").status_code == 404


def test_errors_on_v2_paths_are_the_protocols_and_elsewhere_problems(setup: Setup) -> None:
    bad = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT8", "data": [1, 1000]}]}
    )
    for prefix, headers in ((PREFIX, {}), ("", ROOT)):
        answer = setup.request(
            "POST", f"{prefix}/v2/models/sum/infer", content=bad, headers=headers
        )
        assert answer.status_code == 400
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"] == (
            "input 'x': datatype INT8 needs integers from -128 to 127, got 1000 in row 0"
        )
    short_body, headers = binary_request(np.array([[1.0, 2.0]]))
    cut = setup.request("POST", f"{PREFIX}/v2/models/sum/infer", content=short_body[:-4],
                        headers=headers)  # fmt: skip
    assert cut.status_code == 400 and "input 'x': binary_data_size is 8 bytes" in cut.text
    header = {"Inference-Header-Content-Length": "lots"}
    nonsense = setup.request("POST", f"{PREFIX}/v2/models/sum/infer", content=b"{}", headers=header)
    assert nonsense.status_code == 400
    assert "Inference-Header-Content-Length header must be" in nonsense.json()["error"]
    missing = setup.request("GET", f"{PREFIX}/v2/models/other")
    assert missing.status_code == 404 and "use /v2/models/sum" in missing.json()["error"]
    no_project = setup.request("GET", "/v2/models/sum")
    assert no_project.status_code == 400 and "X-Stratus-Project" in no_project.json()["error"]
    elsewhere = setup.request("POST", f"{PREFIX}/predict", json={"instances": [[1, "x"]]})
    assert elsewhere.status_code == 400
    assert elsewhere.headers["content-type"] == "application/problem+json"
    assert "detail" in elsewhere.json() and "error" not in elsewhere.json()
    config = setup.request("GET", f"{PREFIX}/v2/models/sum/config")
    assert config.status_code == 404 and "no inference route" in config.json()["error"]


def test_the_sdk_reads_a_v2_error_as_the_same_error(setup: Setup) -> None:
    from stratus.client._base import error_of
    from stratus.core.errors import InvalidInput, NotFound

    body = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64",
                                     "data": [1, 2, 3]}]})  # fmt: skip
    refused = error_of(setup.request("POST", f"{PREFIX}/v2/models/sum/infer", content=body))
    assert type(refused) is InvalidInput
    assert refused.detail.startswith("input 'x': shape [1, 3] does not fit")
    gone = error_of(setup.request("GET", f"{PREFIX}/v2/models/sum/versions/3"))
    assert type(gone) is NotFound and "serves no version '3'" in gone.detail
