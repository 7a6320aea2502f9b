"""One control plane per database: a lease held in the database.

Every controller of a control plane assumes it is the only one acting on the database's
endpoints, jobs and pipelines. Until several control planes are designed to share that work,
`stratus up` takes this lease before it starts anything and renews it every third of its
time to live; a second control plane on the same database refuses to start, naming the
holder. A clean stop releases the lease; a crashed holder's lease is taken over once it has
expired, or at once by a control plane started again on the same home (its home lock proves
the old process is gone).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Integer, String, delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Base, Database
from stratus.core.errors import Conflict

log = logging.getLogger(__name__)

LEASE_ID = 1  # the one row


class ControlPlaneLeaseRow(Base):
    __tablename__ = "control_plane_lease"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str] = mapped_column(String(600))  # host and home of the holder
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(String(500))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ControlPlaneLease:
    """The lease of one control plane: `acquire`, then `keep` (a renewing thread), `release`."""

    def __init__(
        self,
        db: Database,
        *,
        holder: str,
        host: str,
        pid: int,
        url: str,
        ttl_seconds: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.holder, self.host, self.pid, self.url = holder, host, pid, url
        self.ttl = timedelta(seconds=ttl_seconds)
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lease, or raise Conflict naming the control plane that holds it."""
        try:
            with self.db.transaction() as session:
                row = session.get(ControlPlaneLeaseRow, LEASE_ID, with_for_update=True)
                now = self._clock()
                if row is None:
                    session.add(ControlPlaneLeaseRow(id=LEASE_ID, **self._fields(now)))
                    return
                if row.holder != self.holder and as_utc(row.expires_at) > now:
                    left = (as_utc(row.expires_at) - now).total_seconds()
                    raise Conflict(
                        f"another Stratus control plane is running on this database: pid "
                        f"{row.pid} on {row.host}, serving {row.url} ({row.holder}). One control "
                        f"plane per database: stop it first (if it crashed, its lease expires "
                        f"within {left:.0f} s)"
                    )
                if row.holder != self.holder:
                    log.warning("taking over the expired lease of pid %d on %s", row.pid, row.host)
                for name, value in self._fields(now).items():
                    setattr(row, name, value)
        except IntegrityError:  # another one inserted the row at the same moment
            raise Conflict(
                "another Stratus control plane started on this database at the same moment"
            ) from None

    def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours (taken over after expiring)."""
        with self.db.transaction() as session:
            row = session.get(ControlPlaneLeaseRow, LEASE_ID, with_for_update=True)
            if row is None or row.holder != self.holder or row.pid != self.pid:
                return False
            row.expires_at = self._clock() + self.ttl
            return True

    def keep(self, on_lost: Callable[[], None]) -> None:
        """Renew the lease every third of its time to live, in a thread, until `release`;
        `on_lost` is called (once) if another control plane has taken it."""

        def loop() -> None:
            interval = self.ttl.total_seconds() / 3
            while not self._stop.wait(interval):
                try:
                    if self.renew():
                        continue
                except Exception:  # a passing database error: the lease may still be ours
                    log.exception("renewing the control plane's lease failed; will retry")
                    continue
                log.critical("another control plane took this one's lease: stopping")
                on_lost()
                return

        self._thread = threading.Thread(target=loop, name="stratus-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            with self.db.transaction() as session:
                session.execute(
                    delete(ControlPlaneLeaseRow).where(
                        ControlPlaneLeaseRow.id == LEASE_ID,
                        ControlPlaneLeaseRow.holder == self.holder,
                        ControlPlaneLeaseRow.pid == self.pid,
                    )
                )
        except Exception:  # it expires on its own
            log.exception("releasing the control plane's lease failed")

    def _fields(self, now: datetime) -> dict[str, object]:
        return {
            "holder": self.holder,
            "host": self.host,
            "pid": self.pid,
            "url": self.url,
            "expires_at": now + self.ttl,
        }
