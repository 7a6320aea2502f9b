"""The price catalog: what an instance-hour (on-demand, spot, reserved), a GiB-month of storage,
a million function requests and a GiB-second of function compute cost.

The shipped catalog is `prices.yaml` next to this module. An admin replaces it with a file of
the same format (`stratus prices apply -f prices.yaml`); each apply is a new version, and every
usage record keeps the version it was priced at, so a new catalog never reprices the past. An
instance type the catalog does not name is priced at its own on-demand and spot prices
(`compute/instance_types.yaml`), with no reserved discount.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stratus.compute.instance_types import InstanceType
from stratus.core.errors import InvalidInput

SHIPPED = "prices.yaml"
HOURS_PER_MONTH = 730.0  # a month of storage, as the clouds count it
GIB = float(1 << 30)


class InstancePrice(BaseModel):
    """USD per instance-hour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on_demand: float = Field(ge=0)
    spot: float = Field(ge=0)
    reserved: float = Field(ge=0, description="a one-year commitment, amortised hourly")

    @model_validator(mode="after")
    def _not_dearer_than_on_demand(self) -> InstancePrice:
        for name in ("spot", "reserved"):
            if getattr(self, name) > self.on_demand:
                raise ValueError(f"{name} ({getattr(self, name)}) is above on_demand")
        return self

    def rate(self, pricing: str) -> float:
        price: float = getattr(self, pricing)
        return price


class PriceCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    instance_types: dict[str, InstancePrice] = Field(default_factory=dict)
    storage_gib_month: float = Field(ge=0)
    requests_per_million: float = Field(ge=0)
    function_gib_second: float = Field(ge=0)

    def instance(self, instance_type: InstanceType) -> InstancePrice:
        price = self.instance_types.get(instance_type.name)
        if price is not None:
            return price
        return InstancePrice(
            on_demand=instance_type.price_per_hour,
            spot=instance_type.spot_price_per_hour,
            reserved=instance_type.price_per_hour,
        )


def shipped_catalog() -> PriceCatalog:
    text = importlib.resources.files("stratus.billing").joinpath(SHIPPED).read_text()
    return parse_catalog(text, SHIPPED)


def parse_catalog(text: str, source: str) -> PriceCatalog:
    """A catalog from YAML (or JSON) text.

    Raises:
        InvalidInput: not YAML, or not a catalog (the message names each wrong field).
    """
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"prices in {source}: not valid YAML: {exc}") from exc
    return validate_catalog(data, source)


def validate_catalog(data: Any, source: str) -> PriceCatalog:
    if not isinstance(data, dict):
        raise InvalidInput(
            f"prices in {source}: expected a mapping with instance_types, storage_gib_month, "
            "requests_per_million and function_gib_second"
        )
    try:
        return PriceCatalog.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise InvalidInput(f"prices in {source}: {problems}") from exc
