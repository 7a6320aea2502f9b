"""The endpoint controller's autoscaler: it samples each autoscaled variant's requests at the
gateway (in flight, and arrived since the last sample) at a steady pace, asks the policy
(`autoscaling_policy.py`) how many replicas the variant should have, and remembers the answer,
so the controller can tell a scaling step (an endpoint event) from no change.

What it keeps lives in memory: a restarted control plane starts from the replicas it
re-adopted and has a full window of samples again a minute later.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from stratus.endpoints import schemas as s
from stratus.endpoints.autoscaling_policy import Policy, Sample, State, decide

SAMPLE_SECONDS = 0.5  # how often a variant is sampled (and decided on)

Key = tuple[str, str]  # (endpoint uid, variant name)


@dataclass(frozen=True)
class Step:
    """A change of a variant's desired replicas, and why."""

    from_replicas: int
    to_replicas: int
    reason: str


@dataclass
class _Variant:
    arrived_total: int  # the gateway's count when last sampled
    state: State
    samples: deque[Sample] = field(default_factory=deque)
    sampled_at: float = float("-inf")
    desired: int | None = None


def policy_of(spec: s.Autoscaling) -> Policy:
    panic = min(spec.panic_window_seconds, spec.stable_window_seconds)
    return Policy(
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        target_concurrency=spec.target_concurrency,
        stable_window=spec.stable_window_seconds,
        panic_window=panic,
        burst_window=min(1.0, panic),
        scale_down_delay=spec.scale_down_delay_seconds,
        max_scale_up_rate=spec.max_scale_up_rate,
        scale_to_zero_after=spec.scale_to_zero_after_seconds,
    )


class Autoscaler:
    def __init__(self, sample_seconds: float = SAMPLE_SECONDS) -> None:
        self.sample_seconds = sample_seconds
        self._variants: dict[Key, _Variant] = {}

    def desired(self, key: Key) -> int | None:
        """The variant's desired replicas as last decided (None: not decided yet)."""
        variant = self._variants.get(key)
        return None if variant is None else variant.desired

    def decide(
        self,
        key: Key,
        spec: s.Autoscaling,
        in_flight: float,
        arrived_total: int,
        replicas: int,
        now: float,
    ) -> tuple[int, Step | None]:
        """The variant's desired replicas, and the step taken when that changed.

        Args:
            key: the variant.
            spec: its autoscaling settings.
            in_flight: requests to it at the gateway now (answered or waiting for a replica).
            arrived_total: requests that reached it since the gateway started counting.
            replicas: the replicas it has now (starting or ready).
            now: a monotonic clock, in seconds.
        """
        variant = self._variants.get(key)
        if variant is None:  # counted from now on; just deployed counts as just used
            variant = _Variant(arrived_total, State(last_request_at=now))
            self._variants[key] = variant
        knocked = replicas == 0 and arrived_total > variant.arrived_total  # decide at once
        recent = now - variant.sampled_at < self.sample_seconds
        if recent and variant.desired is not None and not knocked:
            return variant.desired, None
        policy = policy_of(spec)
        arrived = max(0, arrived_total - variant.arrived_total)
        variant.arrived_total = arrived_total
        variant.samples.append(Sample(now, in_flight, arrived))
        variant.sampled_at = now
        while variant.samples and variant.samples[0].at < now - policy.stable_window:
            variant.samples.popleft()
        decision = decide(policy, variant.samples, replicas, now, variant.state)
        variant.state = decision.state
        before = variant.desired if variant.desired is not None else replicas
        variant.desired = decision.desired
        if decision.desired == before:
            return decision.desired, None
        return decision.desired, Step(before, decision.desired, decision.reason)

    def keep_only(self, keys: set[Key]) -> None:
        """Forget the variants not in `keys` (deleted, or no longer autoscaled)."""
        for key in list(self._variants):
            if key not in keys:
                del self._variants[key]
