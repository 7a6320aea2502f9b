"""The replica runtime on its own, over HTTP: what an image made by `stratus export dockerfile`
runs, with no control plane beside it.

`python -m stratus.serving.standalone --spec serving.json --model-dir DIR --host H --port P`
loads the version as a platform replica does (`replica.load`: the same flavor, the same trust
rule, the same signature) and answers with the same `Replica` (parsing, adaptive batching,
rendering). Only the transport differs: plain HTTP from uvicorn in place of the gateway's
framed wire, so there is no connection secret. The paths are the endpoint-relative ones of the
gateway (`/predict`, `/invocations`, `/v2/models/{name}/infer`, ...), with `/v2/health/live`
and `/v2/health/ready` for probes and `/metrics` for Prometheus (what a Kubernetes autoscaler
reads the requests in flight from). The port opens only once the model is loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import re
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from stratus.core import heap
from stratus.core.errors import (
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    StratusError,
)
from stratus.core.ids import new_request_id
from stratus.serving import binary_tensors
from stratus.serving.protocols import v2_error, v2_server_metadata
from stratus.serving.replica import Replica, ReplicaSpec, load
from stratus.serving.request_bodies import read_body
from stratus.serving.standalone_spec import StandaloneSpec
from stratus.serving.wire import Kind

log = logging.getLogger("stratus.standalone")

DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 32 << 20  # as the platform's gateway (serving.max_request_bytes)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_JSON = b"application/json"
_PROBLEM = b"application/problem+json"
_OCTETS = binary_tensors.BINARY_CONTENT_TYPE.encode()
_INFERENCE_HEADER = binary_tensors.HEADER.lower().encode()
_INFER = ("POST",)
_READ = ("GET", "HEAD")
_V2_KINDS = (Kind.V2_INFER, Kind.METADATA)


class _Route(NamedTuple):
    """What a path asks for: a kind of request for the replica, or an answer of this server."""

    methods: tuple[str, ...]
    kind: Kind | None = None
    answer: str = ""  # live, ready, server, metrics


def route(path: str, name: str, version: str) -> _Route:
    """What `path` asks of a replica that serves `name`, version `version`.

    Raises:
        NotFound: no such path, or a v2 path naming another model or version.
    """
    if path == "/predict":
        return _Route(_INFER, Kind.PLAIN_PREDICT)
    if path == "/invocations":
        return _Route(_INFER, Kind.MLFLOW_INVOCATIONS)
    if path == "/metrics":
        return _Route(_READ, answer="metrics")
    if path in ("/v2/health/live", "/healthz"):
        return _Route(_READ, answer="live")
    if path in ("/v2/health/ready", "/readyz"):
        return _Route(_READ, answer="ready")
    if path in ("/v2", "/v2/"):
        return _Route(_READ, answer="server")
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[:2] == ["v2", "models"]:
        model, tail = parts[2], parts[3:]
        if model != name:
            raise NotFound(f"this replica serves the model {name!r}: use /v2/models/{name}")
        if len(tail) >= 2 and tail[0] == "versions":
            if tail[1] != version:
                raise NotFound(f"this replica serves version {version} of {name!r}, not {tail[1]}")
            tail = tail[2:]
        if tail == ["infer"]:
            return _Route(_INFER, Kind.V2_INFER)
        if not tail:
            return _Route(_READ, Kind.METADATA)
        if tail == ["ready"]:
            return _Route(_READ, answer="ready")
    raise NotFound(
        f"no route {path!r}: use /predict, /invocations, /v2/models/{name}/infer, "
        "/v2/health/ready or /metrics"
    )


class _Metrics:
    """What /metrics shows, named as the platform's gateway names them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "stratus_inference_requests",
            "Inference requests answered, by HTTP status code.",
            ["code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stratus_inference_request_duration_seconds",
            "Time from a request's arrival to its answer.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "stratus_inference_in_flight_requests",
            "Inference requests being answered now (what an autoscaler targets per replica).",
            registry=self.registry,
        )


