"""The web console's pages: server-rendered HTML over the same services and permission
checks as the API (docs/architecture.md, "Web console").

Every page but the sign-in form needs a session (`sessions.py`): without one, a page
redirects to `/login`. A page shows what its caller may read, as the API's routes would
answer it, and only the actions its role allows; every change is a POST carrying the
session's CSRF token, checked before anything else, and refused from another site
(`Sec-Fetch-Site`, `Origin`). Every POST is audited, as the API's changes are, under the
route's name (`console.login`, `console.members.set`, ...).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated, Any, cast
from urllib.parse import quote, urlsplit

from anyio import to_thread
from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from stratus.console.sessions import ConsoleSessions
from stratus.core.errors import PermissionDenied, StratusError, Unauthenticated
from stratus.iam.authenticating import Authenticator
from stratus.iam.authorization import check_project
from stratus.iam.principals import Principal
from stratus.iam.roles import Permission, Role
from stratus.iam.schemas import KeyCreate, MemberSet
from stratus.iam.throttling import Throttle

COOKIE = "stratus_session"
HERE = FilePath(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)
PAGE = 50  # rows a list shows at once; the next page is a link
PUSH_INTERVAL = 0.25  # how often a live page's stream looks for a change (seconds)
STREAM_SECONDS = 300.0  # a stream ends after this; the browser's EventSource reconnects


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the principal, and the session (for its CSRF token)."""

    principal: Principal
    session_id: str
    csrf: str


class SignIn(Exception):
    """No live session: the page answers with a redirect to the sign-in form."""


def _sessions(request: Request) -> ConsoleSessions:
    return cast(ConsoleSessions, request.app.state.console_sessions)


def _authenticator(request: Request) -> Authenticator:
    return cast(Authenticator, request.app.state.authenticator)


def viewer(request: Request) -> Viewer:
    """The session's principal, authenticated afresh (a revoked key ends the session)."""
    session_id = request.cookies.get(COOKIE, "")
    sessions = _sessions(request)
    credential = sessions.credential(session_id)
    if credential is None:
        raise SignIn()
    try:
        principal = _authenticator(request).authenticate(credential)
    except Unauthenticated:
        sessions.close(session_id)
        raise SignIn() from None
    request.state.principal = principal
    return Viewer(principal, session_id, sessions.csrf_token(session_id))


def _same_site(request: Request) -> bool:
    """A form posted from this site: not from another (browsers say so, or the Origin does)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return urlsplit(origin).netloc == request.headers.get("host", "")
    return True


def changing(request: Request, csrf: str | None) -> Viewer:
    """A change: a session, from this site, with the session's CSRF token."""
    if not _same_site(request):
        raise PermissionDenied("a change must come from the console's own pages")
    seen = viewer(request)
    if not _sessions(request).csrf_ok(seen.session_id, csrf):
        raise PermissionDenied("the form is stale or forged (CSRF token): reload the page")
    return seen


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    seen: Viewer | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    values = {"viewer": seen, "csrf": seen.csrf if seen else "", **context}
    response = templates.TemplateResponse(request, name, values, status_code=status_code)
    response.headers["cache-control"] = "no-store"
    return response


def problem(request: Request, seen: Viewer, exc: StratusError) -> HTMLResponse:
    """A refusal or an error as a page (the API answers the same as a problem document)."""
    return render(request, "problem.html", {"status": exc.status, "detail": exc.detail}, seen,
                  exc.status)  # fmt: skip


