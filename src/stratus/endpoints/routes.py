"""The endpoints' HTTP surface: specs, rollouts (canary, shadow, promote, rollback), history,
events (the controller's scaling steps), replica logs and per-variant traffic. Inference
itself goes through the gateway (`gateway.py`), not here."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Query, Request, Response

from stratus.core.errors import NotFound
from stratus.core.resources import DEFAULT_LIMIT, Page
from stratus.endpoints import schemas as s
from stratus.endpoints.controller import EndpointController
from stratus.endpoints.metrics import InferenceMetrics
from stratus.endpoints.service import MAX_EVENTS, EndpointService
from stratus.iam.authorization import Access, ListAccess, ListScope, ProjectAccess
from stratus.iam.parameters import Limit, PageToken, Selector
from stratus.iam.roles import Permission

router = APIRouter(prefix="/api/v1/projects/{project}/endpoints", tags=["endpoints"])

Reason = Annotated[str, Query(max_length=1000, description="why (kept in the history)")]


def _service(request: Request) -> EndpointService:
    return cast(EndpointService, request.app.state.endpoints)


def _url(request: Request, read: s.EndpointRead) -> s.EndpointRead:
    base = str(request.base_url).rstrip("/")
    read.status.url = f"{base}/inference/{read.metadata.project}/{read.metadata.name}"
    return read


@router.post("", name="endpoints.create", status_code=201, response_model=s.EndpointRead)
def create_endpoint(
    request: Request,
    body: s.EndpointCreate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.EndpointRead:
    """Create an endpoint; the controller starts its replicas (watch `status.phase`)."""
    read = _service(request).create(access.project, body, actor=access.principal.subject)
    return _url(request, read)


@router.get("", name="endpoints.list", response_model=Page[s.EndpointRead])
def list_endpoints(
    request: Request,
    access: ListScope = ListAccess(Permission.RESOURCE_READ),
    selector: Selector = None,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.EndpointRead]:
    items, token = _service(request).list_endpoints(access.project, selector, limit, page_token)
    return Page(items=[_url(request, i) for i in items], next_page_token=token)


@router.get("/{endpoint}", name="endpoints.get", response_model=s.EndpointRead)
def get_endpoint(
    request: Request, endpoint: str, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> s.EndpointRead:
    return _url(request, _service(request).get(access.project, endpoint))


@router.patch("/{endpoint}", name="endpoints.update", response_model=s.EndpointRead)
def update_endpoint(
    request: Request,
    endpoint: str,
    body: s.EndpointUpdate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.EndpointRead:
    """Change the spec; new `variants` roll out replica by replica, with no failed request."""
    service = _service(request)
    read = service.update(access.project, endpoint, body, actor=access.principal.subject)
    return _url(request, read)


@router.delete("/{endpoint}", name="endpoints.delete", status_code=204)
def delete_endpoint(
    request: Request, endpoint: str, access: ProjectAccess = Access(Permission.RESOURCE_WRITE)
) -> Response:
    """Delete an endpoint; its replicas drain and stop."""
    _service(request).delete(access.project, endpoint)
    return Response(status_code=204)


@router.post("/{endpoint}/canary", name="endpoints.canary", response_model=s.EndpointRead)
def add_canary(
    request: Request,
    endpoint: str,
    body: s.CanaryCreate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.EndpointRead:
    """Send `traffic` percent of the requests to another model version (the `canary`)."""
    read = _service(request).canary(access.project, endpoint, body, actor=access.principal.subject)
    return _url(request, read)


@router.post("/{endpoint}/shadow", name="endpoints.shadow", response_model=s.EndpointRead)
def add_shadow(
    request: Request,
    endpoint: str,
    body: s.ShadowCreate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.EndpointRead:
    """Mirror every request to another model version; its answers are dropped, its metrics
    kept."""
    read = _service(request).shadow(access.project, endpoint, body, actor=access.principal.subject)
    return _url(request, read)


@router.delete(
    "/{endpoint}/variants/{variant}",
    name="endpoints.variants.delete",
    response_model=s.EndpointRead,
)
def remove_variant(
    request: Request,
    endpoint: str,
    variant: str,
    reason: Reason = "",
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.EndpointRead:
    """Remove a variant; its traffic goes back to the primary one."""
    read = _service(request).remove_variant(
        access.project, endpoint, variant, actor=access.principal.subject, reason=reason
    )
    return _url(request, read)


@router.post("/{endpoint}/promote", name="endpoints.promote", response_model=s.EndpointRead)
def promote(
    request: Request,
    endpoint: str,
    body: s.RolloutAction,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.EndpointRead:
    """Make the canary's version the primary's, at full traffic (a rolling update)."""
    read = _service(request).promote(access.project, endpoint, body, actor=access.principal.subject)
    return _url(request, read)


@router.post("/{endpoint}/rollback", name="endpoints.rollback", response_model=s.EndpointRead)
def rollback(
    request: Request,
    endpoint: str,
    body: s.RolloutAction,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.EndpointRead:
    """Drop the canary; with none, or with `to_revision`, return to an earlier spec."""
    service = _service(request)
    read = service.rollback(access.project, endpoint, body, actor=access.principal.subject)
    return _url(request, read)


@router.get("/{endpoint}/history", name="endpoints.history", response_model=Page[s.RevisionRead])
def history(
    request: Request,
    endpoint: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.RevisionRead]:
    """Every change of the spec, newest first: who, when, what, why."""
    items, token = _service(request).history(access.project, endpoint, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get("/{endpoint}/events", name="endpoints.events", response_model=list[s.EndpointEventRead])
def events(
    request: Request,
    endpoint: str,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS, description="the newest N")] = 100,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> list[s.EndpointEventRead]:
    """What the controller did to the endpoint by itself (its scaling steps) and why, newest
    first; the newest 1000 are kept."""
    return _service(request).events(access.project, endpoint, limit)


@router.get("/{endpoint}/logs", name="endpoints.logs", response_model=list[s.LogLines])
async def logs(
    request: Request,
    endpoint: str,
    replica: Annotated[str | None, Query(max_length=200)] = None,
    lines: Annotated[int, Query(ge=1, le=10_000)] = 100,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> list[s.LogLines]:
    """The last `lines` lines of each replica's log (and of the last one that exited)."""
    from anyio import to_thread

    read = await to_thread.run_sync(_service(request).get, access.project, endpoint)
    controller = cast(EndpointController, request.app.state.controller)
    handles = controller.log_handles(read.metadata.uid, replica)
    if replica is not None and not handles:
        raise NotFound(f"endpoint {endpoint!r} has no replica {replica!r}")
    return await to_thread.run_sync(controller.read_logs, handles, lines)


@router.get(
    "/{endpoint}/traffic", name="endpoints.traffic", response_model=dict[str, s.VariantTraffic]
)
def traffic(
    request: Request, endpoint: str, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> dict[str, s.VariantTraffic]:
    """Each variant's requests, server errors (status >= 500), client errors (4xx) and latency
    quantiles since the control plane started, as the gateway measured them."""
    _service(request).get(access.project, endpoint)  # a NotFound for an unknown endpoint
    metrics = cast(InferenceMetrics, request.app.state.platform.metrics)
    return {
        variant: s.VariantTraffic(
            requests=totals.requests,
            errors=totals.errors,
            client_errors=totals.client_errors,
            p50_ms=_ms(totals.quantile(0.5)),
            p95_ms=_ms(totals.quantile(0.95)),
            p99_ms=_ms(totals.quantile(0.99)),
        )
        for variant, totals in metrics.variant_totals(access.project, endpoint).items()
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
