"""What validating a dataset version reports: plain shapes, shared by the service, the API and
the SDK (so reading a report needs neither pyarrow nor numpy)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ColumnDrift(BaseModel):
    column: str
    kind: str
    psi: float | None
    mean_shift: float | None = None
    detail: str = ""


class Check(BaseModel):
    """One rule applied: `failing` counts rows for row-level rules and is None for rules
    about the whole table (a type, a row count, a drift measure)."""

    check: str
    column: str | None = None
    passed: bool
    expected: str
    observed: str = ""
    failing: int | None = None
    examples: list[dict[str, Any]] = Field(default_factory=list)


class ValidationReport(BaseModel):
    passed: bool
    rows: int
    reference: str | None = None
    checks: list[Check]
    drift: list[ColumnDrift] = Field(default_factory=list)