def _local(target: str | None) -> str:
    """`target` when it is a path of this site, else `/` (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


# --- signing in and out ------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request, next: Annotated[str | None, Query(max_length=2000)] = None
) -> HTMLResponse:
    return render(request, "login.html", {"next": _local(next), "error": None})


@router.post("/login", name="console.login", response_class=HTMLResponse)
def login(
    request: Request,
    username: Annotated[str, Form(max_length=63)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    api_key: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Sign in with a user's password or an API key; a session cookie comes back."""
    if not _same_site(request):
        return render(
            request, "login.html", {"next": "/", "error": "sign in from this page"}, None, 403
        )
    if username:
        request.state.actor_hint = f"user:{username}"  # whom a failed sign-in is audited as
    authenticator = _authenticator(request)
    throttle = cast(Throttle, request.app.state.throttle)
    source = request.client.host if request.client else ""
    try:
        if api_key.strip():
            credential = api_key.strip()
            principal, expires = authenticator.resolve(credential)
        elif username and password:
            throttle.before_login(username, source)
            try:
                credential, ends = authenticator.login(username, password)
            except Unauthenticated:
                throttle.login_failed(username, source)
                raise
            throttle.login_succeeded(username)
            principal, expires = authenticator.resolve(credential)
        else:
            raise Unauthenticated("give a user name and password, or an API key")
    except StratusError as exc:
        error = f"Could not sign in: {exc.detail}"
        return render(
            request, "login.html", {"next": _local(next), "error": error}, None, exc.status
        )
    session_id = _sessions(request).open(credential, principal.subject, expires)
    request.state.principal = principal  # the audit entry's actor
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout", name="console.logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    seen = changing(request, csrf)
    _sessions(request).close(seen.session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


# --- pages -------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def projects(
    request: Request, page: Annotated[str | None, Query(max_length=500)] = None
) -> HTMLResponse:
    """The projects the viewer may see, a page at a time."""
    seen = viewer(request)
    iam = request.app.state.iam
    items, token = iam.list_projects(seen.principal, None, PAGE, page)
    return render(request, "projects.html", {"projects": items, "next_page": token}, seen)


@router.get("/projects/{project}", response_class=HTMLResponse)
def project_overview(
    request: Request, project: Annotated[str, Path(max_length=63)]
) -> HTMLResponse:
    """A project at a glance: endpoints and their health, firing alerts, running jobs, and
    the newest audit entries."""
    seen = viewer(request)
    try:
        check_project(seen.principal, project, Permission.PROJECT_READ)
    except StratusError as exc:
        return problem(request, seen, exc)
    state = request.app.state
    can_read = seen.principal.can(Permission.RESOURCE_READ, project)
    endpoints = state.endpoints.list_endpoints(project, None, PAGE, None)[0] if can_read else []
    rules = state.alerts.list_rules(project, None, None, None)[0] if can_read else []
    firing = [r for r in rules if r.status.state == "firing"]
    jobs = state.jobs.list_jobs(project, None, PAGE, None, phase="running")[0] if can_read else []
    activity = state.audit.list(project=project, order="desc", limit=10)[0]
    return render(
        request,
        "project.html",
        {
            "project": project,
            "role": seen.principal.role_in(project),
            "endpoints": endpoints,
            "firing": firing,
            "jobs": jobs,
            "activity": activity,
        },
        seen,
    )


# --- members and keys --------------------------------------------------------------------------


@router.get("/projects/{project}/members", response_class=HTMLResponse)
def members_page(request: Request, project: Annotated[str, Path(max_length=63)]) -> HTMLResponse:
    """Who may do what in the project; its admins add, change and remove members. Anyone
    may make an API key restricted to the project, shown once."""
    seen = viewer(request)
    try:
        check_project(seen.principal, project, Permission.PROJECT_READ)
    except StratusError as exc:
        return problem(request, seen, exc)
    return _members(request, seen, project)


