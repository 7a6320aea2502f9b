"""Request ids, security headers and the audit trail, as one pure-ASGI middleware (it never
buffers bodies).

Every response carries `X-Request-Id` and the standard security headers (`security_headers`;
Strict-Transport-Security only over TLS). Every mutating API request and every login is written
to the audit log before its response starts, so `stratus audit list` sees it at once. Who may
send a body, and how large, is `admission`'s part.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from anyio import to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stratus.api.docs import ASSETS_URL, DOCS_URL
from stratus.core.ids import new_request_id
from stratus.iam.audit import AuditEntry, AuditLog

log = logging.getLogger("stratus.audit")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_READS = {"GET", "HEAD", "OPTIONS"}

# What every API answer says to a browser: nothing of it is a page to frame, sniff, cache or
# run scripts from. Swagger UI (`/docs`), the one page, may load its own scripts and styles.
_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)
_API_POLICY = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_PAGE_POLICY = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
)
# The console (every path outside /api/): its own scripts and styles only, nothing inline.
_CONSOLE_POLICY = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
)
_NO_STORE = (b"cache-control", b"no-store")
_PAGES = (DOCS_URL, ASSETS_URL)
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


@functools.cache
def _headers(page: bool, api: bool, tls: bool) -> tuple[tuple[bytes, bytes], ...]:
    policy = _PAGE_POLICY if page else _API_POLICY if api else _CONSOLE_POLICY
    headers = [*_COMMON, policy]
    if api and not page:
        headers.append(_NO_STORE)
    if tls:
        headers.append(_HSTS)
    return tuple(headers)


def security_headers(path: str, scheme: str) -> tuple[tuple[bytes, bytes], ...]:
    """The security headers of an answer to `path`: API answers are never cached (they carry
    credentials and private data); pages (Swagger UI and its assets) get a policy that lets
    them run their own scripts, and the console (outside /api/) one that lets it load its
    own scripts and styles, none inline; HSTS over TLS only (a browser ignores it over plain
    HTTP)."""
    return _headers(path.startswith(_PAGES), path.startswith("/api/"), scheme == "https")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _SAFE_ID.match(incoming) else new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        audited = scope["method"] not in _READS  # the API's changes and the console's
        recorded = False

        async def send_with_context(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                present = {name.lower() for name, _ in headers}
                headers.extend(
                    h
                    for h in security_headers(scope["path"], scope.get("scheme", "http"))
                    if h[0] not in present
                )
                message["headers"] = headers
                if audited and not recorded:
                    recorded = True
                    await self._record(scope, request_id, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        except BaseException:
            if audited and not recorded:
                recorded = True
                await self._record(scope, request_id, 500)
            raise

    async def _record(self, scope: Scope, request_id: str, status: int) -> None:
        state: dict[str, Any] = scope.get("state", {})
        principal = state.get("principal")
        actor = principal.subject if principal is not None else state.get("actor_hint", "anonymous")
        route = scope.get("route")
        action = getattr(route, "name", None) or f"{scope['method']} {scope['path']}"
        params: dict[str, Any] = scope.get("path_params", {})
        project = params.get("project", state.get("audit_project"))
        client = scope.get("client")
        outcome = "success" if status < 400 else "denied" if status in (401, 403) else "failure"
        resource = scope["path"]
        named = state.get("audit_name")  # a spec applied to a collection names its resource
        if isinstance(named, str) and named and len(named) <= 200:
            resource = f"{resource.rstrip('/')}/{named}"
        entry = AuditEntry(
            actor=actor,
            action=action,
            resource=resource,
            project=project if isinstance(project, str) and len(project) <= 63 else None,
            outcome=outcome,
            status_code=status,
            request_id=request_id,
            source=client[0] if client else "",
            details={"method": scope["method"]},
        )
        try:
            await to_thread.run_sync(self.audit.append, entry)
        except Exception:
            log.exception("could not write the audit entry for request %s", request_id)
            raise


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None
