"""Model references as users write them: `fraud`, `fraud:3`, `fraud@production`."""

from __future__ import annotations

from dataclasses import dataclass

from stratus.core.errors import InvalidInput
from stratus.core.resource_schemas import validate_name


@dataclass(frozen=True)
class ModelRef:
    model: str
    version: int | None = None  # None with no alias: the latest ready version
    alias: str | None = None

    @property
    def selector(self) -> str:
        """The version part as the API takes it: a number, an alias, or 'latest'."""
        if self.version is not None:
            return str(self.version)
        return self.alias or "latest"

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.model}:{self.version}"
        return f"{self.model}@{self.alias}" if self.alias else self.model


def parse_ref(text: str) -> ModelRef:
    if "@" in text:
        model, _, alias = text.partition("@")
        validate_name(model, "model name")
        validate_name(alias, "alias")
        return ModelRef(model, alias=alias)
    if ":" in text:
        model, _, version = text.partition(":")
        validate_name(model, "model name")
        if not version.isdigit() or int(version) < 1:
            raise InvalidInput(f"{text!r}: the version after ':' must be a positive number")
        return ModelRef(model, version=int(version))
    validate_name(text, "model name")
    return ModelRef(text)
