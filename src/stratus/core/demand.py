"""The seam where a project asks for more capacity: a new or larger endpoint, a job, stored bytes.

The service that writes the change (endpoints, jobs, storage) calls `Admission.check` inside
its transaction, after it has flushed the change, so a check reads the project's use as it
would be. The checks themselves are registered by a layer above those services (billing:
quotas and budgets), which is how a lower layer enforces a higher one's policy without
importing it. A check that refuses raises; the transaction rolls back, and nothing of the
change is left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.orm import Session


class Resource(StrEnum):
    """What a project holds that a quota may limit."""

    replicas = "replicas"
    vcpus = "vcpus"
    memory_gib = "memory_gib"
    gpus = "gpus"
    jobs = "jobs"  # queued or running
    stored_bytes = "stored_bytes"


@dataclass(frozen=True)
class Demand:
    """A change that may take more of some resources: which ones grow, and by how much."""

    project: str
    project_uid: str
    kind: str  # "endpoint", "job", "storage": what asks (for the checks that care)
    grows: dict[Resource, float]

    def more(self) -> dict[Resource, float]:
        return {r: amount for r, amount in self.grows.items() if amount > 0}


Check = Callable[[Session, Demand], None]


class Admission:
    def __init__(self) -> None:
        self._checks: list[Check] = []

    def register(self, check: Check) -> None:
        self._checks.append(check)

    def check(self, session: Session, demand: Demand) -> None:
        """Raise if a registered check refuses the demand (nothing to check: no growth)."""
        if not demand.more():
            return
        for check in self._checks:
            check(session, demand)
