"""Request ids and the audit trail, as one pure-ASGI middleware (it never buffers bodies).

Every response carries `X-Request-Id`. Every mutating API request and every login is written
to the audit log before its response starts, so `stratus audit list` sees it at once.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from anyio import to_thread
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stratus.core.errors import PayloadTooLarge
from stratus.core.ids import new_request_id
from stratus.iam.audit import AuditEntry, AuditLog

log = logging.getLogger("stratus.audit")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_READS = {"GET", "HEAD", "OPTIONS"}


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, audit: AuditLog, max_json_bytes: int) -> None:
        self.app = app
        self.audit = audit
        self.max_json_bytes = max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _SAFE_ID.match(incoming) else new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        audited = scope["method"] not in _READS and scope["path"].startswith("/api/")
        recorded = False

        async def send_with_context(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
                if audited and not recorded:
                    recorded = True
                    await self._record(scope, request_id, message["status"])
            await send(message)

        if _is_json(scope):
            declared = _header(scope, b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_json_bytes:
                await self._too_large(send_with_context)
                return
            receive = self._limited(receive)
        try:
            await self.app(scope, receive, send_with_context)
        except BaseException:
            if audited and not recorded:
                recorded = True
                await self._record(scope, request_id, 500)
            raise

    def _limited(self, receive: Receive) -> Receive:
        """Count a JSON body as it arrives, so a chunked one cannot exceed the limit either."""
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_json_bytes:
                    # FastAPI turns other errors raised while reading a body into a 400.
                    raise HTTPException(413, self._too_large_detail())
            return message

        return limited

    def _too_large_detail(self) -> str:
        return (
            f"the JSON body is larger than {self.max_json_bytes} bytes "
            "(STRATUS_SERVER_MAX_REQUEST_BYTES); upload large data as objects"
        )

    async def _too_large(self, send: Send) -> None:
        body = json.dumps(PayloadTooLarge(self._too_large_detail()).to_problem()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

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
        entry = AuditEntry(
            actor=actor,
            action=action,
            resource=scope["path"],
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


def _is_json(scope: Scope) -> bool:
    content_type = _header(scope, b"content-type") or ""
    return scope["method"] not in _READS and "json" in content_type.lower()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None