class StandaloneApp:
    """An ASGI app in front of one `Replica`."""

    def __init__(self, replica: Replica, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.replica = replica
        self.name = replica.served_name
        self.version = str(replica.spec.model_version)
        self.max_body_bytes = max_body_bytes
        self.metrics = _Metrics()
        self._ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # uvicorn runs with lifespan off; websockets: no
            return
        path: str = scope["path"]
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else new_request_id()
        try:
            await self._handle(scope, receive, send, headers, request_id)
        except StratusError as exc:
            await self._respond(send, exc.status, *_error(exc, path), request_id)
        except Exception:  # a bug in Stratus: a problem document for the caller, the rest logged
            log.exception("request %s to %s failed", request_id, path)
            problem = StratusError(f"the replica failed on this request (request id {request_id})")
            await self._respond(send, 500, *_error(problem, path), request_id)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        request_id: str,
    ) -> None:
        op = route(scope["path"], self.name, self.version)
        method: str = scope["method"]
        if method not in op.methods:
            raise MethodNotAllowed(f"{method} is not allowed here; use {' or '.join(op.methods)}")
        if op.kind is None:
            await self._answer_here(op.answer, send, request_id)
            return
        kind = op.kind
        if kind is Kind.METADATA:
            status, body = await self.replica.answer(kind, "application/json", b"")
            await self._respond(send, status, body, _JSON, request_id)
            return
        content = await self._body(receive, headers)
        content_type = headers.get(b"content-type", b"application/json").decode("latin-1")
        header_length = headers.get(_INFERENCE_HEADER)
        if kind is Kind.V2_INFER and header_length is not None:  # binary tensors follow the JSON
            content_type = binary_tensors.content_type_with_header(
                content_type, header_length.decode("latin-1")
            )
        started = time.perf_counter()
        metrics = self.metrics
        metrics.in_flight.inc()
        try:
            status, answer = await self.replica.answer(kind, content_type, content, next(self._ids))
        finally:
            metrics.in_flight.dec()
        metrics.latency.observe(time.perf_counter() - started)
        metrics.requests.labels(str(status)).inc()
        out, json_length = _JSON, None
        if status >= 400:
            out = _JSON if kind in _V2_KINDS else _PROBLEM
        elif kind is Kind.V2_INFER and answer[:1] == b"\x00":  # binary outputs, framed
            unframed = binary_tensors.unframe_answer(answer)
            if unframed is not None:
                (answer, json_length), out = unframed, _OCTETS
        await self._respond(send, status, answer, out, request_id, json_length)

    async def _answer_here(self, what: str, send: Send, request_id: str) -> None:
        if what == "metrics":
            body = generate_latest(self.metrics.registry)
            await self._respond(send, 200, body, CONTENT_TYPE_LATEST.encode(), request_id)
            return
        document: dict[str, Any]
        if what == "live":
            document = {"live": True}
        elif what == "ready":  # the port opens once the model is loaded: listening is ready
            document = {"name": self.name, "version": self.version, "ready": True}
        else:
            document = v2_server_metadata()
        await self._respond(send, 200, orjson.dumps(document), _JSON, request_id)

    async def _body(self, receive: Receive, headers: dict[bytes, bytes]) -> bytes:
        return await read_body(receive, headers, self.max_body_bytes, "--max-body-bytes")

    async def _respond(
        self,
        send: Send,
        status: int,
        body: bytes,
        content_type: bytes,
        request_id: str,
        json_length: int | None = None,
    ) -> None:
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
            (b"x-stratus-model-version", self.version.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"cache-control", b"no-store"),
        ]
        if json_length is not None:  # a v2 answer with binary outputs: where its JSON ends
            headers.append((_INFERENCE_HEADER, str(json_length).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _error(exc: StratusError, path: str) -> tuple[bytes, bytes]:
    """`{"error": ...}` on v2 paths (what Triton's and KServe's clients read), problem+json
    elsewhere: as the gateway answers."""
    if path == "/v2" or path.startswith("/v2/"):
        return v2_error(exc), _JSON
    return orjson.dumps(exc.to_problem(instance=path)), _PROBLEM


def replica_spec(
    spec: StandaloneSpec,
    model_dir: Path,
    *,
    name: str | None = None,
    max_batch_size: int = 64,
    max_wait_ms: float = 0.0,
    passthrough: list[str] | None = None,
) -> ReplicaSpec:
    """The spec a platform replica of this version would get, minus the gateway: no address
    and a secret nobody is told (this process never listens on the wire)."""
    return ReplicaSpec(
        model_dir=model_dir,
        flavor=spec.flavor,
        trusted=spec.trusted,
        signature=spec.signature,
        model_name=spec.model_name,
        model_version=spec.model_version,
        endpoint=name or "",
        secret=secrets.token_urlsafe(32),
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        passthrough=passthrough or [],
    )


async def serve(
    spec: ReplicaSpec,
    model: Any,
    *,
    host: str,
    port: int,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    access_log: bool = False,
) -> None:
    """Answer HTTP on host:port until SIGTERM or SIGINT; requests in flight are answered
    before the batcher stops."""
    import uvicorn  # the transport: only this process runs a server

    replica = Replica(spec, model)
    config = uvicorn.Config(
        StandaloneApp(replica, max_body_bytes=max_body_bytes),
        host=host,
        port=port,
        lifespan="off",
        log_config=None,
        access_log=access_log,
        server_header=False,
    )
    log.info(
        "replica of %s:%s serving %r on http://%s:%d",
        spec.model_name, spec.model_version, replica.served_name, host, port,
    )  # fmt: skip
    try:
        await uvicorn.Server(config).serve()
    finally:
        await replica.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="A Stratus model replica on its own, answering HTTP (no control plane)."
    )
    parser.add_argument("--spec", type=Path, required=True, help="the version's serving.json")
    parser.add_argument("--model-dir", type=Path, required=True, help="the version's files")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port")
    parser.add_argument("--name", help="the name callers use in v2 paths (default: the model's)")
    parser.add_argument("--max-batch-size", type=int, default=64, help="rows per batch")
    parser.add_argument("--max-wait-ms", type=float, default=0.0, help="wait for company")
    parser.add_argument(
        "--passthrough",
        action="append",
        default=[],
        metavar="COLUMN",
        help="a column requests may carry that the model never sees (repeat for more)",
    )
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    try:
        standalone = StandaloneSpec.model_validate_json(args.spec.read_bytes())
        spec = replica_spec(
            standalone,
            args.model_dir,
            name=args.name,
            max_batch_size=args.max_batch_size,
            max_wait_ms=args.max_wait_ms,
            passthrough=args.passthrough,
        )
        model = load(spec)
    except (OSError, ValidationError) as exc:
        print(f"replica: cannot start: {exc}", file=sys.stderr, flush=True)
        return 3
    except PermissionDenied as exc:
        print(
            f"replica: cannot start: {exc.detail} (`stratus models trust "
            f"{standalone.model_name}:{standalone.model_version}`, then export it again)",
            file=sys.stderr,
            flush=True,
        )
        return 3
    except StratusError as exc:
        print(f"replica: cannot start: {exc.detail}", file=sys.stderr, flush=True)
        return 3
    heap.freeze()  # the model, out of the collector's sight (core/heap.py)
    # uvicorn stops on SIGTERM/SIGINT, then raises the signal again with the handlers it
    # found: these, so that the batcher closes and the process exits 0 (a clean stop)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: None)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass
    asyncio.run(
        serve(
            spec,
            model,
            host=args.host,
            port=args.port,
            max_body_bytes=args.max_body_bytes,
            access_log=args.access_log,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
