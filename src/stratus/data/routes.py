"""The datasets' HTTP surface: datasets, version pushes (declare, upload, commit), profiles,
validation reports and file downloads."""

from __future__ import annotations

from typing import cast

from anyio import to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from stratus.core.errors import InvalidInput
from stratus.core.resources import DEFAULT_LIMIT, Page
from stratus.data import schemas as s
from stratus.data.service import DataService
from stratus.iam.authorization import Access, ListAccess, ListScope, ProjectAccess
from stratus.iam.parameters import Limit, PageToken, Selector
from stratus.iam.roles import Permission
from stratus.storage.routes import ANY_PATH, receive_body

router = APIRouter(prefix="/api/v1/projects/{project}/datasets", tags=["datasets"])

_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _data(request: Request) -> DataService:
    return cast(DataService, request.app.state.data)


def _number(ref: str) -> int:
    if not ref.isdigit() or int(ref) < 1:
        raise InvalidInput(f"{ref!r} is not a version number")
    return int(ref)


@router.post("", name="datasets.create", status_code=201, response_model=s.DatasetRead)
def create_dataset(
    request: Request,
    body: s.DatasetCreate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.DatasetRead:
    return _data(request).create(access.project, body)


@router.get("", name="datasets.list", response_model=Page[s.DatasetRead])
def list_datasets(
    request: Request,
    access: ListScope = ListAccess(Permission.RESOURCE_READ),
    selector: Selector = None,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.DatasetRead]:
    items, token = _data(request).list_datasets(access.project, selector, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get("/{dataset}", name="datasets.get", response_model=s.DatasetRead)
def get_dataset(
    request: Request, dataset: str, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> s.DatasetRead:
    return _data(request).get(access.project, dataset)


@router.patch("/{dataset}", name="datasets.update", response_model=s.DatasetRead)
def update_dataset(
    request: Request,
    dataset: str,
    body: s.DatasetUpdate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.DatasetRead:
    """Change the description, labels or column tags (pii, label, id, timestamp)."""
    return _data(request).update(access.project, dataset, body)


@router.delete("/{dataset}", name="datasets.delete", status_code=204)
def delete_dataset(
    request: Request,
    dataset: str,
    force: bool = False,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> Response:
    """Delete a dataset; `force=true` also deletes its versions."""
    _data(request).delete(access.project, dataset, force=force)
    return Response(status_code=204)


# --- versions --------------------------------------------------------------------------------


@router.post(
    "/{dataset}/versions",
    name="datasets.versions.create",
    status_code=201,
    response_model=s.VersionRead,
    responses={200: {"model": s.VersionRead, "description": "the same content exists already"}},
)
def create_version(
    request: Request,
    dataset: str,
    body: s.VersionCreate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> JSONResponse:
    """Declare a version's files; upload those not `stored`, then commit. Content pushed
    before answers its existing version (200, `existing: true`): nothing to upload."""
    read, new = _data(request).create_version(
        access.project, dataset, body, actor=access.principal.subject
    )
    return JSONResponse(read.model_dump(mode="json"), status_code=201 if new else 200)


@router.put(
    "/{dataset}/versions/{version}/files/{path:" + ANY_PATH + "}",
    name="datasets.versions.upload",
    response_model=s.VersionFile,
    openapi_extra={"requestBody": {"required": True, "content": _BINARY}},
)
async def upload_file(
    request: Request,
    dataset: str,
    version: str,
    path: str,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.VersionFile:
    """Upload one declared file of a pending version (streamed; checked against its SHA-256)."""
    data = _data(request)
    upload = await to_thread.run_sync(
        data.begin_upload, access.project, dataset, _number(version), path
    )
    return await receive_body(request, upload, lambda: data.finish_upload(upload))


@router.post(
    "/{dataset}/versions/{version}/commit",
    name="datasets.versions.commit",
    response_model=s.VersionRead,
)
def commit_version(
    request: Request,
    dataset: str,
    version: str,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.VersionRead:
    """Read the files, infer the schema and compute the profile; the version is then ready.
    A file that cannot be read is a 400 naming it, and the pending version is removed."""
    return _data(request).commit_version(access.project, dataset, _number(version))


@router.get(
    "/{dataset}/versions", name="datasets.versions.list", response_model=Page[s.VersionRead]
)
def list_versions(
    request: Request,
    dataset: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.VersionRead]:
    """A dataset's versions, newest first."""
    items, token = _data(request).list_versions(access.project, dataset, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get(
    "/{dataset}/versions/{version}", name="datasets.versions.get", response_model=s.VersionRead
)
def get_version(
    request: Request,
    dataset: str,
    version: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> s.VersionRead:
    """A version by number, or `latest`."""
    return _data(request).get_version(access.project, dataset, version)


@router.get(
    "/{dataset}/versions/{version}/profile",
    name="datasets.versions.profile",
    response_model=s.ProfileRead,
)
def get_profile(
    request: Request,
    dataset: str,
    version: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> s.ProfileRead:
    """Per column: count, nulls, and min/max/mean/std/quantiles/histogram for numbers or the
    top categories for strings."""
    return _data(request).profile(access.project, dataset, version)


@router.post(
    "/{dataset}/versions/{version}/validations",
    name="datasets.versions.validate",
    status_code=201,
    response_model=s.ValidationRead,
)
def validate_version(
    request: Request,
    dataset: str,
    version: str,
    body: s.ValidationCreate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.ValidationRead:
    """Check a version against validation rules and store the report with it. A version that
    fails its rules is still a 201: the report says `passed: false` and which rules failed."""
    return _data(request).validate(
        access.project, dataset, version, body.rules, actor=access.principal.subject
    )


@router.get(
    "/{dataset}/versions/{version}/validations",
    name="datasets.versions.validations",
    response_model=Page[s.ValidationRead],
)
def list_validations(
    request: Request,
    dataset: str,
    version: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.ValidationRead]:
    """A version's validation reports, newest first."""
    items, token = _data(request).list_validations(
        access.project, dataset, version, limit, page_token
    )
    return Page(items=items, next_page_token=token)


@router.get(
    "/{dataset}/versions/{version}/validations/{validation_id}",
    name="datasets.versions.validation",
    response_model=s.ValidationRead,
)
def get_validation(
    request: Request,
    dataset: str,
    version: str,
    validation_id: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> s.ValidationRead:
    return _data(request).get_validation(access.project, dataset, version, validation_id)


@router.delete("/{dataset}/versions/{version}", name="datasets.versions.delete", status_code=204)
def delete_version(
    request: Request,
    dataset: str,
    version: str,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> Response:
    _data(request).delete_version(access.project, dataset, version)
    return Response(status_code=204)


@router.get(
    "/{dataset}/versions/{version}/files/{path:" + ANY_PATH + "}",
    name="datasets.versions.download",
    response_class=StreamingResponse,
    responses={200: {"content": _BINARY, "description": "the file's bytes"}},
)
def download_file(
    request: Request,
    dataset: str,
    version: str,
    path: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> StreamingResponse:
    entry, chunks = _data(request).open_file(access.project, dataset, version, path)
    headers = {"content-length": str(entry.size), "x-stratus-sha256": entry.sha256}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)
