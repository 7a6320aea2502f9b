"""The billing HTTP surface: the price catalog (read by anyone signed in, replaced by a platform
admin), cost reports (per project, or `-` for every project, which only an admin may ask), and
each project's quotas (read by its members, set by a platform admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, cast

from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response

from stratus.billing import schemas as s
from stratus.billing.budgets import Budgets
from stratus.billing.quotas import Quotas
from stratus.billing.recommendations import Recommender
from stratus.billing.reservations import Reservations
from stratus.billing.service import BillingService
from stratus.iam.authorization import (
    Access,
    Admin,
    Caller,
    ListAccess,
    ListScope,
    ProjectAccess,
)
from stratus.iam.errors import admins_only
from stratus.iam.roles import Permission

prices_router = APIRouter(prefix="/api/v1/prices", tags=["billing"])
cost_router = APIRouter(prefix="/api/v1/projects/{project}/cost", tags=["billing"])


def _billing(request: Request) -> BillingService:
    return cast(BillingService, request.app.state.billing)


@prices_router.get("", name="prices.read", response_model=s.PricesRead)
async def read_prices(
    request: Request,
    _: Caller,
    version: Annotated[int | None, Query(ge=1, description="an older version")] = None,
) -> s.PricesRead:
    """The price catalog in force (or an older version of it)."""
    return await to_thread.run_sync(_billing(request).read_prices, version)


@prices_router.get("/versions", name="prices.versions", response_model=list[s.PricesRead])
async def price_versions(request: Request, _: Caller) -> list[s.PricesRead]:
    """Every version of the catalog, newest first."""
    return await to_thread.run_sync(_billing(request).price_versions)


@prices_router.put("", name="prices.apply", response_model=s.PricesRead)
async def apply_prices(request: Request, body: s.PricesApply, admin: Admin) -> s.PricesRead:
    """Replace the catalog: a new version prices what is metered from now on; what was
    metered before keeps its prices."""
    billing = _billing(request)
    return await to_thread.run_sync(lambda: billing.apply_prices(body.catalog, actor=admin.subject))


@cost_router.get("/report", name="cost.report", response_model=s.CostReport)
async def cost_report(
    request: Request,
    scope: ListScope = ListAccess(Permission.RESOURCE_READ),
    by: Annotated[s.By, Query(description="how lines are grouped")] = s.By.project,
    start: Annotated[
        datetime | None, Query(alias="from", description="default: the month's start")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="default: now")] = None,
    granularity: Annotated[s.Granularity, Query()] = s.Granularity.day,
) -> s.CostReport:
    """What the project spent (project `-`: every project), from the metered usage priced at
    the catalog version in force when it was metered. Idle cost (capacity of replicas that
    served no request) is part of each line's cost and shown apart in `idle_cost`."""
    billing = _billing(request)
    projects = None if scope.project is None else [scope.project]
    return await to_thread.run_sync(
        lambda: billing.report(projects, by=by, start=start, end=end, granularity=granularity)
    )


quota_router = APIRouter(prefix="/api/v1/projects/{project}/quotas", tags=["billing"])


def _quotas(request: Request) -> Quotas:
    return cast(Quotas, request.app.state.quotas)


@quota_router.get("", name="quotas.read", response_model=s.QuotasRead)
async def read_quotas(
    request: Request, access: ProjectAccess = Access(Permission.PROJECT_READ)
) -> s.QuotasRead:
    """The project's quotas (null: no limit) and what it holds of each now."""
    return await to_thread.run_sync(_quotas(request).read, access.project)


@quota_router.put("", name="quotas.set", response_model=s.QuotasRead)
async def set_quotas(
    request: Request, body: s.QuotasSet, access: ProjectAccess = Access(Permission.PROJECT_READ)
) -> s.QuotasRead:
    """Replace the project's quotas (platform admins). A field left out is no limit; a limit
    under what is in use stops nothing but admits nothing more until use falls under it."""
    if not access.principal.acts_as_admin:  # (after the project check: 404 to outsiders)
        raise admins_only("set quotas")
    quotas, actor = _quotas(request), access.principal.subject
    return await to_thread.run_sync(lambda: quotas.set(access.project, body, actor=actor))


