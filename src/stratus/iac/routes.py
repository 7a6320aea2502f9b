"""The infrastructure-as-code HTTP surface: plan declared documents against live state, and
apply them. What a caller may read or change is checked per resource, as its own routes do."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Request

from stratus.iac.planning import Planner
from stratus.iac.schemas import ApplyRead, PlanRead, PlanRequest
from stratus.iam.authorization import Caller

router = APIRouter(prefix="/api/v1/iac", tags=["iac"])


def _planner(request: Request) -> Planner:
    return cast(Planner, request.app.state.planner)


@router.post("/plans", name="iac.plan", response_model=PlanRead)
def plan(request: Request, body: PlanRequest, principal: Caller) -> PlanRead:
    """What applying these documents would do, resource by resource (nothing is changed)."""
    return _planner(request).plan(principal, body.documents)


@router.post("/applies", name="iac.apply", response_model=ApplyRead)
def apply(request: Request, body: PlanRequest, principal: Caller) -> ApplyRead:
    """Apply these documents: plan again, then create and update in kind order, each resource
    in its own transaction; the first failure stops it, saying what was and was not applied.
    With `pinned` (a saved plan's versions), a resource changed since the plan refuses the
    whole apply (409) before anything is applied."""
    return _planner(request).apply(principal, body.documents, body.pinned)
