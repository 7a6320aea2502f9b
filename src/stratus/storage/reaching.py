"""Reaching a remote object store in bounded time, and saying so when it cannot be reached.

`StoreTimeouts` bounds every S3 request (connect, read, and how many tries); `unreachable`
turns the network's failures — refused connections, timeouts, dropped sockets, wherever in
botocore, aiohttp or fsspec they surface — into `StoreUnavailable` (503 with Retry-After), so
a store that is down reads as "try again shortly", never as an internal error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from stratus.core.errors import StoreUnavailable

T = TypeVar("T")


@dataclass(frozen=True)
class StoreTimeouts:
    connect_seconds: float = 5.0
    read_seconds: float = 20.0
    attempts: int = 2  # of one request, counting the first

    @property
    def bound_seconds(self) -> float:
        """About the longest a request can take before it is given up."""
        return self.attempts * (self.connect_seconds + self.read_seconds) + self.attempts

    def s3_options(self) -> dict[str, Any]:
        """s3fs options: botocore tries once per s3fs attempt, with these timeouts (s3fs's
        attempts are its `retries` attribute: see `apply`)."""
        return {
            "config_kwargs": {
                "connect_timeout": self.connect_seconds,
                "read_timeout": self.read_seconds,
                "retries": {"total_max_attempts": 1},
            }
        }

    def apply(self, fs: Any) -> None:
        fs.retries = self.attempts


@cache
def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError, asyncio.TimeoutError]
    try:
        from fsspec.exceptions import FSTimeoutError

        errors.append(FSTimeoutError)
    except ImportError:  # pragma: no cover - fsspec is a dependency
        pass
    try:  # only with the S3 extra
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError

        errors += [BotoConnectionError, HTTPClientError]
    except ImportError:
        pass
    try:
        from aiohttp import ClientError

        errors.append(ClientError)
    except ImportError:
        pass
    return tuple(errors)


@contextmanager
def unreachable(store: str) -> Iterator[None]:
    """Raise `StoreUnavailable` for a network failure reaching `store` inside the block."""
    try:
        yield
    except _network_errors() as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise StoreUnavailable(
            f"the object store {store} cannot be reached ({reason}); try again shortly"
        ) from exc


def reaching(chunks: Iterator[T], store: str) -> Generator[T, None, None]:
    """`chunks`, with network failures while reading them reported as `StoreUnavailable`."""
    with unreachable(store):
        yield from chunks
