"""The training jobs' HTTP surface: submit, upload code, list, read, cancel, delete; logs
(followed while the job runs); and what a job's runner sends back (reports, checkpoints)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from stratus.core.resources import DEFAULT_LIMIT, Page
from stratus.iam.authorization import Access, Caller, ListAccess, ListScope, ProjectAccess
from stratus.iam.parameters import Limit, PageToken, Selector
from stratus.iam.roles import Permission
from stratus.jobs import schemas as s
from stratus.jobs.service import JobService
from stratus.storage.routes import receive_body

router = APIRouter(prefix="/api/v1/projects/{project}/jobs", tags=["jobs"])
catalog_router = APIRouter(prefix="/api/v1", tags=["jobs"])

_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
FOLLOW_POLL_SECONDS = 0.5


def _jobs(request: Request) -> JobService:
    return cast(JobService, request.app.state.jobs)


@catalog_router.get(
    "/instance-types", name="jobs.instance_types", response_model=list[s.InstanceTypeRead]
)
def instance_types(request: Request, _: Caller) -> list[s.InstanceTypeRead]:
    """The instance types jobs run on: vCPU, memory, GPU, and the price per hour on demand
    and on spot."""
    return _jobs(request).instance_types()


@router.post("", name="jobs.create", status_code=201, response_model=s.JobRead)
def create_job(
    request: Request, body: s.JobCreate, access: ProjectAccess = Access(Permission.RESOURCE_WRITE)
) -> JSONResponse:
    """Submit a job. A job with `code` whose archive the project does not hold yet waits in
    `pending` (header `X-Stratus-Upload-Code: true`) until it is uploaded to `.../code`."""
    read, needs_code = _jobs(request).submit(access.project, body, access.principal)
    return JSONResponse(
        read.model_dump(mode="json"),
        status_code=201,
        headers={"x-stratus-upload-code": "true" if needs_code else "false"},
    )


@router.put(
    "/{job}/code",
    name="jobs.code.upload",
    response_model=s.JobRead,
    openapi_extra={"requestBody": {"required": True, "content": _BINARY}},
)
async def upload_code(
    request: Request, job: str, access: ProjectAccess = Access(Permission.RESOURCE_WRITE)
) -> s.JobRead:
    """Upload a pending job's code archive (tar.gz; checked against the declared SHA-256)."""
    jobs = _jobs(request)
    upload = await to_thread.run_sync(jobs.begin_code_upload, access.project, job)
    return await receive_body(request, upload, lambda: jobs.finish_code_upload(upload))


@router.get(
    "/{job}/code",
    name="jobs.code.download",
    response_class=StreamingResponse,
    responses={200: {"content": _BINARY, "description": "the code archive"}},
)
def download_code(
    request: Request, job: str, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> StreamingResponse:
    size, chunks = _jobs(request).open_code(access.project, job)
    return StreamingResponse(
        chunks, media_type="application/octet-stream", headers={"content-length": str(size)}
    )


@router.get("", name="jobs.list", response_model=Page[s.JobRead])
def list_jobs(
    request: Request,
    access: ListScope = ListAccess(Permission.RESOURCE_READ),
    selector: Selector = None,
    phase: str | None = Query(None, description="only jobs in this phase"),
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.JobRead]:
    items, token = _jobs(request).list_jobs(access.project, selector, limit, page_token, phase)
    return Page(items=items, next_page_token=token)


@router.get("/{job}", name="jobs.get", response_model=s.JobRead)
def get_job(
    request: Request, job: str, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> s.JobRead:
    return _jobs(request).get(access.project, job)


@router.post("/{job}/cancel", name="jobs.cancel", response_model=s.JobRead)
def cancel_job(
    request: Request, job: str, access: ProjectAccess = Access(Permission.RESOURCE_WRITE)
) -> s.JobRead:
    """Cancel a job: at once if it waits; a running one gets SIGTERM and its grace period."""
    return _jobs(request).cancel(access.project, job)


@router.delete("/{job}", name="jobs.delete", status_code=204)
def delete_job(
    request: Request, job: str, access: ProjectAccess = Access(Permission.RESOURCE_WRITE)
) -> Response:
    """Delete a finished or waiting job with its log and checkpoint (cancel a running one
    first)."""
    _jobs(request).delete(access.project, job)
    return Response(status_code=204)


@router.get(
    "/{job}/logs",
    name="jobs.logs",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "the job's output"}},
)
async def job_logs(
    request: Request,
    job: str,
    follow: bool = Query(False, description="keep streaming until the job finishes"),
    offset: int = Query(0, ge=0, le=2**53, description="start at this byte of the log"),
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> StreamingResponse:
    """Everything the job printed, over every attempt (kept after it ends); with `follow`,
    the response stays open and streams new output until the job finishes."""
    jobs = _jobs(request)
    first, finished = await to_thread.run_sync(jobs.read_log, access.project, job, offset)

    async def stream() -> AsyncIterator[bytes]:
        position = offset + len(first)
        if first:
            yield first
        done = finished
        while follow and not done:
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
            if await request.is_disconnected():
                return
            more, done = await to_thread.run_sync(jobs.read_log, access.project, job, position)
            if more:
                position += len(more)
                yield more

    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8")


# --- what a job's runner sends -------------------------------------------------------------


@router.post("/{job}/report", name="jobs.report", response_model=s.JobRead)
def report(
    request: Request,
    job: str,
    body: s.JobReport,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.JobRead:
    """The job's runner records its tracking run, metrics, model version and completion."""
    return _jobs(request).report(access.project, job, body)


@router.put(
    "/{job}/checkpoint",
    name="jobs.checkpoint.save",
    response_model=s.CheckpointRead,
    openapi_extra={"requestBody": {"required": True, "content": _BINARY}},
)
async def save_checkpoint(
    request: Request,
    job: str,
    step: int | None = Query(None, ge=0, le=2**53, description="the training step it holds"),
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.CheckpointRead:
    """Replace a running job's checkpoint (an archive the job's `checkpoint().save()` makes);
    the previous one stays until the new one is whole."""
    jobs = _jobs(request)
    upload = await to_thread.run_sync(jobs.begin_checkpoint, access.project, job)
    return await receive_body(request, upload, lambda: jobs.finish_checkpoint(upload, step))


@router.get(
    "/{job}/checkpoint",
    name="jobs.checkpoint.get",
    response_class=StreamingResponse,
    responses={200: {"content": _BINARY, "description": "the last checkpoint"}},
)
def get_checkpoint(
    request: Request, job: str, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> StreamingResponse:
    checkpoint, chunks = _jobs(request).open_checkpoint(access.project, job)
    headers = {
        "content-length": str(checkpoint.size),
        "x-stratus-sha256": checkpoint.sha256,
        "x-stratus-step": "" if checkpoint.step is None else str(checkpoint.step),
    }
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)
