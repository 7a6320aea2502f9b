"""`create_app`: the FastAPI application of one control plane."""

from __future__ import annotations

from fastapi import FastAPI

from stratus._version import __version__
from stratus.api import health, problems
from stratus.api.middleware import RequestContextMiddleware
from stratus.api.platform import Platform
from stratus.iam import routes as iam_routes
from stratus.registry import routes as registry_routes
from stratus.storage import routes as storage_routes


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(
        title="Stratus",
        version=__version__,
        description="A self-hosted cloud for the machine-learning lifecycle.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.platform = platform
    app.state.iam = platform.iam
    app.state.audit = platform.audit
    app.state.authenticator = platform.authenticator
    app.state.storage = platform.storage
    app.state.registry = platform.registry
    problems.install(app)
    app.include_router(health.router)
    app.include_router(iam_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(storage_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(registry_routes.router, responses=problems.ERROR_RESPONSES)
    app.add_middleware(
        RequestContextMiddleware,
        audit=platform.audit,
        max_json_bytes=platform.settings.server.max_request_bytes,
    )
    return app
