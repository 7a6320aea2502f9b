"""The registry's HTTP surface: models, version pushes (declare, upload, commit), aliases."""

from __future__ import annotations

from typing import Annotated, cast

from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from stratus.core.errors import InvalidInput
from stratus.core.resources import DEFAULT_LIMIT, Page
from stratus.iam.authorization import Access, ListAccess, ListScope, ProjectAccess
from stratus.iam.parameters import Limit, PageToken, Selector
from stratus.iam.roles import Permission
from stratus.registry import schemas as s
from stratus.registry.service import RegistryService
from stratus.storage.routes import ANY_PATH, receive_body

router = APIRouter(prefix="/api/v1/projects/{project}/models", tags=["registry"])

VersionRef = Annotated[str, "a version number, an alias, or 'latest'"]
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _registry(request: Request) -> RegistryService:
    return cast(RegistryService, request.app.state.registry)


def _number(ref: str) -> int:
    if not ref.isdigit() or int(ref) < 1:
        raise InvalidInput(f"{ref!r} is not a version number")
    return int(ref)


@router.post("", name="models.create", status_code=201, response_model=s.ModelRead)
def create_model(
    request: Request, body: s.ModelCreate, access: ProjectAccess = Access(Permission.RESOURCE_WRITE)
) -> s.ModelRead:
    return _registry(request).create_model(access.project, body)


