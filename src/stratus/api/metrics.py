"""`/metrics`: the platform's Prometheus metrics (a platform admin's credential, as a bearer
token in the scrape config: metrics name every project's endpoints)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stratus.iam.authorization import Admin

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    name="metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request, _admin: Admin) -> Response:
    """Prometheus text format: inference requests, errors, latency, in-flight requests, batch
    sizes and replicas, labelled by project, endpoint, variant and model version."""
    platform = request.app.state.platform
    await platform.controller.refresh_figures()
    return Response(generate_latest(platform.metrics.registry), media_type=CONTENT_TYPE_LATEST)
