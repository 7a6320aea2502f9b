"""The secrets HTTP surface: set (a new version), list, show and delete a project's secrets
(editors and owners set and delete; members who read resources see names and versions) and
the platform's own (`/api/v1/secrets`, platform admins). No route returns a value."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Path, Request, Response

from stratus.core.resources import DEFAULT_LIMIT, Page
from stratus.iam.authorization import Access, Admin, ProjectAccess
from stratus.iam.parameters import Limit, PageToken
from stratus.iam.roles import Permission
from stratus.secrets import schemas as s
from stratus.secrets.platform_secrets import PlatformSecrets
from stratus.secrets.service import SecretService

router = APIRouter(prefix="/api/v1/projects/{project}/secrets", tags=["secrets"])
SecretPath = Annotated[str, Path(description="the secret's name", max_length=128)]


def _secrets(request: Request) -> SecretService:
    return cast(SecretService, request.app.state.secrets)


@router.put("/{name}", name="secrets.set", response_model=s.SecretRead)
def set_secret(
    request: Request,
    name: SecretPath,
    body: s.SecretSet,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.SecretRead:
    """Set a secret: a new version, which jobs and replicas started from now on get. The value
    is never returned, logged or audited."""
    return _secrets(request).set(access.project, name, body, actor=access.principal.subject)


@router.get("", name="secrets.list", response_model=Page[s.SecretRead])
def list_secrets(
    request: Request,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.SecretRead]:
    items, token = _secrets(request).list(access.project, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get("/{name}", name="secrets.get", response_model=s.SecretRead)
def get_secret(
    request: Request, name: SecretPath, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> s.SecretRead:
    """A secret's versions: who set each, and when (never a value)."""
    return _secrets(request).get(access.project, name)


@router.delete("/{name}", name="secrets.delete", status_code=204)
def delete_secret(
    request: Request, name: SecretPath, access: ProjectAccess = Access(Permission.RESOURCE_WRITE)
) -> Response:
    """Delete every version of a secret (jobs and replicas already running keep theirs)."""
    _secrets(request).delete(access.project, name)
    return Response(status_code=204)


# --- the platform's own secrets (platform admins) ---------------------------------------------

platform_router = APIRouter(prefix="/api/v1/secrets", tags=["secrets"])


def _platform(request: Request) -> PlatformSecrets:
    return cast(PlatformSecrets, request.app.state.platform_secrets)


@platform_router.put("/{name}", name="platform_secrets.set", response_model=s.SecretRead)
def set_platform_secret(
    request: Request, name: SecretPath, body: s.SecretSet, admin: Admin
) -> s.SecretRead:
    """Set a platform secret (admins only), such as the object store's credentials, which
    settings name as `secret:NAME`. Never returned, logged or audited."""
    return _platform(request).set(name, body, actor=admin.subject)


@platform_router.get("", name="platform_secrets.list", response_model=Page[s.SecretRead])
def list_platform_secrets(request: Request, _: Admin) -> Page[s.SecretRead]:
    return Page(items=_platform(request).list(), next_page_token=None)


@platform_router.get("/{name}", name="platform_secrets.get", response_model=s.SecretRead)
def get_platform_secret(request: Request, name: SecretPath, _: Admin) -> s.SecretRead:
    return _platform(request).get(name)


@platform_router.delete("/{name}", name="platform_secrets.delete", status_code=204)
def delete_platform_secret(request: Request, name: SecretPath, _: Admin) -> Response:
    _platform(request).delete(name)
    return Response(status_code=204)
