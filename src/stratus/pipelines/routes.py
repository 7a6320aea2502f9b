"""The pipelines' HTTP surface: apply, list, read, delete; code archives; runs (start, list,
read, cancel, resume); and the webhook a CI system calls with the pipeline's secret."""

from __future__ import annotations

from typing import cast

from anyio import to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from stratus.core.errors import InvalidInput
from stratus.core.resources import DEFAULT_LIMIT, Page
from stratus.iam.authorization import Access, ListAccess, ListScope, ProjectAccess
from stratus.iam.parameters import Limit, PageToken, Selector
from stratus.iam.roles import Permission
from stratus.pipelines import schemas as s
from stratus.pipelines.schemas import TriggerKind
from stratus.pipelines.service import WEBHOOK_HEADER, PipelineService
from stratus.storage.routes import receive_body

router = APIRouter(prefix="/api/v1/projects/{project}/pipelines", tags=["pipelines"])
webhook_router = APIRouter(prefix="/api/v1/webhooks", tags=["pipelines"])

_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_SHA256_LENGTH = 64


def _pipelines(request: Request) -> PipelineService:
    return cast(PipelineService, request.app.state.pipelines)


def _number(run: str) -> int:
    if not run.isdigit() or int(run) < 1:
        raise InvalidInput(f"{run!r} is not a run number")
    return int(run)


@router.put(
    "",
    name="pipelines.apply",
    response_model=s.PipelineRead,
    responses={201: {"model": s.PipelineRead, "description": "the pipeline was created"}},
)
def apply_pipeline(
    request: Request,
    body: s.PipelineApply,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> JSONResponse:
    """Create a pipeline (201) or replace its spec (200). Its runs act as whoever applied it
    last. When the webhook trigger is first enabled, `webhook_secret` is in the answer, once."""
    request.state.audit_name = body.name  # the audit entry names what was applied
    read, created = _pipelines(request).apply(access.project, body, access.principal)
    return JSONResponse(read.model_dump(mode="json"), status_code=201 if created else 200)


@router.put(
    "/{pipeline}/code/{sha256}",
    name="pipelines.code.upload",
    status_code=204,
    openapi_extra={"requestBody": {"required": True, "content": _BINARY}},
)
async def upload_code(
    request: Request,
    pipeline: str,
    sha256: str,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> Response:
    """Store a code archive that a step of the spec names, before applying the spec."""
    if len(sha256) != _SHA256_LENGTH or any(c not in "0123456789abcdef" for c in sha256):
        raise InvalidInput(f"{sha256!r} is not a SHA-256 in hex")
    pipelines = _pipelines(request)
    writer = await to_thread.run_sync(pipelines.code_writer, access.project)
    await receive_body(request, writer, lambda: writer.commit(expected_sha256=sha256))
    return Response(status_code=204)


@router.get(
    "/{pipeline}/code/{sha256}",
    name="pipelines.code.download",
    response_class=StreamingResponse,
    responses={200: {"content": _BINARY, "description": "the code archive (tar.gz)"}},
)
def download_code(
    request: Request,
    pipeline: str,
    sha256: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> StreamingResponse:
    """A code archive a step of the pipeline names (what `stratus export iac` unpacks)."""
    size, chunks = _pipelines(request).open_code(access.project, pipeline, sha256)
    headers = {"content-length": str(size), "x-stratus-sha256": sha256}
    return StreamingResponse(chunks, media_type="application/gzip", headers=headers)


@router.get("", name="pipelines.list", response_model=Page[s.PipelineRead])
def list_pipelines(
    request: Request,
    access: ListScope = ListAccess(Permission.RESOURCE_READ),
    selector: Selector = None,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.PipelineRead]:
    items, token = _pipelines(request).list_pipelines(access.project, selector, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get("/{pipeline}", name="pipelines.get", response_model=s.PipelineRead)
def get_pipeline(
    request: Request, pipeline: str, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> s.PipelineRead:
    return _pipelines(request).get(access.project, pipeline)


@router.delete("/{pipeline}", name="pipelines.delete", status_code=204)
def delete_pipeline(
    request: Request, pipeline: str, access: ProjectAccess = Access(Permission.RESOURCE_WRITE)
) -> Response:
    _pipelines(request).delete(access.project, pipeline)
    return Response(status_code=204)


@router.post(
    "/{pipeline}/webhook-secret", name="pipelines.webhook.rotate", response_model=s.PipelineRead
)
def rotate_webhook(
    request: Request, pipeline: str, access: ProjectAccess = Access(Permission.RESOURCE_WRITE)
) -> s.PipelineRead:
    """A new webhook secret (shown once); the old one stops working."""
    return _pipelines(request).rotate_webhook(access.project, pipeline)


@router.post(
    "/{pipeline}/runs", name="pipelines.runs.start", status_code=201, response_model=s.RunRead
)
def start_run(
    request: Request,
    pipeline: str,
    body: s.RunCreate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.RunRead:
    """Start a run by hand; datasets not pinned in `datasets` use their newest version."""
    detail = {"reason": body.reason} if body.reason else {}
    return _pipelines(request).start_run(
        access.project,
        pipeline,
        trigger=TriggerKind.manual,
        detail=detail,
        datasets=body.datasets,
        actor=access.principal.subject,
    )


@router.get("/{pipeline}/runs", name="pipelines.runs.list", response_model=Page[s.RunRead])
def list_runs(
    request: Request,
    pipeline: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.RunRead]:
    """A pipeline's runs, newest first."""
    items, token = _pipelines(request).list_runs(access.project, pipeline, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get("/{pipeline}/runs/{run}", name="pipelines.runs.get", response_model=s.RunRead)
def get_run(
    request: Request,
    pipeline: str,
    run: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> s.RunRead:
    return _pipelines(request).get_run(access.project, pipeline, _number(run))


@router.post(
    "/{pipeline}/runs/{run}/cancel", name="pipelines.runs.cancel", response_model=s.RunRead
)
def cancel_run(
    request: Request,
    pipeline: str,
    run: str,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.RunRead:
    """Stop a run: its remaining steps are skipped (a job it started keeps its own state)."""
    return _pipelines(request).cancel_run(
        access.project, pipeline, _number(run), access.principal.subject
    )


@router.post(
    "/{pipeline}/runs/{run}/resume", name="pipelines.runs.resume", response_model=s.RunRead
)
def resume_run(
    request: Request,
    pipeline: str,
    run: str,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.RunRead:
    """Run a failed run again from the step that failed; earlier steps keep their outputs."""
    return _pipelines(request).resume_run(
        access.project, pipeline, _number(run), access.principal.subject
    )


@webhook_router.post(
    "/projects/{project}/pipelines/{pipeline}",
    name="pipelines.webhook",
    status_code=201,
    response_model=s.RunRead,
)
def webhook(
    request: Request, project: str, pipeline: str, body: s.WebhookCall | None = None
) -> s.RunRead:
    """Start a run from a CI system: the pipeline's webhook secret, in the
    `X-Stratus-Webhook-Secret` header, is the credential."""
    secret = request.headers.get(WEBHOOK_HEADER)
    return _pipelines(request).trigger_webhook(project, pipeline, secret, body or s.WebhookCall())
