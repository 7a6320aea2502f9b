"""Which queued jobs start now and which spot jobs make room: a pure policy, no I/O.

The controller (`controller.py`) gathers what runs and what waits, calls `plan`, and carries
the decision out. Rules, in order:
- On-demand jobs go before spot jobs; within each, first queued, first served.
- A job starts when its vCPUs and memory fit in what is free.
- An on-demand job that does not fit may take the place of running spot jobs (the most
  recently started first, as they lose the least work); they are stopped with a grace period
  and queue again, to resume from their last checkpoint.
- A job that cannot start holds what it needs back from jobs behind it (no starving a big job
  behind a stream of small ones), except that jobs behind it still start when they fit in
  what is left after reserving it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

_EPSILON = 1e-9


@dataclass(frozen=True)
class Need:
    vcpus: float
    memory_bytes: int

    def fits(self, free: Need) -> bool:
        return self.vcpus <= free.vcpus + _EPSILON and self.memory_bytes <= free.memory_bytes

    def __add__(self, other: Need) -> Need:
        return Need(self.vcpus + other.vcpus, self.memory_bytes + other.memory_bytes)

    def __sub__(self, other: Need) -> Need:
        return Need(self.vcpus - other.vcpus, self.memory_bytes - other.memory_bytes)


@dataclass(frozen=True)
class Waiting:
    job: str
    need: Need
    spot: bool
    queued_at: float


@dataclass(frozen=True)
class Running:
    job: str
    need: Need
    spot: bool
    started_at: float
    stopping: bool = False  # being stopped (preempted or cancelled): its room comes soon


@dataclass
class Plan:
    start: list[str] = field(default_factory=list)
    preempt: list[tuple[str, str]] = field(default_factory=list)  # (spot job, for whom)


def plan(capacity: Need, running: Sequence[Running], waiting: Sequence[Waiting]) -> Plan:
    """What to start and what to preempt now, given the backend's capacity."""
    decision = Plan()
    free = capacity
    for job in running:
        free = free - job.need
    # Room that stopping jobs will give back, claimed once by the first job that waits for it.
    releasing = Need(0.0, 0)
    for job in running:
        if job.stopping:
            releasing = releasing + job.need
    spot_running = sorted(
        (j for j in running if j.spot and not j.stopping), key=lambda j: -j.started_at
    )
    order = sorted(waiting, key=lambda w: (w.spot, w.queued_at, w.job))
    for wanted in order:
        if wanted.need.fits(free):
            decision.start.append(wanted.job)
            free = free - wanted.need
            continue
        if wanted.need.fits(free + releasing):
            free, releasing = free + releasing - wanted.need, Need(0.0, 0)  # reserved
            continue
        if not wanted.spot:
            victims: list[Running] = []
            room = free + releasing
            for candidate in spot_running:
                if wanted.need.fits(room):
                    break
                victims.append(candidate)
                room = room + candidate.need
            if wanted.need.fits(room):
                for victim in victims:
                    decision.preempt.append((victim.job, wanted.job))
                    spot_running.remove(victim)
                free, releasing = room - wanted.need, Need(0.0, 0)  # reserved until they stop
                continue
        # It waits; keep its need reserved from what is free so later jobs cannot starve it.
        free = free - wanted.need
    return decision
