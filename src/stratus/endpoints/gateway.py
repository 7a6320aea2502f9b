"""The inference gateway: a raw ASGI fast path in front of the FastAPI app.

`/inference/{project}/{endpoint}/…` and `/v2…` never reach FastAPI: the gateway parses the
path, authenticates from the credential cache (a database lookup only on a miss, off the event
loop), picks a replica (`routing.py`; of the registry version a v2 `/versions/{v}/` path names)
and forwards the body untouched over the replica's multiplexed unix-socket connection (a
binary v2 body's `Inference-Header-Content-Length` rides in the content type). A connection
that breaks mid-request is retried once on another replica. Every answer carries
`X-Request-Id`, `X-Stratus-Model-Version` and `X-Stratus-Variant`; any failure, a bug included,
is a problem+json answer, or `{"error": ...}` on v2 paths as that protocol wants (a bug's
traceback goes to the log only). When the endpoint captures its traffic, an answered request
is appended to the capture buffer (references to the bodies already held; parsing and writing
happen on the monitoring service's writer thread). Everything else goes to the wrapped app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from stratus.core.errors import (
    GatewayTimeout,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    StratusError,
    Unauthenticated,
)
from stratus.core.ids import new_request_id
from stratus.endpoints.routing import EndpointRoute, ReplicaLink, RouteTable, VariantRoute
from stratus.iam.authenticating import Authenticator
from stratus.iam.errors import no_credential, project_not_found
from stratus.iam.principals import Principal
from stratus.iam.roles import Permission
from stratus.iam.throttling import Throttle
from stratus.serving import binary_tensors
from stratus.serving.capture import CaptureBuffer, CaptureRecord
from stratus.serving.connections import ReplicaGone
from stratus.serving.protocols import ProtocolName, v2_error, v2_server_metadata
from stratus.serving.request_bodies import read_body
from stratus.serving.wire import Kind

log = logging.getLogger("stratus.gateway")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_JSON = b"application/json"
_PROBLEM = b"application/problem+json"
_OCTETS = binary_tensors.BINARY_CONTENT_TYPE.encode()
_INFERENCE_HEADER = binary_tensors.HEADER.lower().encode()
_SERVER_METADATA = orjson.dumps(v2_server_metadata())
_NOSNIFF = (b"x-content-type-options", b"nosniff")  # answers are data, never a page
_NO_STORE = (b"cache-control", b"no-store")  # nor kept by a cache between caller and gateway
_INFER = ("POST",)
_READ = ("GET", "HEAD")


class _Op(NamedTuple):
    """What an endpoint-relative path asks for."""

    kind: Kind | None  # the wire kind; None: the gateway answers (readiness, server metadata)
    methods: tuple[str, ...]  # the methods allowed
    version: str | None = None  # v2 …/versions/{v}/…: the registry version asked for
    server: bool = False  # v2 `GET …/v2`: the server's metadata


_PREDICT = _Op(Kind.PLAIN_PREDICT, _INFER)
_INVOCATIONS = _Op(Kind.MLFLOW_INVOCATIONS, _INFER)
_READY = _Op(None, _READ)
_SERVER = _Op(None, _READ, server=True)
# v2 paths under /v2/models/{endpoint}[/versions/{v}]
_MODEL_OPS = {
    ("infer",): _Op(Kind.V2_INFER, _INFER),
    (): _Op(Kind.METADATA, _READ),
    ("ready",): _READY,
}
# the protocol of each kind of inference request, for data capture
_PROTOCOL: dict[Kind, ProtocolName] = {
    Kind.PLAIN_PREDICT: "plain",
    Kind.MLFLOW_INVOCATIONS: "mlflow",
    Kind.V2_INFER: "v2",
}
_V2_KINDS = (Kind.V2_INFER, Kind.METADATA)  # whose errors are written as v2 ones


def _operation(rest: list[str], endpoint: str) -> _Op:
    """What an endpoint-relative path asks for. Raises NotFound for any other path."""
    if rest == ["predict"]:
        return _PREDICT
    if rest == ["invocations"]:
        return _INVOCATIONS
    if len(rest) >= 3 and rest[0] == "v2" and rest[1] == "models":
        model, tail = rest[2], rest[3:]
        if model != endpoint:
            raise NotFound(
                f"this endpoint serves the model {endpoint!r}: use /v2/models/{endpoint}"
            )
        version = None
        if len(tail) >= 2 and tail[0] == "versions":  # one registry version of those served
            version, tail = tail[1], tail[2:]
        op = _MODEL_OPS.get(tuple(tail))
        if op is not None:
            return op if version is None else op._replace(version=version)
    if rest in (["v2", "health", "ready"], ["v2", "health", "live"]):
        return _READY
    if rest == ["v2"]:
        return _SERVER
    raise NotFound(f"no inference route {'/'.join(rest)!r}: use predict, invocations or v2")


class Gateway:
    def __init__(
        self,
        app: ASGIApp,
        routes: RouteTable,
        authenticator: Authenticator,
        *,
        max_body_bytes: int,
        timeout_seconds: float,
        capture: CaptureBuffer | None = None,
        cold_start_queue: int = 100,
        cold_start_timeout_seconds: float = 30.0,
        cold_start_wait: Any = None,
        wake: Callable[[], None] = lambda: None,
        throttle: Throttle | None = None,
    ) -> None:
        self.app = app
        self.throttle = throttle
        self.cold_start_queue = cold_start_queue
        self.cold_start_timeout = cold_start_timeout_seconds
        self.cold_start_wait = cold_start_wait  # a histogram (project, endpoint), when measured
        self.wake = wake  # the endpoint controller: a variant at zero has a request
        self.capture = capture
        self.routes = routes
        self.authenticator = authenticator
        self.max_body_bytes = max_body_bytes
        self.timeout = timeout_seconds
        self._shadow_tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/inference/") or path.startswith("/v2/") or path == "/v2":
                await self.handle(scope, receive, send)
                return
        await self.app(scope, receive, send)

    # --- one request -------------------------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id")
        request_id = (
            incoming.decode("latin-1")
            if incoming is not None and _SAFE_ID.match(incoming.decode("latin-1"))
            else new_request_id()
        )
        answered = False

        async def tracked(message: Any) -> None:
            nonlocal answered
            answered = True
            await send(message)

        try:
            await self._serve(scope, receive, tracked, headers, request_id, started)
        except StratusError as exc:
            if not answered:
                await _respond(
                    send,
                    exc.status,
                    *_error(exc, scope["path"]),
                    request_id,
                    retry_after=exc.headers().get("retry-after"),
                )
        except Exception:  # a bug in Stratus: the caller gets a problem document, the log the rest
            log.exception("request %s to %s failed", request_id, scope["path"])
            if not answered:
                problem = StratusError(
                    f"the gateway failed on this request; quote request id {request_id} "
                    "to the platform's operators"
                )
                await _respond(send, 500, *_error(problem, scope["path"]), request_id)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        request_id: str,
        started: float,
    ) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith("/v2/") or path == "/v2":
            parts = path[1:].split("/")
            if parts[:2] == ["v2", "health"] and parts[2:] in (["live"], ["ready"]):
                _allow(method, _READ)
                await _respond(send, 200, b'{"live":true}', _JSON, request_id)
                return
            if parts == ["v2"]:  # the server's metadata: what answers, no endpoint's data
                _allow(method, _READ)
                await _respond(send, 200, _SERVER_METADATA, _JSON, request_id)
                return
            if len(parts) < 3 or parts[1] != "models":
                raise NotFound(f"no inference route {path!r}")
            endpoint = parts[2]
            principal = await self._principal(headers, required=False)
            project = _root_project(headers, principal, endpoint)
        else:
            parts = path[len("/inference/") :].split("/")
            if len(parts) < 3:
                raise NotFound(
                    "inference paths are /inference/{project}/{endpoint}/predict, "
                    "…/invocations or …/v2/models/{endpoint}/infer"
                )
            project, endpoint, parts = parts[0], parts[1], parts[2:]
            principal = None
        op = _operation(parts, endpoint)
        route = self.routes.get(project, endpoint)
        if route is None or not route.public:
            if principal is None:
                principal = await self._principal(headers, required=True)
            assert principal is not None
            if not principal.can_see(project):
                raise project_not_found(project)
            if not principal.can(Permission.ENDPOINT_INVOKE, project):
                raise PermissionDenied(
                    f"your role {principal.role_in(project)} in project {project!r} "
                    "does not allow calling endpoints"
                )
        if route is None:
            raise NotFound(f"endpoint {endpoint!r} not found in project {project!r}")
        if route.networks:
            client = scope.get("client")
            source = client[0] if client else None
            if not route.admits(source):
                raise PermissionDenied(
                    f"endpoint {endpoint!r} does not accept requests from "
                    f"{source or 'your address'} (its network rules: `stratus endpoints show`)"
                )
        throttle = self.throttle
        if throttle is not None:
            if route.rate_limit is not None:
                throttle.endpoint(project, endpoint, route.rate_limit)
            if principal is not None:
                throttle.caller(principal, project, endpoint)
        _allow(method, op.methods)
        version = op.version
        if version is not None and version not in route.versions:
            served = ", ".join(route.versions) or "none yet"
            raise NotFound(
                f"endpoint {endpoint!r} serves no version {version!r} (versions served: {served})"
            )
        kind = op.kind
        if kind is None:
            if op.server:
                await _respond(send, 200, _SERVER_METADATA, _JSON, request_id)
                return
            ready = route.fallback(avoid=None, version=version) is not None
            answer: dict[str, Any] = {"name": endpoint, "ready": ready, "phase": route.phase}
            if version is not None:
                answer["version"] = version
            await _respond(send, 200 if ready else 503, orjson.dumps(answer), _JSON, request_id)
            return
        body = await self._body(receive, headers) if kind is not Kind.METADATA else b""
        content_type = headers.get(b"content-type", b"application/json").decode("latin-1")
        if kind is Kind.V2_INFER:
            header_length = headers.get(_INFERENCE_HEADER)
            if header_length is not None:  # binary tensors follow the JSON: tell the replica
                content_type = binary_tensors.content_type_with_header(
                    content_type, header_length.decode("latin-1")
                )
        await self._forward(route, kind, content_type, body, send, request_id, started, version)

    async def _forward(
        self,
        route: EndpointRoute,
        kind: Kind,
        content_type: str,
        body: bytes,
        send: Send,
        request_id: str,
        started: float,
        version: str | None = None,
    ) -> None:
        picked = route.pick() if version is None else route.fallback(avoid=None, version=version)
        cold = False
        if picked is None and route.cold_start and version is None:
            route, picked = await self._from_zero(route)
            cold = True
        if picked is None:
            for waiting in route.live:  # what wakes a variant at zero replicas
                waiting.series.arrived += 1
            which = "" if version is None else f" of version {version}"
            raise ServiceUnavailable(
                f"endpoint {route.name!r} has no ready replica{which} ({route.phase}); "
                "retry shortly"
            )
        variant, link = picked
        if route.shadows and kind is not Kind.METADATA:
            self._shadow(route, kind, content_type, body)
        series = variant.series
        series.in_flight.inc()
        series.active += 1
        series.arrived += 1
        try:
            try:
                frame = await link.connection.call(kind, content_type, body, self.timeout)
            except ReplicaGone:
                retry = variant.pick(avoid=link) or None
                again = (
                    (variant, retry)
                    if retry is not None
                    else route.fallback(avoid=link, version=version)
                )
                if again is None:
                    variant.series.observe(503, time.perf_counter() - started)
                    raise ServiceUnavailable(
                        f"the replica of endpoint {route.name!r} went away and no other "
                        "is ready; retry shortly"
                    ) from None
                variant, link = again
                log.info("replica gone; retrying request %s on %s", request_id, link.id)
                frame = await link.connection.call(kind, content_type, body, self.timeout)
        except ReplicaGone:
            variant.series.observe(503, time.perf_counter() - started)
            raise ServiceUnavailable(
                f"the replicas of endpoint {route.name!r} went away; retry shortly"
            ) from None
        except TimeoutError:
            variant.series.observe(504, time.perf_counter() - started)
            raise GatewayTimeout(
                f"endpoint {route.name!r} did not answer within {self.timeout:g} s"
            ) from None
        finally:
            series.in_flight.dec()
            series.active -= 1
        answer, content_type_out, header_length = frame.body, _JSON, None
        if frame.status >= 400:
            content_type_out = _JSON if kind in _V2_KINDS else _PROBLEM
        elif answer[:1] == b"\x00" and kind is Kind.V2_INFER:  # binary outputs, framed
            unframed = binary_tensors.unframe_answer(answer)
            if unframed is not None:
                (answer, header_length), content_type_out = unframed, _OCTETS
        await _respond(
            send, frame.status, answer, content_type_out, request_id, variant, header_length, cold
        )
        seconds = time.perf_counter() - started
        variant.series.observe(frame.status, seconds)
        sample = route.capture
        if (
            sample
            and frame.status < 400
            and self.capture is not None
            and kind in _PROTOCOL
            and (sample >= 1.0 or random.random() < sample)
        ):
            self.capture.add(
                CaptureRecord(
                    time.time(),
                    request_id,
                    route.uid,
                    variant.name,
                    variant.model_version,
                    _PROTOCOL[kind],
                    content_type,
                    body,
                    frame.body,
                    seconds * 1000.0,
                )
            )

    async def _from_zero(
        self, route: EndpointRoute
    ) -> tuple[EndpointRoute, tuple[VariantRoute, ReplicaLink] | None]:
        """Hold a request to an endpoint at zero replicas until one is ready: a bounded queue
        and a deadline; 503 (with Retry-After) when either is passed, never a broken
        connection."""
        project, name = route.project, route.name
        if self.routes.waiting(project, name) >= self.cold_start_queue:
            raise ServiceUnavailable(
                f"endpoint {name!r} is starting from zero replicas and "
                f"{self.cold_start_queue} requests already wait; retry shortly"
            )
        counted = route.live[0] if route.live else None
        for variant in route.live:
            variant.series.arrived += 1
        if counted is not None:
            counted.series.active += 1  # waiting counts as in flight: the demand to scale to
        self.wake()
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + self.cold_start_timeout
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise ServiceUnavailable(
                        f"endpoint {name!r} is starting from zero replicas: none was ready "
                        f"within {self.cold_start_timeout:g} s; retry shortly"
                    )
                with contextlib.suppress(TimeoutError):
                    await self.routes.changed(project, name, left)
                now = self.routes.get(project, name)
                if now is None or now.uid != route.uid:
                    raise ServiceUnavailable(
                        f"endpoint {name!r} changed while the request waited; retry"
                    )
                route = now
                picked = route.pick()
                if picked is not None:
                    return route, picked
        finally:
            if counted is not None:
                counted.series.active -= 1
            if self.cold_start_wait is not None:
                self.cold_start_wait.labels(project, name).observe(loop.time() - began)

    def _shadow(self, route: EndpointRoute, kind: Kind, content_type: str, body: bytes) -> None:
        for variant in route.shadows:
            link = variant.pick()
            if link is None:  # counted, so a shadow that misses copies shows on /metrics
                variant.series.shadow_skipped("no_ready_replica")
                variant.series.arrived += 1  # wakes it if it autoscales from zero
                log.debug(
                    "endpoint %s/%s: no ready replica of shadow %s; copy skipped",
                    route.project, route.name, variant.name,
                )  # fmt: skip
                continue
            task = asyncio.create_task(self._mirror(variant, link, kind, content_type, body))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)

    async def _mirror(
        self, variant: VariantRoute, link: ReplicaLink, kind: Kind, content_type: str, body: bytes
    ) -> None:
        """A shadow's copy of a request: its answer is dropped, its metrics kept."""
        started = time.perf_counter()
        try:
            frame = await link.connection.call(kind, content_type, body, self.timeout)
            status = frame.status
        except (ReplicaGone, TimeoutError):
            status = 503
        except Exception:  # a bug: logged here, since nobody awaits this task
            log.exception("the shadow copy to %s failed", link.id)
            status = 500
        variant.series.observe(status, time.perf_counter() - started)

    async def _principal(self, headers: dict[bytes, bytes], required: bool) -> Principal | None:
        credential = _credential(headers)
        if credential is None:
            if required:
                raise no_credential()
            return None
        principal = self.authenticator.cached(credential)
        if principal is None:
            principal = await asyncio.to_thread(self.authenticator.authenticate, credential)
        return principal

    async def _body(self, receive: Receive, headers: dict[bytes, bytes]) -> bytes:
        return await read_body(
            receive, headers, self.max_body_bytes, "STRATUS_SERVING_MAX_REQUEST_BYTES"
        )


