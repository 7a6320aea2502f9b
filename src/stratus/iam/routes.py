"""IAM's HTTP surface: a thin layer over IamService, Authenticator and AuditLog."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, cast

from fastapi import APIRouter, Query, Request, Response

from stratus.core.errors import Unauthenticated
from stratus.core.resource_schemas import RateLimitSpec
from stratus.core.resources import DEFAULT_LIMIT, Page
from stratus.iam import schemas as s
from stratus.iam.audit import AuditLog
from stratus.iam.authenticating import Authenticator
from stratus.iam.authorization import (
    Access,
    Admin,
    Caller,
    ProjectAccess,
    ProjectName,
    check_project,
)
from stratus.iam.authorization import admin as require_admin
from stratus.iam.errors import admins_only
from stratus.iam.parameters import Limit, PageToken, Selector
from stratus.iam.principals import Principal
from stratus.iam.roles import Permission
from stratus.iam.service import IamService
from stratus.iam.throttling import Throttle

router = APIRouter(prefix="/api/v1")


def _iam(request: Request) -> IamService:
    return cast(IamService, request.app.state.iam)


def _audit(request: Request) -> AuditLog:
    return cast(AuditLog, request.app.state.audit)


# --- auth ------------------------------------------------------------------------------------


@router.post("/auth/login", name="auth.login", response_model=s.TokenRead, tags=["auth"])
def login(request: Request, body: s.LoginRequest) -> s.TokenRead:
    """Exchange a username and password for a short-lived token."""
    request.state.actor_hint = f"user:{body.username}"
    authenticator = cast(Authenticator, request.app.state.authenticator)
    throttle = cast(Throttle, request.app.state.throttle)
    source = request.client.host if request.client else ""
    throttle.before_login(body.username, source)
    try:
        token, expires = authenticator.login(body.username, body.password)
    except Unauthenticated:
        throttle.login_failed(body.username, source)
        raise
    throttle.login_succeeded(body.username)
    return s.TokenRead(token=token, expires_at=datetime.fromisoformat(expires), user=body.username)


@router.get("/auth/whoami", name="auth.whoami", response_model=s.WhoAmI, tags=["auth"])
def whoami(principal: Caller) -> s.WhoAmI:
    return s.WhoAmI(
        subject=principal.subject,
        kind=principal.kind,
        name=principal.name,
        is_admin=principal.is_admin,
        key_id=principal.key_id,
        key_project=principal.key_project,
        roles=dict(principal.roles),
    )


# --- projects --------------------------------------------------------------------------------


@router.post(
    "/projects",
    name="projects.create",
    status_code=201,
    response_model=s.ProjectRead,
    tags=["projects"],
)
def create_project(request: Request, principal: Caller, body: s.ProjectCreate) -> s.ProjectRead:
    """Create a project; its creator becomes its owner."""
    request.state.audit_project = body.name
    return _iam(request).create_project(principal, body)


@router.get(
    "/projects", name="projects.list", response_model=Page[s.ProjectRead], tags=["projects"]
)
def list_projects(
    request: Request,
    principal: Caller,
    selector: Selector = None,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.ProjectRead]:
    items, token = _iam(request).list_projects(principal, selector, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get(
    "/projects/{project}", name="projects.get", response_model=s.ProjectRead, tags=["projects"]
)
def get_project(
    request: Request, access: ProjectAccess = Access(Permission.PROJECT_READ)
) -> s.ProjectRead:
    return _iam(request).get_project(access.principal, access.project)


@router.patch(
    "/projects/{project}", name="projects.update", response_model=s.ProjectRead, tags=["projects"]
)
def update_project(
    request: Request,
    body: s.ProjectUpdate,
    access: ProjectAccess = Access(Permission.PROJECT_ADMIN),
) -> s.ProjectRead:
    return _iam(request).update_project(access.principal, access.project, body)


@router.put(
    "/projects/{project}/rate-limit",
    name="projects.rate_limit.set",
    response_model=s.ProjectRead,
    tags=["projects"],
)
def set_project_rate_limit(
    request: Request, principal: Caller, project: ProjectName, body: RateLimitSpec
) -> s.ProjectRead:
    """Limit each caller's requests into the project (admins only): every API key or login
    gets its own bucket of `requests_per_second`, `burst` at once; past it, 429."""
    _admin_in(principal, project)
    return _iam(request).set_project_limit(principal, project, body)


@router.delete(
    "/projects/{project}/rate-limit",
    name="projects.rate_limit.delete",
    response_model=s.ProjectRead,
    tags=["projects"],
)
def delete_project_rate_limit(
    request: Request, principal: Caller, project: ProjectName
) -> s.ProjectRead:
    _admin_in(principal, project)
    return _iam(request).set_project_limit(principal, project, None)


def _admin_in(principal: Principal, project: str) -> None:
    """A platform admin's change to a project: 404 to those who cannot see it, as for any
    project route, then 403 to those who are not admins."""
    check_project(principal, project, Permission.PROJECT_READ)
    if not principal.acts_as_admin:
        raise admins_only("set a project's rate limit")


@router.delete("/projects/{project}", name="projects.delete", status_code=204, tags=["projects"])
def delete_project(
    request: Request, access: ProjectAccess = Access(Permission.PROJECT_ADMIN)
) -> Response:
    """Delete a project; refused while it still holds resources."""
    _iam(request).delete_project(access.project)
    return Response(status_code=204)


# --- members ---------------------------------------------------------------------------------


@router.get(
    "/projects/{project}/members",
    name="members.list",
    response_model=Page[s.MemberRead],
    tags=["members"],
)
def list_members(
    request: Request,
    access: ProjectAccess = Access(Permission.PROJECT_READ),
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.MemberRead]:
    items, token = _iam(request).list_members(access.project, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.put(
    "/projects/{project}/members",
    name="members.set",
    response_model=s.MemberRead,
    tags=["members"],
)
def set_member(
    request: Request, body: s.MemberSet, access: ProjectAccess = Access(Permission.PROJECT_ADMIN)
) -> s.MemberRead:
    """Give a user or service account a role in the project (replacing any role it had)."""
    return _iam(request).set_member(access.project, body)


@router.delete(
    "/projects/{project}/members/{subject}",
    name="members.remove",
    status_code=204,
    tags=["members"],
)
def remove_member(
    request: Request, subject: str, access: ProjectAccess = Access(Permission.PROJECT_ADMIN)
) -> Response:
    """Remove `user:NAME` or `serviceaccount:NAME` from the project."""
    _iam(request).remove_member(access.project, subject)
    return Response(status_code=204)


# --- service accounts ------------------------------------------------------------------------

SA = "/projects/{project}/serviceaccounts"


@router.post(
    SA,
    name="serviceaccounts.create",
    status_code=201,
    response_model=s.ServiceAccountRead,
    tags=["service accounts"],
)
def create_service_account(
    request: Request,
    body: s.ServiceAccountCreate,
    access: ProjectAccess = Access(Permission.PROJECT_ADMIN),
) -> s.ServiceAccountRead:
    return _iam(request).create_service_account(access.project, body)


@router.get(
    SA,
    name="serviceaccounts.list",
    response_model=Page[s.ServiceAccountRead],
    tags=["service accounts"],
)
def list_service_accounts(
    request: Request,
    access: ProjectAccess = Access(Permission.PROJECT_READ),
    selector: Selector = None,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.ServiceAccountRead]:
    items, token = _iam(request).list_service_accounts(access.project, selector, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get(
    SA + "/{name}",
    name="serviceaccounts.get",
    response_model=s.ServiceAccountRead,
    tags=["service accounts"],
)
def get_service_account(
    request: Request, name: str, access: ProjectAccess = Access(Permission.PROJECT_READ)
) -> s.ServiceAccountRead:
    return _iam(request).get_service_account(access.project, name)


@router.patch(
    SA + "/{name}",
    name="serviceaccounts.update",
    response_model=s.ServiceAccountRead,
    tags=["service accounts"],
)
def update_service_account(
    request: Request,
    name: str,
    body: s.ServiceAccountUpdate,
    access: ProjectAccess = Access(Permission.PROJECT_ADMIN),
) -> s.ServiceAccountRead:
    return _iam(request).update_service_account(access.project, name, body)


@router.delete(
    SA + "/{name}", name="serviceaccounts.delete", status_code=204, tags=["service accounts"]
)
def delete_service_account(
    request: Request, name: str, access: ProjectAccess = Access(Permission.PROJECT_ADMIN)
) -> Response:
    _iam(request).delete_service_account(access.project, name)
    return Response(status_code=204)


@router.post(
    SA + "/{name}/keys",
    name="serviceaccounts.keys.create",
    status_code=201,
    response_model=s.KeyCreated,
    tags=["service accounts"],
)
def create_service_account_key(
    request: Request,
    name: str,
    body: s.ServiceAccountKeyCreate,
    access: ProjectAccess = Access(Permission.PROJECT_ADMIN),
) -> s.KeyCreated:
    """Create an API key for the service account; its secret is shown once."""
    return _iam(request).create_service_account_key(access.principal, access.project, name, body)


@router.get(
    SA + "/{name}/keys",
    name="serviceaccounts.keys.list",
    response_model=Page[s.KeyRead],
    tags=["service accounts"],
)
def list_service_account_keys(
    request: Request,
    name: str,
    access: ProjectAccess = Access(Permission.PROJECT_ADMIN),
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.KeyRead]:
    items, token = _iam(request).list_service_account_keys(access.project, name, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.delete(
    SA + "/{name}/keys/{key_id}",
    name="serviceaccounts.keys.revoke",
    response_model=s.KeyRead,
    tags=["service accounts"],
)
def revoke_service_account_key(
    request: Request,
    name: str,
    key_id: str,
    access: ProjectAccess = Access(Permission.PROJECT_ADMIN),
) -> s.KeyRead:
    return _iam(request).revoke_service_account_key(access.project, name, key_id)


@router.post(
    SA + "/{name}/keys/{key_id}/rotate",
    name="serviceaccounts.keys.rotate",
    status_code=201,
    response_model=s.KeyRotated,
    tags=["service accounts"],
)
def rotate_service_account_key(
    request: Request,
    name: str,
    key_id: str,
    body: s.KeyRotate | None = None,
    access: ProjectAccess = Access(Permission.PROJECT_ADMIN),
) -> s.KeyRotated:
    """A new key like this one (its secret shown once); this one keeps working for
    `overlap_seconds` (default a day), then expires."""
    overlap = (body or s.KeyRotate()).overlap_seconds
    return _iam(request).rotate_service_account_key(
        access.principal, access.project, name, key_id, overlap
    )


# --- keys ------------------------------------------------------------------------------------


@router.post(
    "/keys", name="keys.create", status_code=201, response_model=s.KeyCreated, tags=["keys"]
)
def create_key(request: Request, principal: Caller, body: s.KeyCreate) -> s.KeyCreated:
    """Create an API key for yourself (or, as an admin, for another user)."""
    return _iam(request).create_key(principal, body)


@router.get("/keys", name="keys.list", response_model=Page[s.KeyRead], tags=["keys"])
def list_keys(
    request: Request,
    principal: Caller,
    all: bool = False,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.KeyRead]:
    """Your keys; `all=true` lists every user's (admins only)."""
    items, token = _iam(request).list_keys(principal, all, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.put(
    "/keys/{key_id}/rate-limit",
    name="keys.rate_limit.set",
    response_model=s.KeyRead,
    tags=["keys"],
)
def set_key_rate_limit(request: Request, _: Admin, key_id: str, body: RateLimitSpec) -> s.KeyRead:
    """Limit one API key's requests, wherever they go (admins only); past it, 429."""
    return _iam(request).set_key_limit(key_id, body)


@router.delete(
    "/keys/{key_id}/rate-limit",
    name="keys.rate_limit.delete",
    response_model=s.KeyRead,
    tags=["keys"],
)
def delete_key_rate_limit(request: Request, _: Admin, key_id: str) -> s.KeyRead:
    return _iam(request).set_key_limit(key_id, None)


@router.delete("/keys/{key_id}", name="keys.revoke", response_model=s.KeyRead, tags=["keys"])
def revoke_key(request: Request, principal: Caller, key_id: str) -> s.KeyRead:
    return _iam(request).revoke_key(principal, key_id)


@router.post(
    "/keys/{key_id}/rotate",
    name="keys.rotate",
    status_code=201,
    response_model=s.KeyRotated,
    tags=["keys"],
)
def rotate_key(
    request: Request, principal: Caller, key_id: str, body: s.KeyRotate | None = None
) -> s.KeyRotated:
    """A new key like this one, for the same owner (its secret shown once); this one keeps
    working for `overlap_seconds` (default a day), then expires. Who may revoke a key may
    rotate it."""
    overlap = (body or s.KeyRotate()).overlap_seconds
    return _iam(request).rotate_key(principal, key_id, overlap)


# --- users (platform admins) -----------------------------------------------------------------


@router.post(
    "/users", name="users.create", status_code=201, response_model=s.UserRead, tags=["users"]
)
def create_user(request: Request, _: Admin, body: s.UserCreate) -> s.UserRead:
    return _iam(request).create_user(body)


@router.get("/users", name="users.list", response_model=Page[s.UserRead], tags=["users"])
def list_users(
    request: Request,
    _: Admin,
    selector: Selector = None,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.UserRead]:
    items, token = _iam(request).list_users(selector, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get("/users/{name}", name="users.get", response_model=s.UserRead, tags=["users"])
def get_user(request: Request, principal: Caller, name: str) -> s.UserRead:
    """A user; anyone may read their own entry, admins anyone's."""
    if not (principal.kind == "user" and principal.name == name):
        require_admin(principal)
    return _iam(request).get_user(name)


@router.patch("/users/{name}", name="users.update", response_model=s.UserRead, tags=["users"])
def update_user(request: Request, _: Admin, name: str, body: s.UserUpdate) -> s.UserRead:
    return _iam(request).update_user(name, body)


@router.delete("/users/{name}", name="users.delete", status_code=204, tags=["users"])
def delete_user(request: Request, _: Admin, name: str) -> Response:
    _iam(request).delete_user(name)
    return Response(status_code=204)


# --- audit -----------------------------------------------------------------------------------


@router.get("/audit", name="audit.list", response_model=Page[s.AuditEventRead], tags=["audit"])
def list_audit(
    request: Request,
    principal: Caller,
    project: Annotated[str | None, Query(max_length=63)] = None,
    actor: Annotated[str | None, Query(max_length=160)] = None,
    action: Annotated[str | None, Query(max_length=80, description="exact, or a prefix*")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    order: Literal["asc", "desc"] = "desc",
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.AuditEventRead]:
    """Audit entries; admins see all, project owners their projects' entries."""
    projects: list[str] | None = None
    if not principal.acts_as_admin:
        owned = [p for p in principal.roles if principal.can(Permission.AUDIT_READ, p)]
        if project is not None:
            check_project(principal, project, Permission.AUDIT_READ)
        else:
            projects = owned
    items, token = _audit(request).list(
        project=project,
        projects=projects,
        actor=actor,
        action=action,
        since=since,
        until=until,
        order=order,
        limit=limit,
        page_token=page_token,
    )
    return Page(items=items, next_page_token=token)


@router.get(
    "/audit/verify", name="audit.verify", response_model=s.AuditVerification, tags=["audit"]
)
def verify_audit(request: Request, _: Admin) -> s.AuditVerification:
    """Walk the hash chain; name the first entry that was altered or removed."""
    return _audit(request).verify()
