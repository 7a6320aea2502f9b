"""Quotas: per-project limits on replicas, vCPUs, memory, GPUs, queued or running jobs and
stored bytes, set by a platform admin.

A quota is checked where the project asks for more (`core.demand`): an endpoint written with
more replicas (an autoscaled variant counts at its maximum) or bigger ones, a job submitted,
bytes uploaded. The check runs inside the writing transaction, after the change is flushed, so
it reads the use as it would be; over a limit, it raises 403 naming the quota, its limit, what
is in use and what the change asked, and the transaction leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from stratus.billing import schemas as s
from stratus.billing.tables import QuotaRow
from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.demand import Demand, Resource
from stratus.core.errors import QuotaExceeded

Use = Callable[[Session, str], dict[Resource, float]]  # (session, project uid) -> in use
ProjectLookup = Callable[[Session, str], str]  # (session, name) -> uid, or uid -> name

UNITS = {
    Resource.replicas: "replicas",
    Resource.vcpus: "vCPUs",
    Resource.memory_gib: "GiB of memory",
    Resource.gpus: "GPUs",
    Resource.jobs: "queued or running jobs",
    Resource.stored_bytes: "bytes stored",
}


def _figure(resource: Resource, value: float) -> str:
    if resource is Resource.stored_bytes:
        return _bytes(int(value))
    return f"{value:g}"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class Quotas:
    def __init__(
        self,
        db: Database,
        project_uid: ProjectLookup,
        project_name: ProjectLookup,
        uses: Sequence[Use],
    ) -> None:
        self.db = db
        self._project_uid = project_uid
        self._project_name = project_name
        self.uses = list(uses)

    def _in_use(self, session: Session, project_uid: str) -> dict[Resource, float]:
        total = dict.fromkeys(Resource, 0.0)
        for use in self.uses:
            for resource, amount in use(session, project_uid).items():
                total[resource] += amount
        return total

    def read(self, project: str) -> s.QuotasRead:
        with self.db.transaction() as session:
            uid = self._project_uid(session, project)
            row = session.get(QuotaRow, uid)
            return self._read(session, project, uid, row)

    def set(self, project: str, data: s.QuotasSet, *, actor: str) -> s.QuotasRead:
        """Replace the project's limits (a missing one is no limit). Lower than what is in use
        is allowed: nothing is stopped, but nothing more is admitted until use falls under."""
        limits = {k: v for k, v in data.model_dump().items() if v is not None}
        with self.db.transaction() as session:
            uid = self._project_uid(session, project)
            row = session.get(QuotaRow, uid)
            if row is None:
                row = QuotaRow(project_uid=uid)
                session.add(row)
            row.limits, row.updated_at, row.updated_by = limits, utcnow(), actor
            session.flush()
            return self._read(session, project, uid, row)

    def _read(self, session: Session, project: str, uid: str, row: QuotaRow | None) -> s.QuotasRead:
        used = self._in_use(session, uid)
        return s.QuotasRead(
            project=project,
            limits=s.QuotasSet.model_validate(row.limits if row else {}),
            used={r.value: used[r] for r in Resource},
            updated_at=as_utc(row.updated_at) if row else None,
            updated_by=row.updated_by if row else None,
        )

    def check(self, session: Session, demand: Demand) -> None:
        """The `core.demand` check: refuse growth past a limit."""
        row = session.get(QuotaRow, demand.project_uid)
        if row is None or not row.limits:
            return
        more = demand.more()
        asked = [r for r in more if row.limits.get(r.value) is not None]
        if not asked:
            return
        used = self._in_use(session, demand.project_uid)
        for resource in asked:
            limit = float(row.limits[resource.value])
            if used[resource] > limit + 1e-9:
                before = used[resource] - more[resource]
                project = demand.project or self._project_name(session, demand.project_uid)
                raise QuotaExceeded(
                    f"project {project!r} is over its quota of {_figure(resource, limit)} "
                    f"{UNITS[resource]} ({resource.value}): {_figure(resource, before)} in use, "
                    f"and this {demand.kind} asks for {_figure(resource, more[resource])} more; "
                    "a platform admin can raise it (stratus quotas set)",
                    quota=resource.value,
                    limit=limit,
                    in_use=before,
                    requested=more[resource],
                )
