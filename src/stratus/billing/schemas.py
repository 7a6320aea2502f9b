"""The billing API's shapes: price catalogs and cost reports."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def money(value: float) -> str:
    """An amount for people: 2 decimals, or 3 significant digits under 1 (a budget of a tenth
    of a cent reads 0.001, not 0.00)."""
    return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


class PricesRead(BaseModel):
    version: int
    created_at: datetime
    created_by: str
    catalog: dict[str, Any] = Field(description="the catalog as applied (see docs/cost.md)")


class PricesApply(BaseModel):
    catalog: dict[str, Any] = Field(description="a catalog in the format of prices.yaml")


class By(StrEnum):
    project = "project"
    endpoint = "endpoint"
    model = "model"
    job = "job"
    instance_type = "instance-type"


class Granularity(StrEnum):
    day = "day"
    hour = "hour"
    total = "total"


class CostLine(BaseModel):
    period: str = Field(description="the day (YYYY-MM-DD) or hour (ISO); '' for all of it")
    project: str
    name: str = Field(
        description="the endpoint, model version, job or instance type ('' by project)"
    )
    cost: float = Field(description="everything this line used, idle included")
    idle_cost: float = Field(0.0, description="capacity of replicas that served no request")
    requests: int = 0
    cost_per_request: float | None = Field(None, description="cost / requests, when any")
    instance_hours: float = 0.0
    preempted_hours: float = Field(
        0.0, description="of the instance-hours, a job's in attempts a preemption cut short"
    )
    gib_hours: float = Field(0.0, description="storage")


class Forecast(BaseModel):
    month: str = Field(description="YYYY-MM")
    to_date: float = Field(description="spent so far this month")
    projected: float = Field(description="to date, plus the last 24 hours' rate to the month's end")


class CostReport(BaseModel):
    currency: str
    by: By
    granularity: Granularity
    start: datetime
    end: datetime
    lines: list[CostLine]
    total: float
    idle_total: float
    forecast: Forecast
    metered_until: datetime | None = Field(None, description="the last metering pass")


class QuotasSet(BaseModel):
    """A project's limits; a field left out (or null) is no limit."""

    model_config = ConfigDict(extra="forbid")

    replicas: int | None = Field(None, ge=0, description="replicas (autoscaled: at their max)")
    vcpus: float | None = Field(None, ge=0, description="of replicas and queued or running jobs")
    memory_gib: float | None = Field(None, ge=0, description="of replicas and jobs")
    gpus: int | None = Field(None, ge=0, description="of replicas and jobs")
    jobs: int | None = Field(None, ge=0, description="queued or running jobs")
    stored_bytes: int | None = Field(None, ge=0, description="bytes uploaded and kept")


class QuotasRead(BaseModel):
    project: str
    limits: QuotasSet
    used: dict[str, float] = Field(description="what the project holds now, per quota")
    updated_at: datetime | None = None
    updated_by: str | None = None


class Threshold(BaseModel):
    model_config = ConfigDict(extra="forbid")

    percent: float = Field(gt=0, le=1000, description="of the budget's amount")
    basis: Literal["actual", "forecast"] = Field(
        "actual", description="what is spent so far, or the month's forecast"
    )


def _default_thresholds() -> list[Threshold]:
    return [Threshold(percent=p) for p in (50, 80, 100)] + [
        Threshold(percent=100, basis="forecast")
    ]


class BudgetApply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("monthly", pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    amount: float = Field(gt=0, description="per calendar month (UTC), in the catalog's currency")
    thresholds: list[Threshold] = Field(default_factory=_default_thresholds, max_length=20)
    channels: list[str] = Field(
        default_factory=list, max_length=20, description="alert channels told of a crossing"
    )
    action: Literal["none", "freeze"] = Field(
        "none",
        description="freeze: once spent reaches 100 %, refuse new jobs and deploys that add "
        "capacity, hold autoscaled endpoints at their minimum and stop spot jobs, until the "
        "budget is raised or the month turns",
    )


class Crossing(BaseModel):
    percent: float
    basis: str
    at: datetime
    value: float


class BudgetStatus(BaseModel):
    month: str = ""
    spent: float = 0.0
    forecast: float = 0.0
    crossed: list[Crossing] = Field(default_factory=list)
    frozen: bool = Field(False, description="the action holds now")
    frozen_since: datetime | None = None
    evaluated_at: datetime | None = None


class BudgetRead(BaseModel):
    project: str
    name: str
    spec: BudgetApply
    status: BudgetStatus
    currency: str
    updated_at: datetime
    updated_by: str


class Recommendation(BaseModel):
    kind: str = Field(description="idle-endpoint, over-provisioned, spot-job or reserved")
    project: str
    subject: str = Field(description="the endpoint (and variant) or job")
    action: str = Field(description="what to do, as a command where there is one")
    reason: str
    monthly_saving: float
    currency: str


class Recommendations(BaseModel):
    days: int
    currency: str
    items: list[Recommendation]
    total_monthly_saving: float


class ReservationsSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instance_types: dict[str, int] = Field(
        default_factory=dict, description="instance type -> how many are reserved (0 removes)"
    )


class ReservationsRead(BaseModel):
    project: str
    instance_types: dict[str, int]
