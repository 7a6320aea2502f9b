"""The secrets API's shapes. A value goes in (`SecretSet`) and never comes out: what is read
is its name, versions, and who set each."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from stratus.core.clock import as_utc

SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_VALUE_BYTES = 64 << 10


def check_secret_name(name: str) -> str:
    if not SECRET_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a secret name: letters, digits and _, not starting with a digit "
            "(it is also the environment variable's name), at most 128 characters"
        )
    return name


SecretName = Annotated[str, AfterValidator(check_secret_name)]


def check_references(refs: list[str]) -> list[str]:
    """`NAME` (the variable is named like the secret) or `VARIABLE=NAME`; each variable once."""
    seen: set[str] = set()
    for ref in refs:
        variable, _, name = ref.partition("=")
        check_secret_name(name or variable)
        check_secret_name(variable)
        if variable in seen:
            raise ValueError(f"the environment variable {variable} is given twice")
        seen.add(variable)
    return refs


SecretRefs = Annotated[
    list[str],
    AfterValidator(check_references),
    Field(
        max_length=100,
        description="secrets given as environment variables: NAME, or VARIABLE=NAME",
    ),
]


def as_environment(refs: list[str]) -> dict[str, str]:
    """Secret references as {variable: secret name}."""
    out: dict[str, str] = {}
    for ref in refs:
        variable, _, name = ref.partition("=")
        out[variable] = name or variable
    return out


class SecretSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: SecretStr = Field(description="the value; never shown again")
    description: str = Field("", max_length=500)

    def data(self) -> bytes:
        data = self.value.get_secret_value().encode()
        if not data:
            raise ValueError("a secret's value cannot be empty")
        if len(data) > MAX_VALUE_BYTES:
            raise ValueError(f"a secret's value is at most {MAX_VALUE_BYTES} bytes")
        return data


class SecretVersionRead(BaseModel):
    version: int
    created_by: str
    created_at: datetime
    description: str


class SecretVersion(Protocol):
    """A stored version of a secret (of a project or of the platform), as reads show it."""

    version: int
    created_by: str
    created_at: datetime
    description: str


class SecretRead(BaseModel):
    kind: Literal["Secret"] = "Secret"
    name: str
    project: str | None = Field(description="None for a platform secret")
    version: int = Field(description="the newest version: what jobs and replicas get")
    created_by: str = Field(description="who set the newest version")
    updated_at: datetime
    description: str
    versions: list[SecretVersionRead] = Field(default_factory=list)

    @classmethod
    def of(
        cls,
        name: str,
        project: str | None,
        rows: Sequence[SecretVersion],
        with_versions: bool,
    ) -> SecretRead:
        """The read of a secret from its stored versions, newest first (never a value)."""
        newest = rows[0]
        return cls(
            name=name,
            project=project,
            version=newest.version,
            created_by=newest.created_by,
            updated_at=as_utc(newest.created_at),
            description=newest.description,
            versions=[
                SecretVersionRead(
                    version=r.version,
                    created_by=r.created_by,
                    created_at=as_utc(r.created_at),
                    description=r.description,
                )
                for r in rows
            ]
            if with_versions
            else [],
        )
