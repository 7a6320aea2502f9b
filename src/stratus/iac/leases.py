"""Apply leases: one apply (or destroy) at a time per project.

An apply takes the lease of every project its files name, in one transaction, before it
changes anything; another apply to any of them is refused (409) naming the holder and when
the lease ends. The holder renews the lease after each resource, so a long apply keeps it;
one that dies leaves a lease that expires by itself after its time to live. `stratus iac
leases` shows who holds what; a project admin may break a lease (`stratus iac unlock`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import DateTime, String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Base, Database
from stratus.core.errors import Conflict, NotFound


class ApplyLeaseRow(Base):
    __tablename__ = "iac_leases"

    project: Mapped[str] = mapped_column(String(63), primary_key=True)  # by name: it may be new
    holder: Mapped[str] = mapped_column(String(300))  # the principal applying
    apply_id: Mapped[str] = mapped_column(String(64))
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LeaseRead(BaseModel):
    project: str
    holder: str
    apply_id: str
    acquired_at: datetime
    expires_at: datetime


class ApplyLeases:
    def __init__(
        self, db: Database, ttl_seconds: float = 300.0, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.db = db
        self.ttl = timedelta(seconds=ttl_seconds)
        self.clock = clock

    def acquire(self, projects: Collection[str], holder: str, apply_id: str) -> None:
        """Take the leases of `projects`, all or none; Conflict names a live holder."""
        now = self.clock()
        try:
            with self.db.transaction() as session:
                for project in sorted(set(projects)):
                    row = session.get(ApplyLeaseRow, project, with_for_update=True)
                    if row is not None and as_utc(row.expires_at) > now:
                        left = (as_utc(row.expires_at) - now).total_seconds()
                        raise Conflict(
                            f"project {project!r} is being applied by {row.holder} "
                            f"({row.apply_id}, since {as_utc(row.acquired_at):%H:%M:%S} UTC); "
                            f"try again when it ends: its lease expires within {left:.0f} s "
                            "if it has died (`stratus iac leases` shows it)"
                        )
                    if row is None:
                        row = ApplyLeaseRow(project=project)
                        session.add(row)
                    row.holder, row.apply_id = holder, apply_id
                    row.acquired_at, row.expires_at = now, now + self.ttl
        except IntegrityError:  # another apply inserted a row at the same moment
            raise Conflict(
                "another apply to the same projects started at the same moment: try again"
            ) from None

    def renew(self, apply_id: str) -> bool:
        """Extend the apply's leases; False when they were broken."""
        with self.db.transaction() as session:
            rows = session.scalars(
                select(ApplyLeaseRow).where(ApplyLeaseRow.apply_id == apply_id)
            ).all()
            for row in rows:
                row.expires_at = self.clock() + self.ttl
            return bool(rows)

    def release(self, apply_id: str) -> None:
        with self.db.transaction() as session:
            session.execute(delete(ApplyLeaseRow).where(ApplyLeaseRow.apply_id == apply_id))

    def held(self, projects: Collection[str] | None = None) -> list[LeaseRead]:
        """The leases that have not expired (of `projects`, or all), by project."""
        now = self.clock()
        with self.db.transaction() as session:
            stmt = select(ApplyLeaseRow).order_by(ApplyLeaseRow.project)
            if projects is not None:
                stmt = stmt.where(ApplyLeaseRow.project.in_(sorted(projects)))
            rows = session.scalars(stmt).all()
            return [
                LeaseRead(
                    project=r.project,
                    holder=r.holder,
                    apply_id=r.apply_id,
                    acquired_at=as_utc(r.acquired_at),
                    expires_at=as_utc(r.expires_at),
                )
                for r in rows
                if as_utc(r.expires_at) > now
            ]

    def break_lease(self, project: str) -> LeaseRead:
        """Remove a project's lease (its apply, if alive, fails at its next renewal)."""
        found = self.held([project])
        if not found:
            raise NotFound(f"no apply holds a lease on project {project!r}")
        with self.db.transaction() as session:
            session.execute(delete(ApplyLeaseRow).where(ApplyLeaseRow.project == project))
        return found[0]
