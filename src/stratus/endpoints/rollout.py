"""The rollout policy: from what an endpoint wants and what runs, which replicas to start and
which to drain. Pure (no I/O), so it is tested table-driven.

A variant's replicas are told apart by their *template* (model version and batching): when it
changes, replicas of the new template start first (a surge), and the old ones drain only once
enough new ones are ready, so traffic never meets an empty variant (a rolling update).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class Phase(StrEnum):
    starting = "starting"
    ready = "ready"
    draining = "draining"


@dataclass(frozen=True)
class Want:
    """One variant as the spec has it."""

    variant: str
    template: str
    replicas: int


@dataclass(frozen=True)
class Seen:
    """One replica as the controller knows it."""

    id: str
    variant: str
    template: str
    phase: Phase
    started: float = 0.0


@dataclass
class Plan:
    start: dict[str, int] = field(default_factory=dict)  # variant -> how many to start
    drain: list[str] = field(default_factory=list)  # replica ids


def plan(wants: Sequence[Want], seen: Sequence[Seen], max_surge: int = 64) -> Plan:
    """Start what is missing of each variant's current template; drain surplus replicas, old
    templates once the current one is fully ready, and variants no longer wanted."""
    result = Plan()
    live = [r for r in seen if r.phase is not Phase.draining]
    wanted = {w.variant: w for w in wants}
    for replica in live:
        if replica.variant not in wanted:
            result.drain.append(replica.id)
    for want in wants:
        mine = [r for r in live if r.variant == want.variant]
        current = [r for r in mine if r.template == want.template]
        old = [r for r in mine if r.template != want.template]
        # surplus of the current template: drop starting ones first, then the newest
        surplus = len(current) - want.replicas
        if surplus > 0:
            order = sorted(current, key=lambda r: (r.phase is Phase.ready, -r.started))
            result.drain.extend(r.id for r in order[:surplus])
        missing = want.replicas - len(current)
        if missing > 0:
            result.start[want.variant] = min(missing, max_surge)
        ready_current = sum(1 for r in current if r.phase is Phase.ready)
        if ready_current >= want.replicas:
            result.drain.extend(r.id for r in old)
        else:
            # old replicas that never became ready serve nobody: stop them now
            result.drain.extend(r.id for r in old if r.phase is Phase.starting)
    return result


def backoff_seconds(failures: int, base: float = 1.0, cap: float = 60.0) -> float:
    """How long to wait before restarting a variant whose replicas crashed `failures` times
    in a row: 0 for the first crash, then 1, 2, 4 … seconds up to `cap`."""
    if failures <= 1:
        return 0.0
    return float(min(cap, base * 2 ** (failures - 2)))
