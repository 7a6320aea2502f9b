"""The job scheduling policy, table-driven: what starts, what waits, which spot jobs make room."""

from __future__ import annotations

import pytest

from stratus.jobs.scheduling import Need, Running, Waiting, plan

GIB = 2**30
CAPACITY = Need(2.0, 8 * GIB)


def waiting(job: str, vcpus: float, spot: bool = False, at: float = 0.0, gib: int = 1) -> Waiting:
    return Waiting(job=job, need=Need(vcpus, gib * GIB), spot=spot, queued_at=at)


def running(
    job: str, vcpus: float, spot: bool = False, at: float = 0.0, stopping: bool = False
) -> Running:
    return Running(job=job, need=Need(vcpus, GIB), spot=spot, started_at=at, stopping=stopping)


@pytest.mark.parametrize(
    "runs, waits, start, preempt",
    [
        # room for both, first come first served
        ([], [waiting("a", 1, at=1), waiting("b", 1, at=2)], ["a", "b"], []),
        # room for one: the earlier one starts
        ([running("r", 1)], [waiting("b", 1, at=2), waiting("a", 1, at=1)], ["a"], []),
        # on-demand goes before spot, whatever the order they queued in
        ([running("r", 1)], [waiting("s", 1, spot=True, at=1), waiting("o", 1, at=2)], ["o"], []),
        # an on-demand job preempts a spot job that holds its room
        ([running("s", 2, spot=True)], [waiting("o", 1)], [], [("s", "o")]),
        # ... the most recently started spot job, and no more than needed
        (
            [running("s1", 1, spot=True, at=1), running("s2", 1, spot=True, at=2)],
            [waiting("o", 1)],
            [],
            [("s2", "o")],
        ),
        # a spot job never preempts
        ([running("s", 2, spot=True)], [waiting("t", 1, spot=True)], [], []),
        # on-demand jobs are never preempted
        ([running("o1", 2)], [waiting("o2", 1)], [], []),
        # a job waiting for a stopping job's room reserves it: no second preemption
        (
            [running("s1", 1, spot=True, stopping=True), running("s2", 1, spot=True, at=5)],
            [waiting("o", 1)],
            [],
            [],
        ),
        # a big job at the head keeps its claim: the small one behind it waits too
        ([running("r", 1)], [waiting("big", 2, at=1), waiting("small", 1, at=2)], [], []),
        # memory counts as well as vCPUs
        ([], [waiting("fat", 1, gib=9)], [], []),
    ],
)
def test_plan(
    runs: list[Running],
    waits: list[Waiting],
    start: list[str],
    preempt: list[tuple[str, str]],
) -> None:
    decision = plan(CAPACITY, runs, waits)
    assert decision.start == start
    assert decision.preempt == preempt


def test_preemption_needs_enough_spot_room_or_takes_none() -> None:
    runs = [running("o1", 1), running("s", 0.5, spot=True)]
    decision = plan(CAPACITY, runs, [waiting("o2", 2)])
    assert decision.preempt == [] and decision.start == []


def test_fractional_vcpus_add_up() -> None:
    jobs = [waiting(f"j{i}", 0.5, at=i) for i in range(5)]
    assert plan(CAPACITY, [], jobs).start == ["j0", "j1", "j2", "j3"]
