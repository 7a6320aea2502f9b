"""Health routes: the only routes that need no credential."""

from __future__ import annotations

from typing import Literal

from anyio import fail_after, to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from stratus.api.platform import store_timeouts
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
    """The database and the object store answer (within the store's request bound: a store
    that stalls is reported, not waited for)."""
    platform = request.app.state.platform
    bound = store_timeouts(platform.settings).bound_seconds
    checks: dict[str, str] = {}
    for name, probe in (("database", platform.db.ping), ("store", platform.store.ping)):
        try:
            with fail_after(bound):
                await to_thread.run_sync(probe, abandon_on_cancel=True)
            checks[name] = "ok"
        except TimeoutError:
            checks[name] = f"no answer within {bound:g} s"
        except ServiceUnavailable as exc:
            checks[name] = exc.detail
        except Exception as exc:
            checks[name] = f"{type(exc).__name__}: {exc}"
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
