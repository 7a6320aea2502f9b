"""The resource base's pydantic face: names, labels, `metadata`, pages and page tokens.

Every service's `schemas.py` builds on these, and so does the SDK through them, so this module
imports nothing of the server (no SQLAlchemy): `core/resources.py` adds the rows, selectors and
queries, and re-exports what is here.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from stratus.core.errors import InvalidInput
from stratus.core.token_buckets import Limit

NAME_MAX = 63
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")

NAME_PATTERN = _NAME_RE.pattern

# The project segment of a list route that means every project (`/projects/-/endpoints`, as
# in Google's AIP-159): platform admins only. A project name never is '-' (a DNS label).
ALL_PROJECTS = "-"


def validate_name(name: str, what: str = "name") -> str:
    """DNS-label names: 1-63 of a-z, 0-9 and '-', starting and ending alphanumeric."""
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{what} must not be empty")
    if len(name) > NAME_MAX:
        raise InvalidInput(f"{what} {name!r} is longer than {NAME_MAX} characters")
    if not _NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"{what} {name!r} is not valid: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def validate_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        if len(key) > 253 or not _LABEL_KEY_RE.fullmatch(key):
            raise InvalidInput(f"label key {key!r} is not valid")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE_RE.fullmatch(value):
            raise InvalidInput(f"label value {value!r} of {key!r} is not valid")
    return labels


def _name_value(value: str) -> str:
    try:
        return validate_name(value)
    except InvalidInput as exc:
        raise ValueError(exc.detail) from exc


def _labels_value(value: dict[str, str]) -> dict[str, str]:
    try:
        return validate_labels(value)
    except InvalidInput as exc:
        raise ValueError(exc.detail) from exc


Name = Annotated[
    str,
    AfterValidator(_name_value),
    WithJsonSchema(
        {"type": "string", "pattern": NAME_PATTERN, "minLength": 1, "maxLength": NAME_MAX}
    ),
]
"""A resource name in a pydantic schema: validated with a message that says what is allowed."""

Labels = Annotated[dict[str, str], AfterValidator(_labels_value)]


class Metadata(BaseModel):
    """What every resource shows as `metadata`."""

    name: str
    uid: str
    project: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    resource_version: int
    created_at: datetime
    updated_at: datetime


# --- pagination ------------------------------------------------------------------------------

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

T = TypeVar("T")


class RateLimitSpec(BaseModel):
    """At most `requests_per_second` on average, `burst` at once (a token bucket; requests
    past it get 429 with Retry-After)."""

    model_config = ConfigDict(extra="forbid")

    requests_per_second: float = Field(
        ..., ge=0.001, le=1_000_000, description="at least one request in 1000 s"
    )
    burst: int | None = Field(
        None, ge=1, le=1_000_000, description="default: one second's worth of requests"
    )

    def limit(self) -> Limit:
        limit = Limit.of(self.requests_per_second, self.burst)
        assert limit is not None
        return limit

    @classmethod
    def of(cls, limit: Limit | None) -> RateLimitSpec | None:
        return None if limit is None else cls(requests_per_second=limit.rate, burst=limit.burst)


class Page(BaseModel, Generic[T]):
    """One page of a list; pass `next_page_token` back as `page_token` for the next."""

    items: list[T]
    next_page_token: str | None = None


def encode_token(position: Any) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str | None) -> Any:
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting: RecursionError
        raise InvalidInput(f"page_token {token!r} is not valid") from exc


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if limit < 1 or limit > MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return limit
