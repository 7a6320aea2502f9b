"""The one authorization dependency every route uses.

No credential → 401; a project the caller has no role in → 404 (its existence is not
leaked); a role that lacks the permission → 403. The resolved principal is kept on the
request so the audit log can name the actor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stratus.core.errors import PermissionDenied, Unauthenticated
from stratus.iam.authenticating import Authenticator
from stratus.iam.errors import admins_only, no_credential, project_not_found
from stratus.iam.principals import Principal
from stratus.iam.roles import Permission
from stratus.iam.schemas import ALL_PROJECTS
from stratus.iam.throttling import Throttle

ProjectName = Annotated[str, Path(description="project name", max_length=63)]


def credential_of(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <credential>'")
        return value.strip()
    return request.headers.get("x-api-key") or None


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="stratusKey",
    description="An API key (`stk_…`) or a login token, as `Authorization: Bearer …`.",
)


def authenticated(
    request: Request,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> Principal:
    """Dependency: the calling principal (401 without a valid credential)."""
    existing = getattr(request.state, "principal", None)
    if existing is not None:
        principal = cast(Principal, existing)
    else:
        credential = credential_of(request)
        if credential is None:
            raise no_credential()
        authenticator = cast(Authenticator, request.app.state.authenticator)
        principal = authenticator.authenticate(credential)
        request.state.principal = principal
    if not getattr(request.state, "throttled", False):  # one request counts once
        request.state.throttled = True
        throttle = cast("Throttle | None", getattr(request.app.state, "throttle", None))
        if throttle is not None:
            project = request.path_params.get("project")
            throttle.caller(principal, project if isinstance(project, str) else None)
    return principal


Caller = Annotated[Principal, Depends(authenticated)]


def admin(principal: Caller) -> Principal:
    """Dependency: a platform admin (key not restricted to a project)."""
    if not principal.acts_as_admin:
        raise admins_only("do this")
    return principal


Admin = Annotated[Principal, Depends(admin)]


@dataclass(frozen=True)
class ProjectAccess:
    principal: Principal
    project: str


def check_project(principal: Principal, project: str, permission: Permission) -> ProjectAccess:
    if not principal.can_see(project):
        raise project_not_found(project)
    if not principal.can(permission, project):
        role = principal.role_in(project)
        raise PermissionDenied(
            f"your role {role} in project {project!r} does not allow {permission.value}"
        )
    return ProjectAccess(principal, project)


def project_access(permission: Permission) -> Callable[..., Any]:
    """Dependency factory: the caller may do `permission` in the path's `{project}`."""

    def dependency(principal: Caller, project: ProjectName) -> ProjectAccess:
        return check_project(principal, project, permission)

    return dependency


def Access(permission: Permission) -> Any:  # noqa: N802 - reads like a type in signatures
    return Depends(project_access(permission))


@dataclass(frozen=True)
class ListScope:
    """Where a list route lists: one project, or (None) every project."""

    principal: Principal
    project: str | None


def list_access(permission: Permission) -> Callable[..., Any]:
    """Dependency factory for list routes: the path's `{project}`, as `project_access`, or
    `-` (ALL_PROJECTS) for every project, which only a platform admin may ask (403)."""

    def dependency(principal: Caller, project: ProjectName) -> ListScope:
        if project == ALL_PROJECTS:
            if not principal.acts_as_admin:
                raise admins_only("list across every project (project '-')")
            return ListScope(principal, None)
        check_project(principal, project, permission)
        return ListScope(principal, project)

    return dependency


def ListAccess(permission: Permission) -> Any:  # noqa: N802 - reads like a type in signatures
    return Depends(list_access(permission))
