"""Errors as RFC 9457 problem+json: one clear `detail`, never a traceback."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

from stratus.api.admission import Refused
from stratus.core.errors import StratusError

log = logging.getLogger("stratus.api")
PROBLEM = "application/problem+json"


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None


def _response(request: Request, status: int, body: dict[str, Any]) -> JSONResponse:
    body.setdefault("instance", request.url.path)
    rid = getattr(request.state, "request_id", None)
    if rid:
        body["request_id"] = rid
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _allowed(request: Request) -> str:
    """Every method the path answers to (Starlette's 405 names only its first route's)."""
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)] or ["body"]
    return ".".join(parts)


def _message(error: dict[str, Any]) -> str:
    msg = str(error.get("msg", "is not valid"))
    return msg.removeprefix("Value error, ")


def _document_problems(app: FastAPI) -> None:
    """Error bodies are sent as problem+json: document the Problem schema under that media type.

    FastAPI puts a response `model` under application/json, which errors are never sent as.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                for response in operation.get("responses", {}).values():
                    content = response.get("content", {})
                    if PROBLEM in content and "application/json" in content:
                        content[PROBLEM] = content.pop("application/json")
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    _document_problems(app)

    @app.exception_handler(StratusError)
    async def _stratus(request: Request, exc: StratusError) -> JSONResponse:
        if exc.status >= 500:
            log.error("%s: %s", exc.code, exc.detail)
        response = _response(request, exc.status, exc.to_problem())
        response.headers.update(exc.headers())
        return response

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> JSONResponse:
        response = _response(request, exc.status_code, exc.error.to_problem())
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        detail = "; ".join(f"{_location(tuple(e.get('loc', ())))}: {_message(e)}" for e in errors)
        body = {
            "type": "https://stratus.dev/errors/invalid-input",
            "title": "Invalid input",
            "status": 422,
            "detail": detail or "the request is not valid",
            "code": "invalid-input",
            "errors": [
                {"loc": [str(p) for p in e.get("loc", ())], "msg": _message(e)} for e in errors
            ],
        }
        return _response(request, 422, body)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(
            exc.status_code, "http-error"
        )
        body = {
            "type": f"https://stratus.dev/errors/{code}",
            "title": _phrase(exc.status_code),
            "status": exc.status_code,
            "detail": f"no route {request.method} {request.url.path}"
            if exc.status_code in (404, 405)
            else str(exc.detail),
            "code": code,
        }
        response = _response(request, exc.status_code, body)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110: a 405 says which methods the resource has
            response.headers["allow"] = _allowed(request)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        rid = getattr(request.state, "request_id", "?")
        body = {
            "type": "https://stratus.dev/errors/internal-error",
            "title": "Internal error",
            "status": 500,
            "detail": f"an unexpected error occurred (request id {rid}); see the server log",
            "code": "internal-error",
        }
        return _response(request, 500, body)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": text, "content": {PROBLEM: {}}}
    for status, text in {
        400: "Invalid input",
        401: "No or bad credential",
        403: "Not allowed",
        404: "Not found",
        409: "Conflict",
        413: "Too large",
        422: "Invalid request",
        429: "Over a rate limit (see Retry-After)",
    }.items()
}
