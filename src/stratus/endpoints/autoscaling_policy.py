"""How many replicas an autoscaled variant wants: a pure function of the recent in-flight
samples, the replicas it has, its policy and the clock (no I/O; the endpoint controller feeds
it samples and keeps the state it returns).

The shape is Knative's: demand is the average number of requests in flight (at the gateway
and in replicas) over two windows. Over the stable window (60 s) it sets the count; over the
panic window (6 s), or the last second, or the level the last two samples have both held,
whichever is highest (a burst that has only just begun), it reacts to a burst. When the panic
window asks for at least twice the replicas there are (the panic threshold), the policy panics:
it scales to the panic window's demand and does not scale down until the stable window has
passed without another such burst.
A scale-down waits out the scale-down delay (the most wanted over that delay is kept), a step up
is at most `max_scale_up_rate` times the replicas there are, and a variant at `min_replicas = 0`
stops its last replica only after `scale_to_zero_after` seconds without a request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Policy:
    """A variant's autoscaling settings (from its spec)."""

    min_replicas: int
    max_replicas: int
    target_concurrency: float  # requests in flight per replica
    stable_window: float = 60.0
    panic_window: float = 6.0
    burst_window: float = 1.0  # a burst counts at once: the panic demand is the larger average
    panic_threshold: float = 2.0  # panic when the panic window wants this many times the replicas
    scale_down_delay: float = 30.0
    max_scale_up_rate: float = 10.0  # a step up is at most this many times the replicas
    scale_to_zero_after: float = 300.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError(
                f"replicas must be 0 <= min ({self.min_replicas}) <= max ({self.max_replicas}), "
                "max at least 1"
            )
        if self.target_concurrency <= 0:
            raise ValueError("target_concurrency must be positive")
        if not 0 < self.burst_window <= self.panic_window <= self.stable_window:
            raise ValueError("windows must be 0 < burst <= panic <= stable")
        if self.panic_threshold < 1 or self.max_scale_up_rate <= 1:
            raise ValueError("panic_threshold must be >= 1 and max_scale_up_rate > 1")
        if self.scale_down_delay < 0 or self.scale_to_zero_after < 0:
            raise ValueError("delays must not be negative")


@dataclass(frozen=True)
class Sample:
    """What the gateway saw at `at`: requests in flight to the variant (replicas and the
    cold-start queue) and requests that arrived since the last sample."""

    at: float
    in_flight: float
    arrived: int = 0


@dataclass(frozen=True)
class State:
    """What the policy keeps between two decisions."""

    panic_until: float | None = None  # in panic until then (a new burst moves it on)
    last_request_at: float | None = None  # the last time a request arrived or was in flight
    wanted: tuple[tuple[float, int], ...] = field(default=())  # recent (time, count wanted)


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str  # why, in words, for the endpoint's events
    panic: bool
    state: State


def _average(samples: Sequence[Sample], since: float) -> float | None:
    inside = [s.in_flight for s in samples if s.at >= since]
    return sum(inside) / len(inside) if inside else None


def decide(
    policy: Policy, samples: Sequence[Sample], replicas: int, now: float, state: State
) -> Decision:
    """The replicas the variant should have now.

    Args:
        policy: the variant's settings.
        samples: recent samples, oldest first (those older than the stable window are ignored).
        replicas: the replicas the variant has now (starting or ready): the base of the panic
            threshold and of the step-up limit.
        now: the clock, in seconds (the samples' clock).
        state: what the last decision returned (`State()` the first time).
    """
    last_request = state.last_request_at
    for sample in samples:
        if sample.arrived > 0 or sample.in_flight > 0:
            last_request = max(last_request or sample.at, sample.at)
    state = replace(state, last_request_at=last_request)

    stable = _average(samples, now - policy.stable_window)
    panic_demand = _average(samples, now - policy.panic_window)
    burst = _average(samples, now - policy.burst_window)
    if stable is None or panic_demand is None:  # nothing seen lately: keep what there is
        desired = min(max(replicas, policy.min_replicas), policy.max_replicas)
        return Decision(desired, "no recent samples: unchanged", False, state)

    if burst is not None and burst > panic_demand:  # a burst that has only just begun
        panic_demand = burst
    last_two = [s for s in samples if s.at >= now - policy.burst_window][-2:]
    if len(last_two) == 2:  # the level two samples running have held: a burst, not a spike
        sustained = min(s.in_flight for s in last_two)
        if sustained > panic_demand:
            panic_demand = sustained
    target = policy.target_concurrency
    want_stable = math.ceil(stable / target - 1e-9)
    want_panic = math.ceil(panic_demand / target - 1e-9)
    base = max(replicas, 1)
    # panic at `panic_threshold` times the target per replica (in demand, not rounded counts:
    # a slow ramp from one replica to two is no burst)
    over = panic_demand > 0 and panic_demand >= policy.panic_threshold * target * base
    panic_until = state.panic_until
    if over:
        panic_until = now + policy.stable_window
    panicking = panic_until is not None and now < panic_until
    if not panicking:
        panic_until = None

    if panicking:
        wanted = max(want_panic, replicas)  # a panic never scales down
        reason = (
            f"panic: {policy.panic_window:g} s average {panic_demand:.1f} in flight, "
            f"target {target:g} per replica"
        )
    else:
        wanted = want_stable
        reason = (
            f"{policy.stable_window:g} s average {stable:.1f} in flight, "
            f"target {target:g} per replica"
        )
    arrived = sum(s.arrived for s in samples if s.at >= now - policy.burst_window)
    if replicas == 0 and (panic_demand > 0 or arrived > 0):  # requests wait for a replica
        wanted = max(wanted, 1)
        reason = (
            f"requests waiting at zero replicas ({panic_demand:.1f} in flight, {arrived} arrived)"
        )

    limit = math.ceil(policy.max_scale_up_rate * base)
    if wanted > limit:
        wanted = limit
        reason += f"; step up limited to {policy.max_scale_up_rate:g}x {base}"

    # a scale-down waits out the delay: keep the most wanted over it
    history = tuple((t, n) for t, n in state.wanted if t > now - policy.scale_down_delay)
    history += ((now, wanted),)
    held = max(n for _, n in history)
    if held > wanted:
        reason += f"; scale-down delayed {policy.scale_down_delay:g} s"
        wanted = held

    floor = policy.min_replicas
    if floor == 0:
        idle_for = now - last_request if last_request is not None else math.inf
        if idle_for >= policy.scale_to_zero_after:
            wanted = 0  # its own delay: the scale-down delay does not hold it
            reason = f"no request for {policy.scale_to_zero_after:g} s: scale to zero"
        elif wanted > 0 or replicas > 0:
            floor = 1  # the last replica stays until the variant has been idle long enough
    desired = min(max(wanted, floor), policy.max_replicas)
    if wanted > desired:
        reason += f"; at the maximum ({policy.max_replicas})"
    elif wanted < desired:
        reason += f"; at the minimum ({desired})"
    state = replace(state, panic_until=panic_until, wanted=history)
    return Decision(desired, reason, panicking, state)
