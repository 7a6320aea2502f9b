"""`create_app`: the ASGI application of one control plane: the inference gateway's fast path
in front of the FastAPI app (REST API, metrics, health)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI

from stratus._version import __version__
from stratus.api import docs, health, metrics, problems
from stratus.api.admission import AdmissionMiddleware
from stratus.api.middleware import RequestContextMiddleware
from stratus.api.platform import Platform
from stratus.billing import routes as billing_routes
from stratus.console import routes as console
from stratus.core import heap
from stratus.data import routes as data_routes
from stratus.endpoints import routes as endpoint_routes
from stratus.endpoints.gateway import Gateway
from stratus.iac import routes as iac_routes
from stratus.iam import routes as iam_routes
from stratus.jobs import routes as job_routes
from stratus.monitoring import alert_routes
from stratus.monitoring import routes as monitoring_routes
from stratus.pipelines import routes as pipeline_routes
from stratus.registry import routes as registry_routes
from stratus.secrets import routes as secret_routes
from stratus.storage import key_rotation_routes
from stratus.storage import routes as storage_routes
from stratus.tracking import routes as tracking_routes


def create_api(platform: Platform) -> FastAPI:
    """The FastAPI app alone; its lifespan starts and stops the endpoint controller."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await platform.controller.start()
        platform.job_controller.start()
        platform.pipeline_controller.start()
        platform.capture_writer.start()
        platform.monitor_controller.start()
        platform.alert_evaluator.start()
        platform.meter.start()
        openapi_document.build_in_background()
        heap.freeze()  # startup's objects out of the collector's sight (core/heap.py)
        try:
            yield
        finally:
            await to_thread.run_sync(platform.alert_evaluator.stop)
            await to_thread.run_sync(platform.monitor_controller.stop)
            await to_thread.run_sync(platform.capture_writer.stop)
            await to_thread.run_sync(platform.pipeline_controller.stop)
            await to_thread.run_sync(platform.job_controller.stop)
            await platform.controller.stop()
            await to_thread.run_sync(platform.meter.stop)

    app = FastAPI(
        title="Stratus",
        version=__version__,
        description="A self-hosted cloud for the machine-learning lifecycle.",
        openapi_url=None,  # docs.install serves the document and Swagger UI, offline
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.platform = platform
    app.state.iam = platform.iam
    app.state.audit = platform.audit
    app.state.authenticator = platform.authenticator
    app.state.storage = platform.storage
    app.state.registry = platform.registry
    app.state.data = platform.data
    app.state.tracking = platform.tracking
    app.state.endpoints = platform.endpoints
    app.state.jobs = platform.jobs
    app.state.billing = platform.billing
    app.state.quotas = platform.quotas
    app.state.budgets = platform.budgets
    app.state.recommender = platform.recommender
    app.state.reservations = platform.reservations
    app.state.pipelines = platform.pipelines
    app.state.controller = platform.controller
    app.state.captures = platform.captures
    app.state.monitors = platform.monitors
    app.state.alerts = platform.alerts
    app.state.throttle = platform.throttle
    app.state.secrets = platform.secrets
    app.state.platform_secrets = platform.platform_secrets
    app.state.planner = platform.planner
    app.state.console_sessions = platform.console_sessions
    problems.install(app)
    openapi_document = docs.install(app)
    app.include_router(health.router)
    app.include_router(metrics.router, responses=problems.ERROR_RESPONSES)
    app.include_router(iam_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(storage_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(key_rotation_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(secret_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(secret_routes.platform_router, responses=problems.ERROR_RESPONSES)
    app.include_router(registry_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(data_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(tracking_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(endpoint_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(job_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(job_routes.catalog_router, responses=problems.ERROR_RESPONSES)
    app.include_router(pipeline_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(pipeline_routes.webhook_router, responses=problems.ERROR_RESPONSES)
    app.include_router(monitoring_routes.endpoint_router, responses=problems.ERROR_RESPONSES)
    app.include_router(monitoring_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(monitoring_routes.erase_router, responses=problems.ERROR_RESPONSES)
    app.include_router(alert_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(iac_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(billing_routes.prices_router, responses=problems.ERROR_RESPONSES)
    app.include_router(billing_routes.cost_router, responses=problems.ERROR_RESPONSES)
    app.include_router(billing_routes.quota_router, responses=problems.ERROR_RESPONSES)
    app.include_router(billing_routes.budget_router, responses=problems.ERROR_RESPONSES)
    app.include_router(billing_routes.reservation_router, responses=problems.ERROR_RESPONSES)
    console.install(app)
    app.add_middleware(
        AdmissionMiddleware,
        authenticator=platform.authenticator,
        max_body_bytes=platform.settings.server.max_request_bytes,
    )
    app.add_middleware(RequestContextMiddleware, audit=platform.audit)
    return app


def create_app(platform: Platform) -> Gateway:
    """The whole control plane: inference paths go straight to the gateway, the rest to the
    API."""
    return Gateway(
        create_api(platform),
        platform.routes,
        platform.authenticator,
        max_body_bytes=platform.settings.serving.max_request_bytes,
        timeout_seconds=platform.settings.serving.timeout_seconds,
        capture=platform.captures.buffer,
        cold_start_queue=platform.settings.serving.cold_start_queue,
        cold_start_timeout_seconds=platform.settings.serving.cold_start_timeout_seconds,
        cold_start_wait=platform.metrics.cold_start_wait,
        wake=platform.controller.wake,
        throttle=platform.throttle,
    )
