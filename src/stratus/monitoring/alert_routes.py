"""The alerting HTTP surface: alert rules (apply, list, read, delete, test), their history,
notification channels, and the receiver of Alertmanager's webhook."""

from __future__ import annotations

from typing import Annotated, Literal, cast

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from stratus.core.resources import DEFAULT_LIMIT, Page
from stratus.iam.authorization import Access, ListAccess, ListScope, ProjectAccess
from stratus.iam.parameters import Limit, PageToken, Selector
from stratus.iam.roles import Permission
from stratus.monitoring import alert_schemas as s
from stratus.monitoring.alerts import AlertService

router = APIRouter(prefix="/api/v1/projects/{project}", tags=["alerts"])


def _alerts(request: Request) -> AlertService:
    return cast(AlertService, request.app.state.alerts)


# --- rules -----------------------------------------------------------------------------------


@router.put(
    "/alert-rules",
    name="alerts.rules.apply",
    response_model=s.AlertRuleRead,
    responses={201: {"model": s.AlertRuleRead, "description": "the rule was created"}},
)
def apply_rule(
    request: Request,
    body: s.AlertRuleApply,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> JSONResponse:
    """Create an alert rule (201) or replace the one of that name (200)."""
    request.state.audit_name = body.name  # the audit entry names what was applied
    read, created = _alerts(request).apply_rule(access.project, body)
    return JSONResponse(read.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("/alert-rules", name="alerts.rules.list", response_model=Page[s.AlertRuleRead])
def list_rules(
    request: Request,
    access: ListScope = ListAccess(Permission.RESOURCE_READ),
    selector: Selector = None,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.AlertRuleRead]:
    items, token = _alerts(request).list_rules(access.project, selector, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get("/alert-rules/{rule}", name="alerts.rules.get", response_model=s.AlertRuleRead)
def get_rule(
    request: Request, rule: str, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> s.AlertRuleRead:
    return _alerts(request).get_rule(access.project, rule)


@router.delete("/alert-rules/{rule}", name="alerts.rules.delete", status_code=204)
def delete_rule(
    request: Request, rule: str, access: ProjectAccess = Access(Permission.RESOURCE_WRITE)
) -> Response:
    """Delete a rule (its history stays)."""
    _alerts(request).delete_rule(access.project, rule)
    return Response(status_code=204)


@router.post(
    "/alert-rules/{rule}/test",
    name="alerts.rules.test",
    response_model=s.NotificationTestResult,
)
def test_rule(
    request: Request,
    rule: str,
    body: s.NotificationTest | None = None,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.NotificationTestResult:
    """Send a test notification of the rule to its channels now; what each answered."""
    return _alerts(request).test_rule(access.project, rule, body or s.NotificationTest())


@router.get("/alert-events", name="alerts.events.list", response_model=Page[s.AlertEventRead])
def list_events(
    request: Request,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    rule: Annotated[str | None, Query(max_length=200, description="only this rule")] = None,
    state: Annotated[Literal["firing", "resolved"] | None, Query()] = None,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.AlertEventRead]:
    """The alerts' history: every firing and resolved change, newest first."""
    items, token = _alerts(request).history(access.project, rule, state, limit, page_token)
    return Page(items=items, next_page_token=token)


# --- channels --------------------------------------------------------------------------------


@router.put(
    "/notification-channels",
    name="alerts.channels.apply",
    response_model=s.ChannelRead,
    responses={201: {"model": s.ChannelRead, "description": "the channel was created"}},
)
def apply_channel(
    request: Request,
    body: s.ChannelApply,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> JSONResponse:
    """Create a notification channel (201) or replace the one of that name (200). Header
    values, the SMTP password and a Slack URL are write-only: reads show `****`."""
    request.state.audit_name = body.name  # the audit entry names what was applied
    read, created = _alerts(request).channels.apply(access.project, body)
    return JSONResponse(read.model_dump(mode="json"), status_code=201 if created else 200)


@router.get(
    "/notification-channels", name="alerts.channels.list", response_model=Page[s.ChannelRead]
)
def list_channels(
    request: Request,
    access: ListScope = ListAccess(Permission.RESOURCE_READ),
    selector: Selector = None,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.ChannelRead]:
    items, token = _alerts(request).channels.list(access.project, selector, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get(
    "/notification-channels/{channel}", name="alerts.channels.get", response_model=s.ChannelRead
)
def get_channel(
    request: Request, channel: str, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> s.ChannelRead:
    return _alerts(request).channels.get(access.project, channel)


@router.delete("/notification-channels/{channel}", name="alerts.channels.delete", status_code=204)
def delete_channel(
    request: Request, channel: str, access: ProjectAccess = Access(Permission.RESOURCE_WRITE)
) -> Response:
    """Delete a channel (not while a rule names it)."""
    _alerts(request).channels.delete(access.project, channel)
    return Response(status_code=204)


# --- Alertmanager ----------------------------------------------------------------------------


@router.post(
    "/alerts/alertmanager",
    name="alerts.alertmanager",
    response_model=s.AlertmanagerReceipt,
)
def alertmanager(
    request: Request,
    body: s.AlertmanagerPayload,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.AlertmanagerReceipt:
    """Alertmanager's webhook (`webhook_configs` with `http_config.authorization` holding a
    Stratus API key). Each alert is kept in history; a firing one starts the pipelines with
    an alert trigger on its `alertname`; a Stratus rule of that name notifies its channels.
    Redelivered alerts are recognised and ignored."""
    return _alerts(request).receive_alertmanager(access.project, body, access.principal.subject)
