"""The infrastructure-as-code HTTP surface: plan declared documents against live state, apply
or destroy them, export a project as documents, the documents' JSON Schema, and the apply
leases. What a caller may read or change is checked per resource, as its own routes do."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Path, Query, Request

from stratus.iac.exports import export_project, json_schema
from stratus.iac.leases import ApplyLeases, LeaseRead
from stratus.iac.planning import Planner
from stratus.iac.schemas import ApplyRead, ExportRead, PlanRead, PlanRequest
from stratus.iam.authorization import Caller, check_project
from stratus.iam.roles import Permission

router = APIRouter(prefix="/api/v1/iac", tags=["iac"])


def _planner(request: Request) -> Planner:
    return cast(Planner, request.app.state.planner)


def _leases(request: Request) -> ApplyLeases:
    leases = _planner(request).leases
    assert leases is not None
    return leases


@router.post("/plans", name="iac.plan", response_model=PlanRead)
def plan(request: Request, body: PlanRequest, principal: Caller) -> PlanRead:
    """What applying (or destroying) these documents would do, resource by resource; with
    mode `refresh-only`, what changed outside them and by whom. Nothing is changed."""
    return _planner(request).plan(principal, body.documents, mode=body.mode, prune=body.prune)


@router.post("/applies", name="iac.apply", response_model=ApplyRead)
def apply(request: Request, body: PlanRequest, principal: Caller) -> ApplyRead:
    """Apply these documents (or destroy what they declare): plan again, then change in kind
    order, each resource in its own transaction; the first failure stops it, saying what was
    and was not applied. With `pinned` (a saved plan's versions), a resource changed since
    the plan refuses the whole apply (409) before anything is applied. One apply at a time
    per project: another is refused (409) naming its holder."""
    values = {k: v.get_secret_value() for k, v in body.secret_values.items()}
    return _planner(request).apply(
        principal,
        body.documents,
        body.pinned,
        mode=body.mode,
        prune=body.prune,
        plan_id=body.plan_id,
        secret_values=values,
    )


@router.get("/exports/{project}", name="iac.export", response_model=ExportRead)
def export(
    request: Request,
    principal: Caller,
    project: Annotated[str, Path(max_length=63)],
) -> ExportRead:
    """The project's live state as documents that plan to no change (what the caller may
    read of it); credentials appear as `secret:NAME` references or `****`, never values."""
    return ExportRead(documents=export_project(_planner(request), principal, project))


@router.get("/schema", name="iac.schema")
def schema(principal: Caller) -> dict[str, Any]:
    """The JSON Schema of a resource document, every kind (for editors)."""
    return json_schema()


@router.get("/leases", name="iac.leases.list", response_model=list[LeaseRead])
def list_leases(
    request: Request,
    principal: Caller,
    project: Annotated[str | None, Query(max_length=63)] = None,
) -> list[LeaseRead]:
    """Applies in progress: who holds which project's lease, and until when."""
    held = _leases(request).held(None if project is None else [project])
    return [lease for lease in held if principal.can_see(lease.project)]


@router.delete("/leases/{project}", name="iac.leases.break", response_model=LeaseRead)
def break_lease(
    request: Request,
    principal: Caller,
    project: Annotated[str, Path(max_length=63)],
) -> LeaseRead:
    """Break a project's apply lease (its admins); the apply holding it stops at its next
    resource."""
    check_project(principal, project, Permission.PROJECT_ADMIN)
    return _leases(request).break_lease(project)
