"""The inference gateway: a raw ASGI fast path in front of the FastAPI app.

`/inference/{project}/{endpoint}/…` and `/v2/…` never reach FastAPI: the gateway parses the
path, authenticates from the credential cache (a database lookup only on a miss, off the event
loop), picks a replica (`routing.py`) and forwards the body untouched over the replica's
multiplexed unix-socket connection. A connection that breaks mid-request is retried once on
another replica. Every answer carries `X-Request-Id`, `X-Stratus-Model-Version` and
`X-Stratus-Variant`; any failure, a bug included, is a problem+json answer (a bug's traceback goes
to the log only). When the endpoint captures its traffic, an answered request is appended
to the capture buffer (references to the bodies already held; parsing and writing happen on
the monitoring service's writer thread). Everything else goes to the wrapped app.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from stratus.core.errors import (
    GatewayTimeout,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
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
from stratus.serving.capture import CaptureBuffer, CaptureRecord
from stratus.serving.connections import ReplicaGone
from stratus.serving.protocols import ProtocolName
from stratus.serving.wire import Kind

log = logging.getLogger("stratus.gateway")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_JSON = b"application/json"
_PROBLEM = b"application/problem+json"
_INFER = ("POST",)
_READ = ("GET", "HEAD")


# (what the path asks for) -> (the wire kind, the methods allowed); None: a readiness check
_READY = None
# the protocol of each kind of inference request, for data capture
_PROTOCOL: dict[Kind, ProtocolName] = {
    Kind.PLAIN_PREDICT: "plain",
    Kind.MLFLOW_INVOCATIONS: "mlflow",
    Kind.V2_INFER: "v2",
}


def _operation(rest: list[str], endpoint: str) -> tuple[Kind | None, tuple[str, ...]]:
    """What an endpoint-relative path asks for. Raises NotFound for any other path."""
    if rest == ["predict"]:
        return Kind.PLAIN_PREDICT, _INFER
    if rest == ["invocations"]:
        return Kind.MLFLOW_INVOCATIONS, _INFER
    if len(rest) >= 3 and rest[0] == "v2" and rest[1] == "models":
        model, tail = rest[2], rest[3:]
        if model != endpoint:
            raise NotFound(
                f"this endpoint serves the model {endpoint!r}: use /v2/models/{endpoint}"
            )
        if len(tail) == 3 and tail[0] == "versions":  # /versions/{v}/infer: one version served
            tail = tail[2:]
        if tail == ["infer"]:
            return Kind.V2_INFER, _INFER
        if tail == []:
            return Kind.METADATA, _READ
        if tail == ["ready"]:
            return _READY, _READ
    if rest in (["v2", "health", "ready"], ["v2", "health", "live"]):
        return _READY, _READ
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
    ) -> None:
        self.app = app
        self.capture = capture
        self.routes = routes
        self.authenticator = authenticator
        self.max_body_bytes = max_body_bytes
        self.timeout = timeout_seconds
        self._shadow_tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/inference/") or path.startswith("/v2/"):
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
                await _respond(send, exc.status, _problem(exc, scope["path"]), _PROBLEM, request_id)
        except Exception:  # a bug in Stratus: the caller gets a problem document, the log the rest
            log.exception("request %s to %s failed", request_id, scope["path"])
            if not answered:
                problem = StratusError(
                    f"the gateway failed on this request; quote request id {request_id} "
                    "to the platform's operators"
                )
                await _respond(send, 500, _problem(problem, scope["path"]), _PROBLEM, request_id)

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
        if path.startswith("/v2/"):
            parts = path[1:].split("/")
            if parts[:2] == ["v2", "health"] and parts[2:] in (["live"], ["ready"]):
                _allow(method, _READ)
                await _respond(send, 200, b'{"live":true}', _JSON, request_id)
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
        kind, methods = _operation(parts, endpoint)
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
        _allow(method, methods)
        if kind is _READY:
            ready = route.fallback(avoid=None) is not None
            body = orjson.dumps({"name": endpoint, "ready": ready, "phase": route.phase})
            await _respond(send, 200 if ready else 503, body, _JSON, request_id)
            return
        assert kind is not None
        body = await self._body(receive, headers) if kind is not Kind.METADATA else b""
        content_type = headers.get(b"content-type", b"application/json").decode("latin-1")
        await self._forward(route, kind, content_type, body, send, request_id, started)

    async def _forward(
        self,
        route: EndpointRoute,
        kind: Kind,
        content_type: str,
        body: bytes,
        send: Send,
        request_id: str,
        started: float,
    ) -> None:
        picked = route.pick()
        if picked is None:
            raise ServiceUnavailable(
                f"endpoint {route.name!r} has no ready replica ({route.phase}); retry shortly"
            )
        variant, link = picked
        if route.shadows and kind is not Kind.METADATA:
            self._shadow(route, kind, content_type, body)
        series = variant.series
        series.in_flight.inc()
        try:
            try:
                frame = await link.connection.call(kind, content_type, body, self.timeout)
            except ReplicaGone:
                retry = variant.pick(avoid=link) or None
                again = (variant, retry) if retry is not None else route.fallback(avoid=link)
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
        await _respond(
            send,
            frame.status,
            frame.body,
            _JSON if frame.status < 400 else _PROBLEM,
            request_id,
            variant,
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

    def _shadow(self, route: EndpointRoute, kind: Kind, content_type: str, body: bytes) -> None:
        for variant in route.shadows:
            link = variant.pick()
            if link is None:  # counted, so a shadow that misses copies shows on /metrics
                variant.series.shadow_skipped("no_ready_replica")
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
        limit = self.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidInput("the client went away before sending the whole request")
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is larger than {limit} bytes (STRATUS_SERVING_MAX_REQUEST_BYTES); "
        "send fewer rows per request"
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


def _problem(exc: StratusError, path: str) -> bytes:
    return orjson.dumps(exc.to_problem(instance=path))


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    request_id: str,
    variant: VariantRoute | None = None,
) -> None:
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    if variant is not None:
        headers.append((b"x-stratus-model-version", variant.model_version.encode()))
        headers.append((b"x-stratus-variant", variant.name.encode()))
    if status == 503:
        headers.append((b"retry-after", b"1"))
    message: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": headers}
    await send(message)
    await send({"type": "http.response.body", "body": body})
