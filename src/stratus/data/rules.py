"""Validation rules: what a dataset version must satisfy, written by users in YAML.

`stratus data validate NAME:VERSION --rules rules.yaml` parses the file into a `RuleSet`
(the same model the API takes as JSON) and the data service checks a version against it
(`validation.py`). An example:

```yaml
rows: {min: 1000}
allow_extra_columns: true
columns:
  customer_id: {type: string, not_null: true, unique: true}
  tenure_months: {type: integer, min: 0, max: 600}
  monthly_charges: {type: number, finite: true, min: 0, max_psi: 0.1}
  plan: {allowed: [basic, plus, pro], max_null_share: 0.01}
drift:
  reference: previous     # or a version number, or another dataset's NAME:VERSION
  max_psi: 0.25           # every compared column unless it sets its own max_psi
  max_mean_shift: 1.0     # in standard deviations of the reference
```
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A type family, or an exact Arrow type name such as `int64`, `double` or `timestamp[s]`.
TYPE_FAMILIES = ("integer", "float", "number", "string", "boolean", "timestamp")

Scalar = int | float | str | bool


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ColumnRules(_Rules):
    required: bool = Field(True, description="the column must exist")
    type: str | None = Field(
        None,
        max_length=64,
        description=f"a family ({', '.join(TYPE_FAMILIES)}) or an exact Arrow type (int64, …)",
    )
    not_null: bool = False
    max_null_share: float | None = Field(None, ge=0, le=1)
    min: Scalar | None = None
    max: Scalar | None = None
    allowed: list[Scalar] | None = Field(None, min_length=1, max_length=10_000)
    unique: bool = False
    finite: bool = Field(False, description="no NaN and no ±inf")
    max_psi: float | None = Field(None, ge=0, description="drift from the reference, as PSI")
    max_mean_shift: float | None = Field(
        None, ge=0, description="the mean's move from the reference's, in its std units"
    )

    @model_validator(mode="after")
    def _bounds(self) -> ColumnRules:
        low, high = self.min, self.max
        if (
            isinstance(low, int | float)
            and isinstance(high, int | float)
            and not isinstance(low, bool)
            and not isinstance(high, bool)
            and low > high
        ):
            raise ValueError(f"min ({low}) is above max ({high})")
        return self


class RowRules(_Rules):
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> RowRules:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"rows.min ({self.min}) is above rows.max ({self.max})")
        return self


class DriftRules(_Rules):
    reference: str | int = Field(
        "previous",
        description="`previous` (the newest ready version before this one), a version "
        "number, or NAME:VERSION of another dataset in the project",
    )
    columns: list[str] | None = Field(
        None, description="the columns to compare; default every column both sides profile"
    )
    max_psi: float | None = Field(0.25, ge=0)
    max_mean_shift: float | None = Field(None, ge=0)


class RuleSet(_Rules):
    rows: RowRules | None = None
    allow_extra_columns: bool = True
    columns: dict[str, ColumnRules] = Field(default_factory=dict)
    drift: DriftRules | None = None

    def needs_reference(self) -> bool:
        return self.drift is not None or any(
            c.max_psi is not None or c.max_mean_shift is not None for c in self.columns.values()
        )


def parse_rules(document: Any) -> RuleSet:
    """A rule set from a parsed YAML or JSON document (raises pydantic's ValidationError)."""
    if document is None:
        document = {}
    return RuleSet.model_validate(document)
