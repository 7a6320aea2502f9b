"""Health routes: the only routes that need no credential."""

from __future__ import annotations

from typing import Literal

from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from stratus.core.errors import ServiceUnavailable

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}


@router.get("/healthz", name="health.alive", response_model=Health)
def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get(
    "/readyz",
    name="health.ready",
    response_model=Health,
    responses={503: {"model": Health, "description": "a dependency is down"}},
)
async def readyz(request: Request) -> JSONResponse:
    """The database and the object store answer."""
    platform = request.app.state.platform
    checks: dict[str, str] = {}
    for name, probe in (("database", platform.db.ping), ("store", platform.store.ping)):
        try:
            await to_thread.run_sync(probe)
            checks[name] = "ok"
        except ServiceUnavailable as exc:
            checks[name] = exc.detail
        except Exception as exc:
            checks[name] = f"{type(exc).__name__}: {exc}"
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