@router.get("", name="models.list", response_model=Page[s.ModelRead])
def list_models(
    request: Request,
    access: ListScope = ListAccess(Permission.RESOURCE_READ),
    selector: Selector = None,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.ModelRead]:
    items, token = _registry(request).list_models(access.project, selector, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get("/{model}", name="models.get", response_model=s.ModelRead)
def get_model(
    request: Request, model: str, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> s.ModelRead:
    return _registry(request).get_model(access.project, model)


@router.patch("/{model}", name="models.update", response_model=s.ModelRead)
def update_model(
    request: Request,
    model: str,
    body: s.ModelUpdate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.ModelRead:
    return _registry(request).update_model(access.project, model, body)


@router.delete("/{model}", name="models.delete", status_code=204)
def delete_model(
    request: Request,
    model: str,
    force: bool = False,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> Response:
    """Delete a model; `force=true` also deletes its versions."""
    _registry(request).delete_model(access.project, model, force=force)
    return Response(status_code=204)


# --- versions ------------------------------------------------------------------------------


@router.post(
    "/{model}/versions",
    name="models.versions.create",
    status_code=201,
    response_model=s.VersionRead,
)
def create_version(
    request: Request,
    model: str,
    body: s.VersionCreate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.VersionRead:
    """Declare a version's files; upload those not `stored`, then commit it."""
    return _registry(request).create_version(
        access.project,
        model,
        body,
        actor=access.principal.subject,
        can_trust=access.principal.can(Permission.PROJECT_ADMIN, access.project),
    )


@router.put(
    "/{model}/versions/{version}/files/{path:" + ANY_PATH + "}",
    name="models.versions.upload",
    response_model=s.VersionFile,
    openapi_extra={"requestBody": {"required": True, "content": _BINARY}},
)
async def upload_file(
    request: Request,
    model: str,
    version: str,
    path: str,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.VersionFile:
    """Upload one declared file of a pending version (streamed; checked against its SHA-256)."""
    registry = _registry(request)
    upload = await to_thread.run_sync(
        registry.begin_upload, access.project, model, _number(version), path
    )
    return await receive_body(request, upload, lambda: registry.finish_upload(upload))


@router.post(
    "/{model}/versions/{version}/commit",
    name="models.versions.commit",
    response_model=s.VersionRead,
)
def commit_version(
    request: Request,
    model: str,
    version: str,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.VersionRead:
    """Make a pending version ready (and immutable) once every file is stored and it loads
    (tried in a child process under limits; one that does not load is a 400 naming the reason,
    and is deleted)."""
    return _registry(request).commit_version(access.project, model, _number(version))


@router.get("/{model}/versions", name="models.versions.list", response_model=Page[s.VersionRead])
def list_versions(
    request: Request,
    model: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.VersionRead]:
    """A model's versions, newest first."""
    items, token = _registry(request).list_versions(access.project, model, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get("/{model}/versions/{version}", name="models.versions.get", response_model=s.VersionRead)
def get_version(
    request: Request,
    model: str,
    version: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> s.VersionRead:
    """A version by number, by alias, or `latest`."""
    return _registry(request).get_version(access.project, model, version)


@router.patch(
    "/{model}/versions/{version}", name="models.versions.update", response_model=s.VersionRead
)
def update_version(
    request: Request,
    model: str,
    version: str,
    body: s.VersionUpdate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.VersionRead:
    """Change a version's tags, description or card; owners may also mark it trusted."""
    return _registry(request).update_version(
        access.project,
        model,
        version,
        body,
        can_trust=access.principal.can(Permission.PROJECT_ADMIN, access.project),
    )


@router.post(
    "/{model}/versions/{version}/accept",
    name="models.versions.accept",
    response_model=s.VersionRead,
)
def accept_version(
    request: Request,
    model: str,
    version: str,
    body: s.VersionAccept,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.VersionRead:
    """Accept a version a gate rejected (owners only): it may get aliases and be deployed again;
    the verdict keeps the refusal and who overrode it, when and why."""
    return _registry(request).accept_version(
        access.project,
        model,
        version,
        body,
        actor=access.principal.subject,
        can_override=access.principal.can(Permission.PROJECT_ADMIN, access.project),
    )


@router.delete("/{model}/versions/{version}", name="models.versions.delete", status_code=204)
def delete_version(
    request: Request,
    model: str,
    version: str,
    force: bool = False,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> Response:
    _registry(request).delete_version(access.project, model, version, force=force)
    return Response(status_code=204)


@router.get(
    "/{model}/versions/{version}/files/{path:" + ANY_PATH + "}",
    name="models.versions.download",
    response_class=StreamingResponse,
    responses={200: {"content": _BINARY, "description": "the file's bytes"}},
)
def download_file(
    request: Request,
    model: str,
    version: str,
    path: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> StreamingResponse:
    entry, chunks = _registry(request).open_file(access.project, model, version, path)
    headers = {"content-length": str(entry.size), "x-stratus-sha256": entry.sha256}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@router.get("/{model}/versions/{version}/card", name="models.card.get", response_model=s.CardRead)
def get_card(
    request: Request,
    model: str,
    version: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> s.CardRead:
    found = _registry(request).get_version(access.project, model, version)
    card = _registry(request).card(access.project, model, version)
    return s.CardRead(model=model, version=found.version, card=card)


# --- aliases -------------------------------------------------------------------------------


@router.get("/{model}/aliases", name="models.aliases.list", response_model=Page[s.AliasRead])
def list_aliases(
    request: Request,
    model: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.AliasRead]:
    items, token = _registry(request).list_aliases(access.project, model, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.put("/{model}/aliases/{alias}", name="models.aliases.set", response_model=s.AliasRead)
def set_alias(
    request: Request,
    model: str,
    alias: str,
    body: s.AliasSet,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.AliasRead:
    """Point an alias at a version (creating or moving it); the move is kept in its history."""
    return _registry(request).set_alias(
        access.project, model, s.check_alias(alias), body, actor=access.principal.subject
    )


@router.delete("/{model}/aliases/{alias}", name="models.aliases.delete", status_code=204)
def delete_alias(
    request: Request,
    model: str,
    alias: str,
    reason: Annotated[str, Query(max_length=2000)] = "",
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> Response:
    _registry(request).delete_alias(
        access.project, model, alias, actor=access.principal.subject, reason=reason
    )
    return Response(status_code=204)


@router.get(
    "/{model}/alias-history", name="models.aliases.history", response_model=Page[s.AliasEvent]
)
def alias_history(
    request: Request,
    model: str,
    alias: Annotated[str | None, Query(max_length=63)] = None,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.AliasEvent]:
    """Every move of the model's aliases (or of one), newest first: who, when, from, to, why."""
    items, token = _registry(request).alias_history(access.project, model, alias, limit, page_token)
    return Page(items=items, next_page_token=token)