budget_router = APIRouter(prefix="/api/v1/projects/{project}/budgets", tags=["billing"])


def _budgets(request: Request) -> Budgets:
    return cast(Budgets, request.app.state.budgets)


@budget_router.get("", name="budgets.list", response_model=list[s.BudgetRead])
async def list_budgets(
    request: Request, access: ProjectAccess = Access(Permission.PROJECT_READ)
) -> list[s.BudgetRead]:
    """The project's budgets, with this month's spend, forecast and crossings."""
    return await to_thread.run_sync(_budgets(request).list, access.project)


@budget_router.put("", name="budgets.apply", response_model=s.BudgetRead)
async def apply_budget(
    request: Request,
    body: s.BudgetApply,
    access: ProjectAccess = Access(Permission.PROJECT_ADMIN),
) -> s.BudgetRead:
    """Create or replace a budget by its name (project owners); evaluated at once, so a
    raise lifts a freeze."""
    request.state.audit_name = body.name  # the audit entry names what was applied
    budgets, actor = _budgets(request), access.principal.subject
    return await to_thread.run_sync(lambda: budgets.apply(access.project, body, actor=actor))


@budget_router.get("/{name}", name="budgets.read", response_model=s.BudgetRead)
async def read_budget(
    request: Request, name: str, access: ProjectAccess = Access(Permission.PROJECT_READ)
) -> s.BudgetRead:
    return await to_thread.run_sync(_budgets(request).get, access.project, name)


@budget_router.delete("/{name}", name="budgets.delete", status_code=204)
async def delete_budget(
    request: Request, name: str, access: ProjectAccess = Access(Permission.PROJECT_ADMIN)
) -> Response:
    """Delete a budget (its freeze, if any, lifts)."""
    await to_thread.run_sync(_budgets(request).delete, access.project, name)
    return Response(status_code=204)


@cost_router.get("/recommendations", name="cost.recommendations", response_model=s.Recommendations)
async def cost_recommendations(
    request: Request,
    scope: ListScope = ListAccess(Permission.RESOURCE_READ),
    days: Annotated[int, Query(ge=1, le=90, description="the window looked at")] = 14,
) -> s.Recommendations:
    """Where the project (`-`: every project) could spend less, each with its monthly saving:
    idle endpoints, over-provisioned variants, jobs that would be cheaper on spot, and steady
    capacity that would be cheaper reserved."""
    recommender = cast(Recommender, request.app.state.recommender)
    projects = None if scope.project is None else [scope.project]
    return await to_thread.run_sync(lambda: recommender.recommend(projects, days))


reservation_router = APIRouter(prefix="/api/v1/projects/{project}/reservations", tags=["billing"])


@reservation_router.get("", name="reservations.read", response_model=s.ReservationsRead)
async def read_reservations(
    request: Request, access: ProjectAccess = Access(Permission.PROJECT_READ)
) -> s.ReservationsRead:
    """The capacity the project has reserved (instances per type), priced at the reserved
    rate for the usage within it."""
    reservations = cast(Reservations, request.app.state.reservations)
    return await to_thread.run_sync(reservations.read, access.project)


@reservation_router.put("", name="reservations.set", response_model=s.ReservationsRead)
async def set_reservations(
    request: Request,
    body: s.ReservationsSet,
    access: ProjectAccess = Access(Permission.PROJECT_READ),
) -> s.ReservationsRead:
    """Replace the project's reservations (platform admins); from the next metering pass on,
    usage within them is priced at the reserved rate."""
    if not access.principal.acts_as_admin:  # (after the project check: 404 to outsiders)
        raise admins_only("set reservations")
    reservations = cast(Reservations, request.app.state.reservations)
    actor = access.principal.subject
    return await to_thread.run_sync(lambda: reservations.set(access.project, body, actor=actor))
