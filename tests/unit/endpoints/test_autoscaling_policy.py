"""The autoscaling policy on a simulated clock: load shapes (steady, a burst, a slow ramp,
flapping, a replica crash during a scale-up, idle to zero and back) against what a variant
should have, and the limits (minimum, maximum, step up, scale-down delay)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from stratus.endpoints.autoscaling_policy import Decision, Policy, Sample, State, decide

TICK = 0.5  # the controller samples and decides this often


@dataclass
class Step:
    at: float
    load: float
    replicas: int  # what the variant had when deciding
    decision: Decision


def simulate(
    policy: Policy,
    load: Callable[[float], float],
    seconds: float,
    replicas: int = 1,
    crash_at: float | None = None,
) -> list[Step]:
    """Sample the load every tick, decide, and give the variant what was decided at once (a
    replica that crashes at `crash_at` is gone for that tick, then replaced)."""
    state = State(last_request_at=0.0)
    samples: list[Sample] = []
    steps: list[Step] = []
    for i in range(int(seconds / TICK) + 1):
        now = i * TICK
        in_flight = load(now)
        samples.append(Sample(now, in_flight, arrived=1 if in_flight > 0 else 0))
        samples = [s for s in samples if s.at >= now - policy.stable_window]
        decision = decide(policy, samples, replicas, now, state)
        steps.append(Step(now, in_flight, replicas, decision))
        state = decision.state
        replicas = decision.desired
        if crash_at is not None and crash_at <= now < crash_at + TICK and replicas > 0:
            replicas -= 1
    return steps


def at(steps: list[Step], moment: float) -> Step:
    return next(s for s in steps if s.at >= moment)


def changes(steps: list[Step]) -> int:
    return sum(
        1
        for a, b in zip(steps, steps[1:], strict=False)
        if a.decision.desired != b.decision.desired
    )


POLICY = Policy(min_replicas=1, max_replicas=32, target_concurrency=4)


def test_a_steady_load_settles_on_load_over_target_without_panic() -> None:
    steps = simulate(POLICY, lambda t: 10.0, 120, replicas=2)
    assert steps[0].replicas == 2 and steps[0].decision.desired == 3  # ceil(10 / 4)
    assert not any(s.decision.panic for s in steps)
    assert changes(steps) == 0
    assert "60 s average 10.0 in flight, target 4 per replica" in steps[-1].decision.reason


def test_a_burst_is_met_within_two_seconds_and_held_through_the_panic() -> None:
    burst = lambda t: 64.0 if 10 <= t < 40 else 4.0  # noqa: E731
    steps = simulate(POLICY, burst, 300)
    reached = next(s.at for s in steps if s.decision.desired >= 16)
    assert 10 <= reached <= 12
    assert at(steps, 10).decision.panic
    assert "panic: 6 s average" in at(steps, 10).decision.reason
    # a panic never scales down: held while the burst lasts, a stable window after it began
    # and the scale-down delay after that
    assert all(s.decision.desired >= 16 for s in steps if 11 <= s.at < 99)
    # then down as the stable average falls, never up again, to what the load needs
    after = [s.decision.desired for s in steps if s.at >= 40]
    assert after == sorted(after, reverse=True)
    assert steps[-1].decision.desired == 1 and not steps[-1].decision.panic


def test_a_burst_gets_its_full_count_once_two_samples_running_have_seen_it() -> None:
    burst = lambda t: 64.0 if t >= 10 else 4.0  # noqa: E731
    steps = simulate(POLICY, burst, 15)
    assert 1 < at(steps, 10).decision.desired < 16  # one sample: the last second's average
    assert at(steps, 10 + TICK).decision.desired == 16  # two: the level they both held
    spike = lambda t: 64.0 if t == 10 else 4.0  # noqa: E731 - one sample only
    assert max(s.decision.desired for s in simulate(POLICY, spike, 15)) < 16


def test_the_step_up_is_limited() -> None:
    policy = Policy(min_replicas=1, max_replicas=64, target_concurrency=1, max_scale_up_rate=2)
    steps = simulate(policy, lambda t: 0.0 if t < 5 else 40.0, 10)
    wanted = [s.decision.desired for s in steps if s.at >= 5][:6]
    assert wanted == [2, 4, 8, 16, 32, 40]
    assert "step up limited to 2x 1" in at(steps, 5).decision.reason


def test_a_slow_ramp_scales_up_step_by_step_without_panic() -> None:
    ramp = lambda t: t / 10  # noqa: E731 - 0 to 40 in flight over 400 s
    steps = simulate(POLICY, ramp, 400)
    desired = [s.decision.desired for s in steps]
    assert desired == sorted(desired)  # never down
    assert not any(s.decision.panic for s in steps)
    assert 8 <= desired[-1] <= 10  # a 60 s average lags the ramp by 30 s: 37 in flight / 4


def test_flapping_load_does_not_flap_the_replicas() -> None:
    flapping = lambda t: 20.0 if int(t / 5) % 2 == 0 else 0.0  # noqa: E731 - 5 s on, 5 s off
    steps = simulate(POLICY, flapping, 300)
    later = steps[len(steps) // 3 :]
    assert len({s.decision.desired for s in later}) == 1, {s.decision.desired for s in later}
    assert changes(steps) <= 2


def test_a_replica_crash_during_a_scale_up_changes_nothing_decided() -> None:
    burst = lambda t: 64.0 if t >= 10 else 4.0  # noqa: E731
    clean = simulate(POLICY, burst, 30)
    crashed = simulate(POLICY, burst, 30, crash_at=10.5)
    assert [s.decision.desired for s in clean] == [s.decision.desired for s in crashed]
    # the crash left one fewer replica for a tick (the controller replaces it)
    assert at(crashed, 11.0).replicas == at(clean, 11.0).replicas - 1


def test_a_variant_at_min_zero_goes_to_zero_after_its_idle_time_and_comes_back() -> None:
    policy = Policy(min_replicas=0, max_replicas=8, target_concurrency=4, scale_to_zero_after=300)
    load = lambda t: 2.0 if t < 10 or t >= 400 else 0.0  # noqa: E731
    steps = simulate(policy, load, 420)
    assert all(s.decision.desired == 1 for s in steps if s.at < 309.5)  # the last one stays
    zero = next(s for s in steps if s.decision.desired == 0)
    assert zero.at == 309.5  # 300 s after the last sample with a request (t=9.5)
    assert "no request for 300 s: scale to zero" in zero.decision.reason
    assert all(s.decision.desired == 0 for s in steps if 309.5 <= s.at < 400)
    back = at(steps, 400)
    assert back.replicas == 0 and back.decision.desired == 1
    assert "requests waiting at zero replicas" in back.decision.reason


def test_a_request_refused_at_zero_replicas_still_wakes_the_variant() -> None:
    policy = Policy(min_replicas=0, max_replicas=8, target_concurrency=4, scale_to_zero_after=60)
    idle = [Sample(float(t), 0.0) for t in range(100)]
    assert decide(policy, idle, 0, 99.0, State(last_request_at=0.0)).desired == 0
    knocked = [*idle, Sample(100.0, 0.0, arrived=1)]  # answered 503 at once: never in flight
    decision = decide(policy, knocked, 0, 100.0, State(last_request_at=0.0))
    assert decision.desired == 1 and "1 arrived" in decision.reason


def test_a_short_request_between_samples_still_counts_as_a_request() -> None:
    policy = Policy(min_replicas=0, max_replicas=8, target_concurrency=4, scale_to_zero_after=30)
    state = State(last_request_at=0.0)

    def seen(until: int) -> list[Sample]:  # one request arrived at t=29, answered at once
        return [Sample(float(t), 0.0, arrived=1 if t == 29 else 0) for t in range(until + 1)]

    decision = decide(policy, seen(40), 1, 40.0, state)
    assert decision.desired == 1 and decision.state.last_request_at == 29.0
    assert decide(policy, seen(58), 1, 58.0, state).desired == 1
    assert decide(policy, seen(59), 1, 59.0, state).desired == 0


@pytest.mark.parametrize(
    ("policy", "load", "expected", "reason"),
    [
        (Policy(1, 8, 4), 64.0, 8, "at the maximum (8)"),
        (Policy(2, 8, 4), 0.0, 2, "at the minimum (2)"),
        (Policy(0, 8, 4, scale_to_zero_after=0), 0.0, 0, "scale to zero"),
        (Policy(1, 8, 0.5), 3.0, 6, "target 0.5 per replica"),
    ],
)
def test_bounds(policy: Policy, load: float, expected: int, reason: str) -> None:
    steps = simulate(policy, lambda t: load, 200)
    assert steps[-1].decision.desired == expected
    assert reason in steps[-1].decision.reason


def test_the_scale_down_waits_out_its_delay() -> None:
    policy = Policy(1, 16, 4, scale_down_delay=30, panic_threshold=100)  # no panic here
    load = lambda t: 40.0 if t < 120 else 4.0  # noqa: E731
    steps = simulate(policy, load, 400)
    assert at(steps, 119).decision.desired == 10
    # the 60 s average falls from t=120; each lower count waits 30 s before it applies
    first_down = next(s for s in steps if s.at > 120 and s.decision.desired < 10)
    assert first_down.at >= 150
    assert any("scale-down delayed 30 s" in s.decision.reason for s in steps if s.at > 120)
    assert steps[-1].decision.desired == 1


def test_without_recent_samples_nothing_changes() -> None:
    decision = decide(POLICY, [], 3, 100.0, State())
    assert decision.desired == 3 and "no recent samples" in decision.reason
    old = [Sample(0.0, 50.0)]
    assert decide(POLICY, old, 3, 100.0, State()).desired == 3


@pytest.mark.parametrize(
    "bad",
    [
        {"min_replicas": 3, "max_replicas": 2, "target_concurrency": 1},
        {"min_replicas": 0, "max_replicas": 0, "target_concurrency": 1},
        {"min_replicas": 0, "max_replicas": 2, "target_concurrency": 0},
        {"min_replicas": 0, "max_replicas": 2, "target_concurrency": 1, "panic_window": 90},
        {"min_replicas": 0, "max_replicas": 2, "target_concurrency": 1, "max_scale_up_rate": 1},
        {"min_replicas": 0, "max_replicas": 2, "target_concurrency": 1, "scale_down_delay": -1},
    ],
)
def test_a_bad_policy_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Policy(**bad)  # type: ignore[arg-type]


def test_the_ceiling_does_not_round_a_whole_number_up() -> None:
    assert math.ceil(8.0 / 4 - 1e-9) == 2
    steps = simulate(POLICY, lambda t: 8.0, 30)
    assert steps[-1].decision.desired == 2