def _members(
    request: Request,
    seen: Viewer,
    project: str,
    *,
    created: Any = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    iam = request.app.state.iam
    members, _ = iam.list_members(project)
    return render(
        request,
        "members.html",
        {
            "project": project,
            "members": members,
            "roles": [r.value for r in Role],
            "is_admin": seen.principal.can(Permission.PROJECT_ADMIN, project),
            "may_make_keys": seen.principal.kind == "user",
            "created": created,
            "error": error,
        },
        seen,
        status_code,
    )


@router.post("/projects/{project}/members", name="console.members.set", response_class=HTMLResponse)
def change_member(
    request: Request,
    project: Annotated[str, Path(max_length=63)],
    csrf: Annotated[str, Form(max_length=200)] = "",
    user: Annotated[str, Form(max_length=63)] = "",
    role: Annotated[str, Form(max_length=30)] = "",
    remove: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Give a user a role in the project, or (`remove`) take a member out: its admins."""
    seen = changing(request, csrf)
    iam = request.app.state.iam
    try:
        check_project(seen.principal, project, Permission.PROJECT_ADMIN)
        if remove:
            iam.remove_member(project, remove)
        else:
            iam.set_member(project, MemberSet(user=user or None, role=Role(role)))
    except ValueError:
        return _members(request, seen, project, error=f"{role!r} is not a role", status_code=400)
    except StratusError as exc:
        return _members(request, seen, project, error=exc.detail, status_code=exc.status)
    return RedirectResponse(f"/projects/{project}/members", status_code=303)


@router.post("/projects/{project}/keys", name="console.keys.create", response_class=HTMLResponse)
def create_key(
    request: Request,
    project: Annotated[str, Path(max_length=63)],
    csrf: Annotated[str, Form(max_length=200)] = "",
    name: Annotated[str, Form(max_length=63)] = "",
    expires_in_days: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """An API key of the viewer's, restricted to this project; its secret is on the answer
    page, once, and never again."""
    seen = changing(request, csrf)
    try:
        check_project(seen.principal, project, Permission.PROJECT_READ)
        days = float(expires_in_days) if expires_in_days.strip() else None
        data = KeyCreate(name=name or "default", project=project, expires_in_days=days)
        created = request.app.state.iam.create_key(seen.principal, data)
    except (ValueError, ValidationError):
        error = "a key's name is lower-case letters, digits and '-'; days are a number"
        return _members(request, seen, project, error=error, status_code=400)
    except StratusError as exc:
        return _members(request, seen, project, error=exc.detail, status_code=exc.status)
    return _members(request, seen, project, created=created, status_code=201)


@router.get("/projects/{project}/endpoints/{endpoint}", response_class=HTMLResponse)
def endpoint_page(
    request: Request,
    project: Annotated[str, Path(max_length=63)],
    endpoint: Annotated[str, Path(max_length=63)],
) -> HTMLResponse:
    """An endpoint: its variants and traffic, and its replicas, which the server pushes to
    the open page as they change (Server-Sent Events)."""
    seen = viewer(request)
    try:
        check_project(seen.principal, project, Permission.RESOURCE_READ)
        read = request.app.state.endpoints.get(project, endpoint)
    except StratusError as exc:
        return problem(request, seen, exc)
    return render(
        request,
        "endpoint.html",
        {"project": project, "endpoint": read, "status_html": _status_html(read)},
        seen,
    )


def _status_html(read: Any) -> str:
    return templates.get_template("_endpoint_status.html").render(endpoint=read)


@router.get("/projects/{project}/endpoints/{endpoint}/events")
async def endpoint_events(
    request: Request,
    project: Annotated[str, Path(max_length=63)],
    endpoint: Annotated[str, Path(max_length=63)],
) -> Response:
    """The endpoint's status (revision, variants, replicas) as an HTML fragment, each time it
    changes: an SSE stream (`event: status`) the page's htmx swaps in. It ends after
    `STREAM_SECONDS` (the browser reconnects) or when the endpoint is gone."""
    seen = await to_thread.run_sync(viewer, request)
    await to_thread.run_sync(check_project, seen.principal, project, Permission.RESOURCE_READ)
    service = request.app.state.endpoints
    await to_thread.run_sync(service.get, project, endpoint)  # 404 now, not an empty stream

    async def stream() -> AsyncIterator[bytes]:
        last, quiet = "", 0.0
        started = time.monotonic()
        while time.monotonic() - started < STREAM_SECONDS:
            if await request.is_disconnected():
                return
            try:
                read = await to_thread.run_sync(service.get, project, endpoint)
            except StratusError:
                yield b"event: gone\ndata: gone\n\n"
                return
            fragment = _status_html(read)
            if fragment != last:
                last, quiet = fragment, 0.0
                lines = "".join(f"data: {line}\n" for line in fragment.splitlines())
                yield f"event: status\n{lines}\n".encode()
            elif quiet >= 15:
                quiet = 0.0
                yield b": still here\n\n"  # a comment keeps proxies from closing it
            await asyncio.sleep(PUSH_INTERVAL)
            quiet += PUSH_INTERVAL

    headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def install(app: Any) -> None:
    """Serve the console: its pages, its static files, and the sign-in redirect."""
    from fastapi.staticfiles import StaticFiles
    from starlette.requests import Request as StarletteRequest

    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")

    async def to_sign_in(request: StarletteRequest, exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(_local(target))}", status_code=303)

    app.add_exception_handler(SignIn, to_sign_in)
