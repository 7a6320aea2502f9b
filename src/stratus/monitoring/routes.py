"""The monitoring HTTP surface: an endpoint's captured records and files, ground truth, an
ad hoc drift report; monitors (apply, list, read, delete, run, results, HTML reports); and the
erasure of one data subject's captured records."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, cast

from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from stratus.core.clock import as_utc
from stratus.core.errors import InvalidInput
from stratus.core.resources import DEFAULT_LIMIT, Page
from stratus.iam.authorization import Access, ListAccess, ListScope, ProjectAccess
from stratus.iam.parameters import Limit, PageToken, Selector
from stratus.iam.roles import Permission
from stratus.monitoring import schemas as s
from stratus.monitoring.capture import CaptureStore, Window, file_read
from stratus.monitoring.html import result_page
from stratus.monitoring.service import MonitorService

endpoint_router = APIRouter(
    prefix="/api/v1/projects/{project}/endpoints/{endpoint}", tags=["monitoring"]
)
router = APIRouter(prefix="/api/v1/projects/{project}/monitors", tags=["monitoring"])
erase_router = APIRouter(prefix="/api/v1/projects/{project}/captures", tags=["monitoring"])

_PARQUET = "application/vnd.apache.parquet"
MAX_RECORDS = 1000


def _monitors(request: Request) -> MonitorService:
    return cast(MonitorService, request.app.state.monitors)


def _captures(request: Request) -> CaptureStore:
    return cast(CaptureStore, request.app.state.captures)


def _window(since: datetime | None, until: datetime | None) -> Window:
    since = as_utc(since) if since is not None else None
    until = as_utc(until) if until is not None else None
    if since is not None and until is not None and since > until:
        raise InvalidInput("since must not be after until")
    return Window(since=since, until=until)


# --- captures --------------------------------------------------------------------------------


@endpoint_router.get("/captures", name="captures.list", response_model=s.CaptureRecords)
def list_captures(
    request: Request,
    endpoint: str,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RECORDS)] = 20,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> s.CaptureRecords:
    """The newest captured rows (inputs, prediction, request id, time, model version)."""
    monitors, captures = _monitors(request), _captures(request)
    monitors.endpoints.get(access.project, endpoint)
    uid = monitors.project_uid(access.project)
    window = _window(since, until)
    files = captures.files(uid, endpoint, window)
    newest = Window(since=window.since, until=window.until, rows=limit)
    table = captures.read(uid, endpoint, newest, files=files)
    total = sum(f.rows for f in files)
    return s.CaptureRecords(
        endpoint=endpoint,
        records=captures.records(table, limit),
        total=total,
        pending=len(captures.buffer),
    )


@endpoint_router.get(
    "/captures/files", name="captures.files", response_model=list[s.CaptureFileRead]
)
def list_capture_files(
    request: Request,
    endpoint: str,
    since: datetime | None = None,
    until: datetime | None = None,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> list[s.CaptureFileRead]:
    """The endpoint's capture files (hourly Parquet), newest first."""
    monitors, captures = _monitors(request), _captures(request)
    monitors.endpoints.get(access.project, endpoint)
    uid = monitors.project_uid(access.project)
    return [file_read(f) for f in captures.files(uid, endpoint, _window(since, until))]


