"""The resource base: metadata columns, names, labels, selectors, pagination, concurrency.

Every kind is a row with `uid`, `name`, `labels`, `resource_version` and timestamps
(`ResourceMixin`), shown to users as `metadata` + `spec` + `status`. A write names the
`resource_version` it read; a stale one is refused with a 409 that names the current version.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar, cast

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema
from sqlalchemy import JSON, DateTime, Integer, String, and_, not_, or_, select
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import ColumnElement

from stratus.core.clock import as_utc, utcnow
from stratus.core.errors import AlreadyExists, InvalidInput, NotFound, StaleResource
from stratus.core.ids import new_id

NAME_MAX = 63
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")

NAME_PATTERN = _NAME_RE.pattern


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


class ResourceMixin:
    """Columns every resource row has."""

    uid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(NAME_MAX), nullable=False)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, default=dict)
    resource_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    __mapper_args__ = {"version_id_col": resource_version}  # noqa: RUF012


def check_version(row: ResourceMixin, expected: int | None, kind: str) -> None:
    """Refuse a write made against a stale read (optimistic concurrency)."""
    if expected is not None and expected != row.resource_version:
        raise StaleResource(
            f"{kind} {row.name!r} has resource_version {row.resource_version}, "
            f"not {expected}: read it again and retry",
            current_resource_version=row.resource_version,
        )


class Metadata(BaseModel):
    """What every resource shows as `metadata`."""

    name: str
    uid: str
    project: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    resource_version: int
    created_at: datetime
    updated_at: datetime


def metadata_of(row: ResourceMixin, project: str | None = None) -> Metadata:
    return Metadata(
        name=row.name,
        uid=row.uid,
        project=project,
        labels=dict(row.labels or {}),
        resource_version=row.resource_version,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


# --- label selectors -------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # "!=", "notin"


_SET_RE = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def parse_selector(selector: str | None) -> list[Requirement]:
    """Parse a Kubernetes-style selector: `a=b,c!=d,e in (x,y),f notin (z),g,!h`."""
    if not selector or not selector.strip():
        return []
    parts: list[str] = []
    depth, current = 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    reqs: list[Requirement] = []
    for raw in parts:
        part = raw.strip()
        if not part:
            raise InvalidInput(f"label selector {selector!r} has an empty term")
        if m := _SET_RE.match(part):
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            if not values:
                raise InvalidInput(f"selector term {part!r} needs at least one value")
            reqs.append(Requirement(m.group(1), m.group(2), values))
        elif "!=" in part:
            key, value = (s.strip() for s in part.split("!=", 1))
            reqs.append(Requirement(key, "!=", (value,)))
        elif "==" in part or "=" in part:
            key, value = (s.strip() for s in re.split("==?", part, maxsplit=1))
            reqs.append(Requirement(key, "=", (value,)))
        elif part.startswith("!"):
            reqs.append(Requirement(part[1:].strip(), "!exists"))
        else:
            reqs.append(Requirement(part, "exists"))
    for req in reqs:
        if not req.key or not _LABEL_KEY_RE.fullmatch(req.key):
            raise InvalidInput(f"label selector {selector!r}: {req.key!r} is not a label key")
    return reqs


def selector_clause(column: Any, reqs: list[Requirement], dialect: str) -> ColumnElement[bool]:
    """Translate requirements into SQL over a JSON `labels` column (SQLite and PostgreSQL)."""
    clauses: list[ColumnElement[bool]] = []
    for req in reqs:
        if dialect == "postgresql":
            # `labels` is json, not jsonb: there is no `?` operator, but `->` is NULL when absent.
            present: ColumnElement[bool] = column.op("->")(req.key).is_not(None)
            value = column.op("->>")(req.key)
        else:
            from sqlalchemy import func

            path = '$."' + req.key.replace('"', '""') + '"'
            present = func.json_type(column, path).is_not(None)
            value = func.json_extract(column, path)
        if req.op == "exists":
            clauses.append(present)
        elif req.op == "!exists":
            clauses.append(not_(present))
        elif req.op in ("=", "in"):
            clauses.append(and_(present, value.in_(req.values)))
        else:
            clauses.append(or_(not_(present), value.not_in(req.values)))
    return and_(*clauses) if clauses else and_(True)


# --- pagination ------------------------------------------------------------------------------

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

T = TypeVar("T")


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


def paginate(
    session: Any,
    stmt: Any,
    key_column: Any,
    limit: int | None,
    page_token: str | None,
    *,
    descending: bool = False,
) -> tuple[list[Any], str | None]:
    """Keyset pagination over a unique, ordered column: O(limit) whatever the page."""
    size = check_limit(limit)
    after = decode_token(page_token)
    if after is not None:
        python_type = key_column.type.python_type
        if isinstance(after, bool) or not isinstance(after, python_type):
            raise InvalidInput(f"page_token {page_token!r} is not valid")
        stmt = stmt.where(key_column < after if descending else key_column > after)
    order = key_column.desc() if descending else key_column
    rows = list(session.scalars(stmt.order_by(order).limit(size + 1)))
    token = None
    if len(rows) > size:
        rows = rows[:size]
        token = encode_token(getattr(rows[-1], key_column.key))
    return rows, token


def paginate_list(
    items: list[T], key: Callable[[T], str], limit: int | None, page_token: str | None
) -> tuple[list[T], str | None]:
    """The same pages over a small list already in memory (sorted here by `key`)."""
    size = check_limit(limit)
    after = decode_token(page_token)
    if after is not None and not isinstance(after, str):
        raise InvalidInput(f"page_token {page_token!r} is not valid")
    ordered = sorted(items, key=key)
    if after is not None:
        ordered = [item for item in ordered if key(item) > after]
    page = ordered[:size]
    token = encode_token(key(page[-1])) if len(ordered) > size else None
    return page, token


R = TypeVar("R", bound=ResourceMixin)


class ProjectScoped(Generic[R]):
    """What every project-scoped kind repeats: find one by name (or a 404), refuse a duplicate
    (a 409), list with a label selector in pages, and change its description and labels."""

    def __init__(self, row: type[R], kind: str) -> None:
        self.row = row
        self.kind = kind

    def _column(self, name: str) -> Any:
        return getattr(self.row, name)

    def find(self, session: Any, project_uid: str, project: str, name: str) -> R:
        found = session.scalar(
            select(self.row).where(
                self._column("project_uid") == project_uid, self._column("name") == name
            )
        )
        if found is None:
            raise NotFound(f"{self.kind} {name!r} not found in project {project!r}")
        return cast(R, found)

    def refuse_duplicate(self, session: Any, project_uid: str, project: str, name: str) -> None:
        exists = session.scalar(
            select(self.row).where(
                self._column("project_uid") == project_uid, self._column("name") == name
            )
        )
        if exists is not None:
            raise AlreadyExists(f"{self.kind} {name!r} already exists in project {project!r}")

    def page(
        self,
        session: Any,
        project_uid: str,
        selector: str | None,
        limit: int | None,
        page_token: str | None,
    ) -> tuple[list[R], str | None]:
        stmt = select(self.row).where(self._column("project_uid") == project_uid)
        if reqs := parse_selector(selector):
            dialect = session.get_bind().dialect.name
            stmt = stmt.where(selector_clause(self._column("labels"), reqs, dialect))
        return paginate(session, stmt, self._column("name"), limit, page_token)

    def update(self, row: R, change: Any) -> None:
        """Apply `resource_version` (409 if stale), `description` and `labels` of a change."""
        check_version(row, change.resource_version, self.kind)
        if change.description is not None:
            row.description = change.description  # type: ignore[attr-defined]
        if change.labels is not None:
            row.labels = change.labels
