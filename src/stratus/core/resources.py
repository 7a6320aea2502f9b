"""The resource base: metadata columns, names, labels, selectors, pagination, concurrency.

The pydantic face (names, labels, `Metadata`, `Page`, page tokens) lives in
`core/resource_schemas.py`, free of SQLAlchemy so the SDK can load it; it is re-exported here.

Every kind is a row with `uid`, `name`, `labels`, `resource_version` and timestamps
(`ResourceMixin`), shown to users as `metadata` + `spec` + `status`. A write names the
`resource_version` it read; a stale one is refused with a 409 that names the current version.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import JSON, DateTime, Integer, String, and_, not_, or_, select
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import ColumnElement

from stratus.core.clock import as_utc, utcnow
from stratus.core.errors import AlreadyExists, InvalidInput, NotFound, StaleResource
from stratus.core.ids import new_id
from stratus.core.resource_schemas import _LABEL_KEY_RE
from stratus.core.resource_schemas import DEFAULT_LIMIT as DEFAULT_LIMIT
from stratus.core.resource_schemas import MAX_LIMIT as MAX_LIMIT
from stratus.core.resource_schemas import NAME_MAX as NAME_MAX
from stratus.core.resource_schemas import NAME_PATTERN as NAME_PATTERN
from stratus.core.resource_schemas import Labels as Labels
from stratus.core.resource_schemas import Metadata as Metadata
from stratus.core.resource_schemas import Name as Name
from stratus.core.resource_schemas import Page as Page
from stratus.core.resource_schemas import check_limit as check_limit
from stratus.core.resource_schemas import decode_token as decode_token
from stratus.core.resource_schemas import encode_token as encode_token
from stratus.core.resource_schemas import validate_labels as validate_labels
from stratus.core.resource_schemas import validate_name as validate_name


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


T = TypeVar("T")
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
