"""Pages of a project-scoped kind in one project, or across every project (a platform
admin's `GET /api/v1/projects/-/<collection>`), each row with its project's name.

Across projects the order is (project name, name): a unique key, so the page token is that
pair. The projects table is the one the kind's `project_uid` column references, found through
its foreign key, so `core` needs no import of `iam`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import and_, or_, select

from stratus.core.errors import InvalidInput
from stratus.core.resources import (
    ProjectScoped,
    ResourceMixin,
    check_limit,
    decode_token,
    encode_token,
    parse_selector,
    selector_clause,
)

R = TypeVar("R", bound=ResourceMixin)


def page_in_projects(
    scoped: ProjectScoped[R],
    session: Any,
    project: str | None,
    project_uid: Callable[[Any, str], str],
    selector: str | None,
    limit: int | None,
    page_token: str | None,
    *,
    where: Sequence[Any] = (),
) -> tuple[list[tuple[R, str]], str | None]:
    """One page of `scoped`'s rows with their project names: in `project` (by name, as
    `ProjectScoped.page`), or in every project when `project` is None."""
    if project is not None:
        if not where:
            rows, token = scoped.page(
                session, project_uid(session, project), selector, limit, page_token
            )
            return [(r, project) for r in rows], token
    row = scoped.row
    uid_column = row.__table__.c.project_uid  # type: ignore[attr-defined]
    projects = next(iter(uid_column.foreign_keys)).column.table
    project_name, name = projects.c.name, row.name
    stmt = select(row, project_name).join(projects, projects.c.uid == uid_column)
    if project is not None:
        stmt = stmt.where(uid_column == project_uid(session, project))
    for clause in where:
        stmt = stmt.where(clause)
    if reqs := parse_selector(selector):
        dialect = session.get_bind().dialect.name
        stmt = stmt.where(selector_clause(row.labels, reqs, dialect))
    size = check_limit(limit)
    after = decode_token(page_token)
    if after is not None:
        if not (
            isinstance(after, list) and len(after) == 2 and all(isinstance(a, str) for a in after)
        ):
            raise InvalidInput(f"page_token {page_token!r} is not valid")
        stmt = stmt.where(
            or_(project_name > after[0], and_(project_name == after[0], name > after[1]))
        )
    found = session.execute(stmt.order_by(project_name, name).limit(size + 1)).all()
    pairs = [(r, p) for r, p in found]
    token = None
    if len(pairs) > size:
        pairs = pairs[:size]
        last, last_project = pairs[-1]
        token = encode_token([last_project, last.name])
    return pairs, token
