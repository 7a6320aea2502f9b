"""Rate limits by scope, and login lockouts, on a simulated clock."""

from __future__ import annotations

import pytest

from stratus.core.errors import RateLimited
from stratus.core.token_buckets import Limit
from stratus.iam.principals import Principal
from stratus.iam.throttling import LoginLimits, Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _user(name: str, key: str | None = None, limit: Limit | None = None) -> Principal:
    return Principal(kind="user", uid=name, name=name, key_id=key, rate_limit=limit)


def test_a_key_is_held_to_its_own_limit(clock: Clock) -> None:
    refused: list[tuple[str, str, str]] = []
    throttle = Throttle(clock=clock, on_limited=lambda *a: refused.append(a))
    alice = _user("alice", key="k1", limit=Limit(2.0, 2))
    throttle.caller(alice, "fraud", "api")
    throttle.caller(alice, "fraud", "api")
    with pytest.raises(RateLimited, match="API key k1 is over its limit of 2 requests/s") as info:
        throttle.caller(alice, "fraud", "api")
    assert info.value.status == 429
    assert info.value.headers() == {"retry-after": "1"}
    assert refused == [("key", "fraud", "api")]
    clock.now += 0.5
    throttle.caller(alice, "fraud", "api")  # a token came back


def test_without_limits_nothing_is_refused(clock: Clock) -> None:
    throttle = Throttle(clock=clock)
    for _ in range(10_000):
        throttle.caller(_user("bob", key="k2"), "fraud")


def test_a_project_limit_gives_each_caller_a_bucket(clock: Clock) -> None:
    throttle = Throttle(clock=clock)
    throttle.set_project_limits({"fraud": Limit(1.0, 1)})
    alice, bob = _user("alice", key="ka"), _user("bob", key="kb")
    throttle.caller(alice, "fraud")
    throttle.caller(bob, "fraud")  # bob has his own bucket
    with pytest.raises(RateLimited, match="project 'fraud' allows each caller"):
        throttle.caller(alice, "fraud")
    throttle.caller(alice, "other")  # no limit there
    throttle.caller(alice, None)  # a request into no project


def test_an_endpoint_limit_counts_every_caller(clock: Clock) -> None:
    throttle = Throttle(clock=clock)
    limit = Limit(10.0, 3)
    for _ in range(3):
        throttle.endpoint("fraud", "api", limit)
    with pytest.raises(RateLimited, match="endpoint 'api' is over its limit") as info:
        throttle.endpoint("fraud", "api", limit)
    assert info.value.retry_after == 1
    throttle.endpoint("fraud", "other-api", limit)


def test_failed_logins_lock_the_user_out_and_say_so_once(clock: Clock) -> None:
    locked: list[tuple[str, str, str, int]] = []
    throttle = Throttle(
        clock=clock,
        login=LoginLimits(failures_per_user=3, failures_per_address=100, window_seconds=60),
        on_lockout=lambda *a: locked.append(a),
    )
    for _ in range(3):
        throttle.before_login("alice", "10.0.0.1")
        throttle.login_failed("alice", "10.0.0.1")
    assert locked == [("user", "alice", "10.0.0.1", 3)]
    with pytest.raises(RateLimited, match="too many failed logins from this user") as info:
        throttle.before_login("alice", "10.0.0.2")  # another address: still locked
    assert 1 <= info.value.retry_after <= 20
    throttle.before_login("bob", "10.0.0.1")  # another user from the same address may try
    clock.now += 20  # the window's share of one failure
    throttle.before_login("alice", "10.0.0.1")
    throttle.login_succeeded("alice")  # a success clears her failures
    for _ in range(2):
        throttle.login_failed("alice", "10.0.0.1")
    throttle.before_login("alice", "10.0.0.1")
    assert len(locked) == 1


def test_one_address_failing_for_many_users_is_locked_out(clock: Clock) -> None:
    locked: list[tuple[str, str, str, int]] = []
    throttle = Throttle(
        clock=clock,
        login=LoginLimits(failures_per_user=100, failures_per_address=5, window_seconds=60),
        on_lockout=lambda *a: locked.append(a),
    )
    for i in range(5):
        throttle.before_login(f"user{i}", "10.9.9.9")
        throttle.login_failed(f"user{i}", "10.9.9.9")
    with pytest.raises(RateLimited, match="from this address"):
        throttle.before_login("someone-else", "10.9.9.9")
    throttle.before_login("someone-else", "10.9.9.8")
    assert locked == [("address", "10.9.9.9", "10.9.9.9", 5)]
