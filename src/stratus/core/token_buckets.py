"""Token buckets: a rate (tokens per second) and a burst (the bucket's size).

A bucket fills at `rate` up to `burst`; each request takes one token, and a request that finds
none is refused with how long until the next token. `Buckets` keeps one bucket per key (an API
key, an endpoint, a user's failed logins) behind one lock, so the gateway's event loop and
the API's worker threads share them; the time is always passed in, so policies are tested on
a simulated clock. Idle full buckets are forgotten when the table grows, so a stream of
distinct keys cannot grow memory without bound.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    """`rate` requests per second on average, up to `burst` at once."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"a rate limit must be above 0 per second, not {self.rate}")
        if self.burst < 1:
            raise ValueError(f"a burst must be at least 1, not {self.burst}")

    @classmethod
    def of(cls, rate: float | None, burst: int | None) -> Limit | None:
        """A limit from stored columns: None when no rate is set; the burst defaults to one
        second's worth of requests (at least 1)."""
        if rate is None:
            return None
        return cls(rate, burst if burst is not None else max(1, round(rate)))


class TokenBucket:
    __slots__ = ("limit", "tokens", "updated")

    def __init__(self, limit: Limit, now: float) -> None:
        self.limit = limit
        self.tokens = float(limit.burst)
        self.updated = now

    def take(self, now: float, tokens: float = 1.0) -> float:
        """Take `tokens`: 0.0 when they were there, else the seconds until they will be (and
        nothing is taken)."""
        limit = self.limit
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(float(limit.burst), self.tokens + elapsed * limit.rate)
            self.updated = now
        if self.tokens >= tokens:
            self.tokens -= tokens
            return 0.0
        return (tokens - self.tokens) / limit.rate

    def full_at(self) -> float:
        """When this bucket is full again, if nothing takes from it."""
        return self.updated + (self.limit.burst - self.tokens) / self.limit.rate


class Buckets:
    """One bucket per key. A key whose limit changes starts a new, full bucket."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._buckets: dict[Hashable, TokenBucket] = {}
        self._lock = threading.Lock()

    def take(self, key: Hashable, limit: Limit, now: float) -> float:
        """0.0 if `key` may go on now, else the seconds until it may (see `TokenBucket`)."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or (bucket.limit is not limit and bucket.limit != limit):
                if len(self._buckets) >= self.max_keys:
                    self._forget_full(now)
                bucket = self._buckets[key] = TokenBucket(limit, now)
            return bucket.take(now)

    def wait(self, key: Hashable, limit: Limit, now: float) -> float:
        """Seconds until `key`'s bucket has a token (0.0 if it has one now), taking nothing."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or bucket.limit != limit:
                return 0.0
            bucket.take(now, 0.0)  # fills it up to now
            return max(0.0, (1.0 - bucket.tokens) / limit.rate)

    def drop(self, key: Hashable) -> None:
        with self._lock:
            self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget_full(self, now: float) -> None:
        """Forget buckets that are full by now (forgetting one changes nothing: a new bucket
        starts full); if none is, the oldest half, so the table stays bounded."""
        full = [key for key, bucket in self._buckets.items() if bucket.full_at() <= now]
        if not full:
            by_age = sorted(self._buckets.items(), key=lambda item: item[1].updated)
            full = [key for key, _ in by_age[: len(by_age) // 2 or 1]]
        for key in full:
            del self._buckets[key]
