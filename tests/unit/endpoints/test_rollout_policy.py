"""The rollout policy, table-driven: surge first, drain old templates only once the new one
is fully ready, trim surplus, drop unwanted variants; and the crash backoff."""

from __future__ import annotations

import pytest

from stratus.endpoints.rollout import Phase, Seen, Want, backoff_seconds, plan

R, S, D = Phase.ready, Phase.starting, Phase.draining


def seen(*items: tuple[str, str, str, Phase]) -> list[Seen]:
    return [Seen(id, variant, template, phase, float(i)) for i, (id, variant, template, phase)
            in enumerate(items)]  # fmt: skip


CASES = [
    # (what is wanted, what runs, expected starts, expected drains)
    ([Want("main", "a", 2)], [], {"main": 2}, []),
    ([Want("main", "a", 2)], seen(("r1", "main", "a", R)), {"main": 1}, []),
    ([Want("main", "a", 2)], seen(("r1", "main", "a", R), ("r2", "main", "a", S)), {}, []),
    # a new template: surge two new ones, keep the old ones serving
    (
        [Want("main", "b", 2)],
        seen(("o1", "main", "a", R), ("o2", "main", "a", R)),
        {"main": 2},
        [],
    ),
    # one new one ready: still keep both old ones
    (
        [Want("main", "b", 2)],
        seen(
            ("o1", "main", "a", R),
            ("o2", "main", "a", R),
            ("n1", "main", "b", R),
            ("n2", "main", "b", S),
        ),
        {},
        [],
    ),  # fmt: skip
    # all new ones ready: drain the old
    (
        [Want("main", "b", 2)],
        seen(
            ("o1", "main", "a", R),
            ("o2", "main", "a", R),
            ("n1", "main", "b", R),
            ("n2", "main", "b", R),
        ),
        {},
        ["o1", "o2"],
    ),  # fmt: skip
    # old replicas that never got ready are stopped at once
    ([Want("main", "b", 1)], seen(("o1", "main", "a", S)), {"main": 1}, ["o1"]),
    # scale down: starting ones go first, then the newest ready
    (
        [Want("main", "a", 1)],
        seen(("r1", "main", "a", R), ("r2", "main", "a", R), ("r3", "main", "a", S)),
        {},
        ["r3", "r2"],
    ),
    # a variant no longer wanted drains; draining replicas are left alone
    (
        [Want("main", "a", 1)],
        seen(("r1", "main", "a", R), ("c1", "canary", "x", R), ("d1", "main", "z", D)),
        {},
        ["c1"],
    ),
    # zero replicas wanted
    ([Want("main", "a", 0)], seen(("r1", "main", "a", R)), {}, ["r1"]),
]


@pytest.mark.parametrize(("wants", "running", "starts", "drains"), CASES)
def test_plan(
    wants: list[Want], running: list[Seen], starts: dict[str, int], drains: list[str]
) -> None:
    decided = plan(wants, running)
    assert decided.start == starts
    assert sorted(decided.drain) == sorted(drains)


def test_surge_is_bounded() -> None:
    assert plan([Want("main", "a", 10)], [], max_surge=3).start == {"main": 3}


@pytest.mark.parametrize(
    ("failures", "seconds"), [(0, 0), (1, 0), (2, 1), (3, 2), (4, 4), (8, 60), (50, 60)]
)
def test_backoff(failures: int, seconds: float) -> None:
    assert backoff_seconds(failures) == seconds