@endpoint_router.get(
    "/captures/files/{file}",
    name="captures.file",
    response_class=Response,
    responses={200: {"content": {_PARQUET: {"schema": {"type": "string", "format": "binary"}}}}},
)
def get_capture_file(
    request: Request,
    endpoint: str,
    file: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> Response:
    """One capture file's Parquet bytes."""
    monitors, captures = _monitors(request), _captures(request)
    uid = monitors.project_uid(access.project)
    row, data = captures.open_file(uid, endpoint, file)
    return Response(
        data,
        media_type=_PARQUET,
        headers={"X-Stratus-Path": row.path, "X-Stratus-Rows": str(row.rows)},
    )


@erase_router.post("/erase", name="captures.erase", response_model=s.EraseResult)
def erase_subject(
    request: Request,
    body: s.EraseRequest,
    access: ProjectAccess = Access(Permission.PROJECT_ADMIN),
) -> s.EraseResult:
    """Remove one data subject's captured records and ground truth (a project owner's call;
    audited). Records are found by the keyed hash of the endpoints' `capture.subject` input."""
    monitors, captures = _monitors(request), _captures(request)
    if body.endpoint is not None:
        monitors.endpoints.get(access.project, body.endpoint)
    uid = monitors.project_uid(access.project)
    return captures.erase(uid, body.subject, body.endpoint)


# --- ground truth and ad hoc drift -------------------------------------------------------------


@endpoint_router.post("/ground-truth", name="ground_truth.post", response_model=s.GroundTruthResult)
def post_ground_truth(
    request: Request,
    endpoint: str,
    body: s.GroundTruthPost,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.GroundTruthResult:
    """The true outcomes of captured rows, by request id (and row, for a request of several)."""
    return _monitors(request).post_ground_truth(access.project, endpoint, body)


@endpoint_router.post(
    "/drift",
    name="drift.report",
    response_model=s.MonitorResultRead,
    responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
)
async def drift_report(
    request: Request,
    endpoint: str,
    body: s.DriftRequest,
    format: Annotated[str, Query(pattern="^(json|html)$")] = "json",
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> Response:
    """A drift report of the endpoint's recent captures against a reference, now (kept
    nowhere; a monitor keeps a history)."""
    result = await to_thread.run_sync(_monitors(request).drift_now, access.project, endpoint, body)
    if format == "html":
        return HTMLResponse(result_page(result, f"{access.project}/{endpoint}"))
    return JSONResponse(result.model_dump(mode="json"))


# --- monitors --------------------------------------------------------------------------------


@router.put(
    "",
    name="monitors.apply",
    response_model=s.MonitorRead,
    responses={201: {"model": s.MonitorRead, "description": "the monitor was created"}},
)
def apply_monitor(
    request: Request,
    body: s.MonitorApply,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> JSONResponse:
    """Create a monitor (201) or replace its spec (200); it runs at once, then every
    `interval_seconds`."""
    request.state.audit_name = body.name  # the audit entry names what was applied
    read, created = _monitors(request).apply(access.project, body)
    return JSONResponse(read.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("", name="monitors.list", response_model=Page[s.MonitorRead])
def list_monitors(
    request: Request,
    endpoint: str | None = None,
    access: ListScope = ListAccess(Permission.RESOURCE_READ),
    selector: Selector = None,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.MonitorRead]:
    items, token = _monitors(request).list_monitors(
        access.project, endpoint, selector, limit, page_token
    )
    return Page(items=items, next_page_token=token)


@router.get("/{monitor}", name="monitors.get", response_model=s.MonitorRead)
def get_monitor(
    request: Request, monitor: str, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> s.MonitorRead:
    return _monitors(request).get(access.project, monitor)


@router.delete("/{monitor}", name="monitors.delete", status_code=204)
def delete_monitor(
    request: Request, monitor: str, access: ProjectAccess = Access(Permission.RESOURCE_WRITE)
) -> Response:
    """Delete a monitor and its history."""
    _monitors(request).delete(access.project, monitor)
    return Response(status_code=204)


@router.post("/{monitor}/run", name="monitors.run", response_model=s.MonitorResultRead)
async def run_monitor(
    request: Request,
    monitor: str,
    body: s.MonitorRunRequest | None = None,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.MonitorResultRead:
    """Run a monitor now (its result joins the history); 409 when there is too little data."""
    window = body.window if body is not None else None
    return await to_thread.run_sync(_monitors(request).run, access.project, monitor, window)


@router.get("/{monitor}/results", name="monitors.results", response_model=Page[s.MonitorResultRead])
def list_results(
    request: Request,
    monitor: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.MonitorResultRead]:
    """The monitor's results, newest first."""
    items, token = _monitors(request).results(access.project, monitor, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get(
    "/{monitor}/results/{result}", name="monitors.result", response_model=s.MonitorResultRead
)
def get_result(
    request: Request,
    monitor: str,
    result: int,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> s.MonitorResultRead:
    return _monitors(request).result(access.project, monitor, result)


@router.get(
    "/{monitor}/results/{result}/report.html",
    name="monitors.result.html",
    response_class=HTMLResponse,
)
def get_result_html(
    request: Request,
    monitor: str,
    result: int,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> HTMLResponse:
    """A drift result as a self-contained HTML page, with a chart per feature."""
    found = _monitors(request).result(access.project, monitor, result)
    if found.type != "drift":
        raise InvalidInput(f"monitor {monitor!r} is a {found.type} monitor: no drift report")
    return HTMLResponse(result_page(found, f"{access.project}/{found.endpoint} · {monitor}"))
