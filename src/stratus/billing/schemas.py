"""The billing API's shapes: price catalogs and cost reports."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