def _allow(method: str, methods: tuple[str, ...]) -> None:
    if method not in methods:
        raise MethodNotAllowed(f"{method} is not allowed here; use {' or '.join(methods)}")


def _credential(headers: dict[bytes, bytes]) -> str | None:
    header = headers.get(b"authorization")
    if header:
        scheme, _, value = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <credential>'")
        return value.strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1") if key else None


def _root_project(headers: dict[bytes, bytes], principal: Principal | None, endpoint: str) -> str:
    named = headers.get(b"x-stratus-project")
    if named:
        return named.decode("latin-1")
    if principal is not None and principal.key_project is not None:
        return principal.key_project
    raise InvalidInput(
        f"say which project endpoint {endpoint!r} is in: send the X-Stratus-Project header, "
        "use a key restricted to that project, or call /inference/{project}/"
        f"{endpoint}/v2/models/{endpoint}/infer"
    )


def _error(exc: StratusError, path: str) -> tuple[bytes, bytes]:
    """An error's body and content type: `{"error": ...}` on v2 paths (what Triton's and
    KServe's clients read), problem+json elsewhere."""
    if _is_v2(path):
        return v2_error(exc), _JSON
    return orjson.dumps(exc.to_problem(instance=path)), _PROBLEM


def _is_v2(path: str) -> bool:
    if path == "/v2" or path.startswith("/v2/"):
        return True
    parts = path.split("/", 5)  # "", "inference", project, endpoint, "v2", …
    return len(parts) > 4 and parts[1] == "inference" and parts[4] == "v2"


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    request_id: str,
    variant: VariantRoute | None = None,
    header_length: int | None = None,
    cold_start: bool = False,
    retry_after: str | None = None,
) -> None:
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        _NOSNIFF,
        _NO_STORE,
    ]
    if header_length is not None:  # a v2 answer with binary outputs: where its JSON ends
        headers.append((_INFERENCE_HEADER, str(header_length).encode()))
    if variant is not None:
        headers.append((b"x-stratus-model-version", variant.model_version.encode()))
        headers.append((b"x-stratus-variant", variant.name.encode()))
    if cold_start:  # answered by a replica started for it
        headers.append((b"x-stratus-cold-start", b"true"))
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    elif status == 503:
        headers.append((b"retry-after", b"1"))
    message: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": headers}
    await send(message)
    await send({"type": "http.response.body", "body": body})
