"""The instance-type catalog: named sizes (vCPUs, memory, GPUs) with on-demand and spot prices.

A job names an instance type; the jobs service looks it up here, its size becomes the job's
enforced limits (`compute.limits`) and its price what the job costs. The types ship in
`instance_types.yaml` next to this module; a user file in the same format adds or overrides
types by name.
"""

from __future__ import annotations

import builtins
import importlib.resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stratus.core.errors import InvalidInput

SHIPPED = "instance_types.yaml"


class InstanceType(BaseModel):
    """One size a job can ask for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    vcpus: float = Field(gt=0)
    memory_gib: float = Field(gt=0)
    gpus: int = Field(0, ge=0)
    price_per_hour: float = Field(ge=0)  # on-demand, USD
    spot_price_per_hour: float = Field(ge=0)
    description: str = ""

    @model_validator(mode="after")
    def _spot_is_not_dearer(self) -> InstanceType:
        if self.spot_price_per_hour > self.price_per_hour:
            raise ValueError(
                f"spot_price_per_hour ({self.spot_price_per_hour}) is above "
                f"price_per_hour ({self.price_per_hour})"
            )
        return self

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * 2**30)


class _CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instance_types: list[InstanceType] = []


def _parse(text: str, source: str) -> list[InstanceType]:
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"instance types in {source}: not valid YAML: {exc}") from exc
    if data is None:
        return []
    if not isinstance(data, dict):
        raise InvalidInput(
            f"instance types in {source}: expected a mapping with an 'instance_types' list"
        )
    try:
        types = _CatalogFile.model_validate(data).instance_types
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise InvalidInput(f"instance types in {source}: {problems}") from exc
    seen: set[str] = set()
    for t in types:
        if t.name in seen:
            raise InvalidInput(f"instance types in {source}: {t.name!r} is defined twice")
        seen.add(t.name)
    return types


class InstanceCatalog:
    """The instance types jobs can ask for, by name."""

    def __init__(self, types: builtins.list[InstanceType]) -> None:
        self._types = {t.name: t for t in types}

    @classmethod
    def load(cls, extra: Path | None = None) -> InstanceCatalog:
        """The shipped types, then those of `extra` (same format) added or overriding by name.

        A missing `extra` file is ignored.

        Raises:
            InvalidInput: `extra` is not a readable, valid catalog file (the message names it).
        """
        shipped = importlib.resources.files("stratus.compute").joinpath(SHIPPED).read_text()
        types = {t.name: t for t in _parse(shipped, SHIPPED)}
        if extra is not None and extra.exists():
            try:
                text = extra.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidInput(f"instance types in {extra}: cannot read it: {exc}") from exc
            types.update((t.name, t) for t in _parse(text, str(extra)))
        return cls(builtins.list(types.values()))

    def get(self, name: str) -> InstanceType:
        """The type called `name`.

        Raises:
            InvalidInput: no such type (the message lists the known ones).
        """
        try:
            return self._types[name]
        except KeyError:
            known = ", ".join(t.name for t in self.list())
            raise InvalidInput(f"unknown instance type {name!r}; known: {known}") from None

    def list(self) -> builtins.list[InstanceType]:
        """All types, smallest first: by GPUs, then vCPUs, then memory."""
        return sorted(self._types.values(), key=lambda t: (t.gpus, t.vcpus, t.memory_gib, t.name))
