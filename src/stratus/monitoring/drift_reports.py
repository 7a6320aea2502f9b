"""What a drift check found, as a shape with no numerics: the settings of a verdict, one
feature's tests and the dataset's report, each to and from JSON.

`statistics.py` computes them (numpy, pyarrow, scipy); the HTML page (`html.py`), the SDK and
the CLI only read them, so they load this module alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from stratus.core.errors import InvalidInput

NumericMethod = Literal["wasserstein", "ks", "psi"]
CategoricalMethod = Literal["jensenshannon", "chi2", "psi"]
Kind = Literal["numeric", "categorical"]

# The score of these methods is a p-value: a feature drifts when it falls below the threshold.
# The other scores are distances: a feature drifts when one reaches the threshold.
P_VALUE_METHODS = frozenset({"ks", "chi2"})


@dataclass(frozen=True)
class DriftSettings:
    """How a feature's verdict is reached, and when the whole dataset counts as drifted.

    `ks` and `chi2` drift when their p-value is below the threshold; `wasserstein` (normed),
    `jensenshannon` and `psi` when the value is at or above it. `psi_bins` reference-quantile
    bins carry the PSI of numbers.
    """

    numeric_method: NumericMethod = "wasserstein"
    numeric_threshold: float = 0.1
    categorical_method: CategoricalMethod = "jensenshannon"
    categorical_threshold: float = 0.1
    drift_share: float = 0.5
    psi_bins: int = 10

    def __post_init__(self) -> None:
        if self.numeric_method not in get_args(NumericMethod):
            raise InvalidInput(f"unknown numeric drift method {self.numeric_method!r}")
        if self.categorical_method not in get_args(CategoricalMethod):
            raise InvalidInput(f"unknown categorical drift method {self.categorical_method!r}")
        for name in ("numeric_threshold", "categorical_threshold"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidInput(f"{name} must be a finite number >= 0, got {value}")
        if not 0 <= self.drift_share <= 1:
            raise InvalidInput(f"drift_share must be between 0 and 1, got {self.drift_share}")
        if self.psi_bins < 2:
            raise InvalidInput(f"PSI needs at least 2 bins, got psi_bins={self.psi_bins}")


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's tests. `score` is the verdict method's value, None (and no drift) when a
    side has no values; every number is finite or None, so the report is JSON as it stands.

    `wasserstein` is normed: the W1 distance over max(reference std, 0.001), as in Evidently.
    `chart` holds shares for the HTML report: numbers over ~20 equal bins of the two sides'
    joint range (`edges`), categories for the 20 most frequent (both sides' shares added) and
    "(other)" for the rest.
    """

    name: str
    kind: Kind
    method: str
    score: float | None
    threshold: float
    drifted: bool
    reference_count: int  # values used (numbers: finite ones only)
    current_count: int
    missing_share: float  # current values null, NaN or infinite, as a share of current rows
    ks_statistic: float | None = None
    ks_p_value: float | None = None
    wasserstein: float | None = None
    psi: float | None = None
    chi2_statistic: float | None = None
    chi2_p_value: float | None = None
    jensenshannon: float | None = None
    chart: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DriftReport:
    """Every feature's tests and the dataset's verdict: drifted when at least `drift_share` of
    the features with a score drifted (and there is at least one)."""

    features: list[FeatureDrift]
    drifted_features: int
    share: float
    drifted: bool
    reference_rows: int
    current_rows: int
    settings: DriftSettings

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["features"] = [_json_safe(f) for f in body["features"]]
        return body

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DriftReport:
        """The report `as_json` wrote; keys this version does not know are left out."""
        known = {f.name for f in fields(FeatureDrift)}
        return cls(
            features=[
                FeatureDrift(**{k: v for k, v in f.items() if k in known}) for f in data["features"]
            ],
            drifted_features=int(data["drifted_features"]),
            share=float(data["share"]),
            drifted=bool(data["drifted"]),
            reference_rows=int(data["reference_rows"]),
            current_rows=int(data["current_rows"]),
            settings=DriftSettings(**data["settings"]),
        )


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
