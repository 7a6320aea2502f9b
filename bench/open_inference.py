#!/usr/bin/env python3
"""Open Inference Protocol hot path, in process, on one core: what the replica spends parsing
and rendering a v2 request, and what the gateway spends on a request (routing, headers, the
answer) with a stand-in replica that answers at once; beside the plain protocol, and beside a
floor measured in the same run (orjson parsing and writing the same bodies), so the figures
are ratios a second tree can be compared with.

Cases (the breast-cancer signature, 30 float64 inputs):
  v2 JSON, one [n, 30] FP64 tensor          parse_request + render, n = 1 and 64
  v2 JSON, 30 [n] FP64 tensors (per column)  parse_request + render, n = 1
  v2 binary, one [n, 30] FP64 tensor         binary in and out (when the tree has the extension)
  plain {"instances": [row]}                 parse_request + render, n = 1
  gateway v2 / plain                         one ASGI request through `Gateway` (public
                                             endpoint, stand-in connection), n = 1
Run (from the repository root):
    .venv/bin/python bench/open_inference.py                       # this tree
    PYTHONPATH=/tmp/other/src .venv/bin/python bench/open_inference.py   # another tree
    (e.g. `git archive HEAD src | tar -x -C /tmp/other` for the last commit)
Options: --seconds 0.5 (per timing)  --repeats 7 (timings per case; the median is printed).
It prints microseconds per call and the ratio to the floor of the same size.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import orjson


def timed(fn: Callable[[], Any], seconds: float, repeats: int) -> float:
    """Median seconds per call of `fn`."""
    n = 1
    while True:  # calibrate: enough calls for `seconds`
        start = time.perf_counter()
        for _ in range(n):
            fn()
        took = time.perf_counter() - start
        if took >= seconds / 4:
            break
        n *= 2
    per_run = max(1, int(n * seconds / max(took, 1e-9)))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per_run):
            fn()
        samples.append((time.perf_counter() - start) / per_run)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    import stratus
    from stratus.registry.signatures import Signature, TensorSpec
    from stratus.serving import protocols

    try:
        from stratus.serving import binary_tensors
    except ImportError:
        binary_tensors = None  # type: ignore[assignment]

    print(f"stratus from {stratus.__file__}")
    names = [f"c{i}" for i in range(30)]
    signature = Signature(
        inputs=[TensorSpec(name=n, dtype="float64") for n in names],
        outputs=[TensorSpec(name="label", dtype="int64")],
    )
    rng = np.random.default_rng(0)
    figures: dict[str, float] = {}

    def case(label: str, fn: Callable[[], Any], floor: Callable[[], Any]) -> None:
        spent = timed(fn, args.seconds, args.repeats)
        base = timed(floor, args.seconds, args.repeats)
        figures[label] = spent
        print(f"{label:<44} {spent * 1e6:9.1f} us   floor {base * 1e6:7.1f} us   "
              f"x floor {spent / base:6.2f}", flush=True)  # fmt: skip

    for n in (1, 64):
        rows = rng.normal(size=(n, 30))
        label = np.zeros(n, dtype=np.int64)
        body = orjson.dumps(
            {"inputs": [{"name": "x", "shape": [n, 30], "datatype": "FP64",
                         "data": rows.ravel().tolist()}]}
        )  # fmt: skip

        def v2_json(body: bytes = body, label: np.ndarray = label) -> bytes:
            request = protocols.parse_request("v2", body, None, signature, max_rows=10_000)
            return protocols.render(
                "v2", label, model_name="m", model_version="1", request_id="1",
                signature=signature, request=request,
            )  # fmt: skip

        def floor(body: bytes = body, label: np.ndarray = label) -> bytes:
            orjson.loads(body)
            return orjson.dumps({"outputs": [{"data": label}]}, option=orjson.OPT_SERIALIZE_NUMPY)

        case(f"v2 JSON [{n}, 30] parse+render", v2_json, floor)

        if binary_tensors is not None:
            raw = rows.astype("<f8").tobytes()
            header = orjson.dumps(
                {"inputs": [{"name": "x", "shape": [n, 30], "datatype": "FP64",
                             "parameters": {"binary_data_size": len(raw)}}],
                 "parameters": {"binary_data_output": True}}
            )  # fmt: skip
            binary_body = header + raw
            content_type = binary_tensors.content_type_with_header("", str(len(header)))

            def v2_binary(
                body: bytes = binary_body, ct: str = content_type, label: np.ndarray = label
            ) -> bytes:
                request = protocols.parse_request("v2", body, ct, signature, max_rows=10_000)
                return protocols.render(
                    "v2", label, model_name="m", model_version="1", request_id="1",
                    signature=signature, request=request,
                )  # fmt: skip

            case(f"v2 binary [{n}, 30] parse+render", v2_binary, floor)

    row = rng.normal(size=30)
    per_column = orjson.dumps(
        {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [float(v)]}
                    for c, v in zip(names, row, strict=True)]}
    )  # fmt: skip
    plain = orjson.dumps({"instances": [row.tolist()]})
    one = np.zeros(1, dtype=np.int64)

    def columns() -> bytes:
        request = protocols.parse_request("v2", per_column, None, signature, max_rows=10_000)
        return protocols.render(
            "v2", one, model_name="m", model_version="1", request_id="1",
            signature=signature, request=request,
        )  # fmt: skip

    def plain_case() -> bytes:
        request = protocols.parse_request("plain", plain, None, signature, max_rows=10_000)
        return protocols.render(
            "plain", one, model_name="m", model_version="1", request_id="1",
            signature=signature, request=request,
        )  # fmt: skip

    def floor_columns() -> bytes:
        orjson.loads(per_column)
        return orjson.dumps({"outputs": [{"data": one}]}, option=orjson.OPT_SERIALIZE_NUMPY)

    def floor_plain() -> bytes:
        orjson.loads(plain)
        return orjson.dumps({"predictions": one}, option=orjson.OPT_SERIALIZE_NUMPY)

    case("v2 JSON 30 x [1] parse+render", columns, floor_columns)
    case("plain [1 row] parse+render", plain_case, floor_plain)
    gateway_cases(case, plain, orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": row.tolist()}]}
    ))  # fmt: skip


def gateway_cases(case: Callable[..., None], plain: bytes, v2: bytes) -> None:
    """One request through the gateway's ASGI callable, the replica a stand-in."""
    from prometheus_client import CollectorRegistry

    from stratus.endpoints.gateway import Gateway
    from stratus.endpoints.metrics import InferenceMetrics
    from stratus.endpoints.routing import EndpointRoute, ReplicaLink, RouteTable, VariantRoute
    from stratus.serving.wire import ResponseFrame

    answers = {
        "plain": b'{"predictions":[0]}',
        "v2": b'{"model_name":"e","model_version":"1","id":"1","outputs":[{"name":"label",'
        b'"shape":[1],"datatype":"INT64","data":[0]}]}',
    }

    class Answering:
        closed = False
        in_flight = 0

        async def call(self, kind: Any, content_type: str, body: bytes, timeout: Any) -> Any:
            return ResponseFrame(1, 200, answers["v2" if int(kind) == 0 else "plain"])

    metrics = InferenceMetrics(CollectorRegistry())
    link = ReplicaLink("r", cast(Any, Answering()))
    routes = RouteTable()
    routes.set(EndpointRoute(
        uid="u", project="p", name="e", public=True, phase="ready",
        variants=[VariantRoute("main", 100, False, "m:1", metrics.series("p", "e", "main", "m:1"),
                               [link])],
    ))  # fmt: skip

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    gateway = Gateway(app, routes, cast(Any, object()), max_body_bytes=1 << 20, timeout_seconds=5)
    loop = asyncio.new_event_loop()

    def one(path: str, body: bytes) -> Callable[[], Any]:
        scope = {"type": "http", "method": "POST", "path": path,
                 "headers": [(b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode())]}  # fmt: skip
        message = {"type": "http.request", "body": body, "more_body": False}

        async def receive() -> dict[str, Any]:
            return message

        async def send(_: Any) -> None:
            return None

        async def call() -> None:
            await gateway(scope, receive, send)

        return lambda: loop.run_until_complete(call())

    async def nothing() -> None:
        return None

    def floor() -> None:
        loop.run_until_complete(nothing())

    case("gateway v2 [1, 30]", one("/inference/p/e/v2/models/e/infer", v2), floor)
    case("gateway plain [1 row]", one("/inference/p/e/predict", plain), floor)
    loop.close()


if __name__ == "__main__":
    main()
