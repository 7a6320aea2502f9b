"""Reserved capacity: what a project has committed to (instances of a type for a year), set by a
platform admin. The meter prices usage within it at the catalog's reserved rate: each hour, the
first `count` × 3600 instance-seconds of that type the project's replicas and on-demand jobs use
(AWS applies reserved instances by the hour the same way); the rest is on demand. Spot jobs and
functions keep their own prices.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from stratus.billing import schemas as s
from stratus.billing.tables import ReservationRow
from stratus.compute.instance_types import InstanceCatalog
from stratus.core.clock import utcnow
from stratus.core.database import Database
from stratus.core.errors import InvalidInput
from stratus.iam.tables import ProjectRow

ProjectLookup = Callable[[Session, str], str]
MAX_RESERVED = 10_000


class Reservations:
    def __init__(
        self, db: Database, project_uid: ProjectLookup, instance_types: InstanceCatalog
    ) -> None:
        self.db = db
        self._project_uid = project_uid
        self.instance_types = instance_types

    def read(self, project: str) -> s.ReservationsRead:
        with self.db.transaction() as session:
            uid = self._project_uid(session, project)
            rows = session.scalars(
                select(ReservationRow).where(ReservationRow.project_uid == uid)
            ).all()
            return s.ReservationsRead(
                project=project, instance_types={r.instance_type: r.count for r in rows}
            )

    def set(self, project: str, data: s.ReservationsSet, *, actor: str) -> s.ReservationsRead:
        """Replace the project's reservations (a type left out, or at 0, is not reserved)."""
        for name, count in data.instance_types.items():
            try:
                self.instance_types.get(name)
            except InvalidInput as exc:
                raise InvalidInput(f"instance_types.{name}: {exc.detail}") from None
            if not 0 <= count <= MAX_RESERVED:
                raise InvalidInput(f"instance_types.{name}: from 0 to {MAX_RESERVED}, not {count}")
        with self.db.transaction() as session:
            uid = self._project_uid(session, project)
            session.execute(delete(ReservationRow).where(ReservationRow.project_uid == uid))
            now = utcnow()
            for name, count in sorted(data.instance_types.items()):
                if count:
                    row = ReservationRow(project_uid=uid, instance_type=name, count=count)
                    row.updated_at, row.updated_by = now, actor
                    session.add(row)
        return self.read(project)

    def all(self) -> dict[tuple[str, str], int]:
        """(project, instance type) -> instances reserved, for the meter."""
        with self.db.transaction() as session:
            rows = session.execute(
                select(ProjectRow.name, ReservationRow.instance_type, ReservationRow.count).join(
                    ProjectRow, ProjectRow.uid == ReservationRow.project_uid
                )
            ).all()
            return {(project, kind): count for project, kind, count in rows}
