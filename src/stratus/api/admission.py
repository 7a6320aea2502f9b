"""Admission of request bodies: who may send one, and how large it may be.

A pure-ASGI middleware that wraps `receive`, so its checks run when anything first asks for
the body (FastAPI's body parsing, `request.stream()`), after routing and before a byte is
read. A route that needs a credential gets its caller authenticated there (the principal is
kept for the route's own dependency), so a stranger's body is never read; every body is
capped at `server.max_request_bytes` (a declared Content-Length at once, a chunked body as it
arrives) except a streamed upload (`storage.routes.receive_body`), which goes to a temporary
file. A response sent before its request's body was read whole (a refusal, or any answer
that did not need the body) closes the connection, so the client stops sending. The
inference gateway, in front of all this, applies its own cap.
"""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from fastapi.dependencies.models import Dependant
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stratus.core.errors import PayloadTooLarge, StratusError
from stratus.iam.authenticating import Authenticator
from stratus.iam.authorization import authenticated, credential_of
from stratus.iam.errors import no_credential
from stratus.iam.principals import Principal
from stratus.storage.routes import STREAMED_BODY


class Refused(HTTPException):
    """A request refused while its body is first read.

    An HTTPException, because FastAPI re-raises those from a body read as they are (any other
    error there becomes a 400); `problems` renders `error` as the problem document.
    """

    def __init__(self, error: StratusError) -> None:
        super().__init__(error.status, error.detail, headers=error.headers() or None)
        self.error = error


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator, max_body_bytes: int) -> None:
        self.app = app
        self.authenticator = authenticator
        self.max_body_bytes = max_body_bytes
        # id(dependant) -> (dependant, whether it needs a credential); the dependant is kept
        # so its id cannot be reused by another object.
        self._needs_credential: dict[int, tuple[Dependant, bool]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            # Without a body, `receive` only waits for the client to leave (streaming
            # responses listen for that): nothing to admit.
            await self.app(scope, receive, send)
            return
        admitted = False
        limit: int | None = None
        seen = 0
        unread = True

        async def admitting() -> Message:
            nonlocal admitted, limit, seen, unread
            if not admitted:
                limit = await self._admit(scope)
                admitted = True
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if limit is not None and seen > limit:
                    raise Refused(self._too_large())
                unread = unread and message.get("more_body", False)
            else:
                unread = False
            return message

        async def closing_if_unread(message: Message) -> None:
            # Keeping the connection would mean draining the rest of the body first.
            if message["type"] == "http.response.start" and unread:
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        await self.app(scope, admitting, closing_if_unread)

    async def _admit(self, scope: Scope) -> int | None:
        """Before the first byte: authenticate the caller if the route needs it; return the
        body's cap (None: a streamed upload, not capped)."""
        state: dict[str, Any] = scope.setdefault("state", {})
        if state.get("principal") is None and self._route_needs_credential(scope):
            state["principal"] = await self._authenticate(scope)
        if scope.get(STREAMED_BODY):
            return None
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise Refused(self._too_large())
        return self.max_body_bytes

    def _route_needs_credential(self, scope: Scope) -> bool:
        """Whether the matched route authenticates its caller (the `authenticated` dependency,
        at any depth). Anything else that reads a body (no route, a plain Starlette route)
        needs one too: public is what a route declares, never the default."""
        dependant = getattr(scope.get("route"), "dependant", None)
        if not isinstance(dependant, Dependant):
            return True
        known = self._needs_credential.get(id(dependant))
        if known is None or known[0] is not dependant:
            known = (dependant, _uses(dependant, authenticated))
            self._needs_credential[id(dependant)] = known
        return known[1]

    async def _authenticate(self, scope: Scope) -> Principal:
        try:
            credential = credential_of(Request(scope))
            if credential is None:
                raise no_credential()
            principal = self.authenticator.cached(credential)
            if principal is None:
                principal = await to_thread.run_sync(self.authenticator.authenticate, credential)
            return principal
        except StratusError as exc:
            raise Refused(exc) from None

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is larger than {self.max_body_bytes} bytes "
            "(STRATUS_SERVER_MAX_REQUEST_BYTES); upload large data as objects"
        )


def _uses(dependant: Dependant, call: object) -> bool:
    return dependant.call is call or any(_uses(d, call) for d in dependant.dependencies)


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    return (length is not None and length != "0") or (
        _header(scope, b"transfer-encoding") is not None
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None
