"""Tracking's HTTP surface: experiments and their runs; a run's batches of params, metrics and
tags, its metric series, artifacts (declare, upload, download) and comparisons of runs."""

from __future__ import annotations

from typing import Annotated, cast

from anyio import to_thread
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from stratus.core.resources import DEFAULT_LIMIT, Page
from stratus.iam.authorization import Access, ListAccess, ListScope, ProjectAccess
from stratus.iam.parameters import Limit, PageToken, Selector
from stratus.iam.roles import Permission
from stratus.storage.routes import ANY_PATH, receive_body
from stratus.tracking import schemas as s
from stratus.tracking.service import TrackingService

experiments = APIRouter(prefix="/api/v1/projects/{project}/experiments", tags=["tracking"])
runs = APIRouter(prefix="/api/v1/projects/{project}/runs", tags=["tracking"])
router = APIRouter()  # both, as the app mounts them (included at the end of this module)

RunId = Annotated[str, Path(max_length=64, description="a run id, `run_…`")]
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _tracking(request: Request) -> TrackingService:
    return cast(TrackingService, request.app.state.tracking)


# --- experiments -----------------------------------------------------------------------------


@experiments.post("", name="experiments.create", status_code=201, response_model=s.ExperimentRead)
def create_experiment(
    request: Request,
    body: s.ExperimentCreate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.ExperimentRead:
    return _tracking(request).create_experiment(access.project, body)


@experiments.get("", name="experiments.list", response_model=Page[s.ExperimentRead])
def list_experiments(
    request: Request,
    access: ListScope = ListAccess(Permission.RESOURCE_READ),
    selector: Selector = None,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.ExperimentRead]:
    items, token = _tracking(request).list_experiments(access.project, selector, limit, page_token)
    return Page(items=items, next_page_token=token)


@experiments.get("/{experiment}", name="experiments.get", response_model=s.ExperimentRead)
def get_experiment(
    request: Request, experiment: str, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> s.ExperimentRead:
    return _tracking(request).get_experiment(access.project, experiment)


@experiments.patch("/{experiment}", name="experiments.update", response_model=s.ExperimentRead)
def update_experiment(
    request: Request,
    experiment: str,
    body: s.ExperimentUpdate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.ExperimentRead:
    return _tracking(request).update_experiment(access.project, experiment, body)


@experiments.delete("/{experiment}", name="experiments.delete", status_code=204)
def delete_experiment(
    request: Request,
    experiment: str,
    force: bool = False,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> Response:
    """Delete an experiment; `force=true` also deletes its runs and their artifacts."""
    _tracking(request).delete_experiment(access.project, experiment, force=force)
    return Response(status_code=204)


@experiments.post(
    "/{experiment}/runs", name="experiments.runs.create", status_code=201, response_model=s.RunRead
)
def create_run(
    request: Request,
    experiment: str,
    body: s.RunCreate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.RunRead:
    """Start a run (state `running`); end it with `PATCH …/runs/{run_id}`."""
    return _tracking(request).create_run(
        access.project, experiment, body, actor=access.principal.subject
    )


@experiments.get("/{experiment}/runs", name="experiments.runs.list", response_model=Page[s.RunRead])
def list_runs(
    request: Request,
    experiment: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    state: Annotated[s.RunState | None, Query(description="only runs in this state")] = None,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.RunRead]:
    """An experiment's runs, newest first, each with its params, tags and latest metrics."""
    items, token = _tracking(request).list_runs(
        access.project, experiment, state, limit, page_token
    )
    return Page(items=items, next_page_token=token)


# --- runs by id ------------------------------------------------------------------------------


@runs.get("/compare", name="runs.compare", response_model=s.RunComparison)
def compare_runs(
    request: Request,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    run_id: Annotated[
        list[str] | None, Query(description="runs to compare, in this order (repeatable)")
    ] = None,
    experiment: Annotated[
        str | None, Query(max_length=63, description="or: an experiment's newest runs")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=s.MAX_COMPARED_RUNS, description="how many of its newest runs")
    ] = 20,
) -> s.RunComparison:
    """Runs side by side: each param and latest metric, one value per run, and whether the
    runs differ in it."""
    return _tracking(request).compare(access.project, run_id, experiment, limit)


@runs.get("/{run_id}", name="runs.get", response_model=s.RunRead)
def get_run(
    request: Request, run_id: RunId, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> s.RunRead:
    return _tracking(request).get_run(access.project, run_id)


@runs.patch("/{run_id}", name="runs.update", response_model=s.RunRead)
def update_run(
    request: Request,
    run_id: RunId,
    body: s.RunUpdate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.RunRead:
    """End the run (`state`: finished, failed, killed; once), rename it, or set tags."""
    return _tracking(request).update_run(access.project, run_id, body)


@runs.delete("/{run_id}", name="runs.delete", status_code=204)
def delete_run(
    request: Request, run_id: RunId, access: ProjectAccess = Access(Permission.RESOURCE_WRITE)
) -> Response:
    """Delete a run with its metrics and artifacts."""
    _tracking(request).delete_run(access.project, run_id)
    return Response(status_code=204)


@runs.post("/{run_id}/log", name="runs.log", response_model=s.RunRead)
def log_batch(
    request: Request,
    run_id: RunId,
    body: s.RunLog,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.RunRead:
    """Log params, metric points and tags in one transaction (at most 100 params, 1000
    points and 100 tags per call). A param is written once: another value for it is a 409
    and nothing of the batch is kept. Metric values may be "NaN", "Infinity", "-Infinity"."""
    return _tracking(request).log(access.project, run_id, body)


@runs.get("/{run_id}/metrics", name="runs.metrics.list", response_model=list[s.MetricSummary])
def list_metrics(
    request: Request, run_id: RunId, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> list[s.MetricSummary]:
    """Each metric's latest value and step, its number of points and finite min/max."""
    return _tracking(request).metrics(access.project, run_id)


@runs.get(
    "/{run_id}/metrics/{metric:" + ANY_PATH + "}",
    name="runs.metrics.history",
    response_model=Page[s.MetricPointRead],
)
def metric_history(
    request: Request,
    run_id: RunId,
    metric: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.MetricPointRead]:
    """A metric's points in step order."""
    items, token = _tracking(request).metric_history(
        access.project, run_id, metric, limit, page_token
    )
    return Page(items=items, next_page_token=token)


@runs.post(
    "/{run_id}/artifacts", name="runs.artifacts.declare", response_model=list[s.ArtifactRead]
)
def declare_artifacts(
    request: Request,
    run_id: RunId,
    body: s.ArtifactsDeclare,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> list[s.ArtifactRead]:
    """Declare files to add to the run; upload those not `stored` (bytes the project holds
    already need no upload)."""
    return _tracking(request).declare_artifacts(access.project, run_id, body)


@runs.put(
    "/{run_id}/artifacts/{path:" + ANY_PATH + "}",
    name="runs.artifacts.upload",
    response_model=s.ArtifactRead,
    openapi_extra={"requestBody": {"required": True, "content": _BINARY}},
)
async def upload_artifact(
    request: Request,
    run_id: RunId,
    path: str,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.ArtifactRead:
    """Upload a declared artifact (streamed; checked against its SHA-256 and size)."""
    tracking = _tracking(request)
    upload = await to_thread.run_sync(tracking.begin_artifact_upload, access.project, run_id, path)
    return await receive_body(request, upload, lambda: tracking.finish_artifact_upload(upload))


@runs.get("/{run_id}/artifacts", name="runs.artifacts.list", response_model=Page[s.ArtifactRead])
def list_artifacts(
    request: Request,
    run_id: RunId,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.ArtifactRead]:
    items, token = _tracking(request).list_artifacts(access.project, run_id, limit, page_token)
    return Page(items=items, next_page_token=token)


@runs.get(
    "/{run_id}/artifacts/{path:" + ANY_PATH + "}",
    name="runs.artifacts.download",
    response_class=StreamingResponse,
    responses={200: {"content": _BINARY, "description": "the artifact's bytes"}},
)
def download_artifact(
    request: Request,
    run_id: RunId,
    path: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> StreamingResponse:
    entry, chunks = _tracking(request).open_artifact(access.project, run_id, path)
    headers = {"content-length": str(entry.size), "x-stratus-sha256": entry.sha256}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


router.include_router(experiments)
router.include_router(runs)
