"""What the gateway's in-process tests share: a replica connection that answers at once, and
an app behind the gateway that inference paths must never reach."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.types import Receive, Scope, Send

from stratus.serving.wire import Kind, ResponseFrame


@dataclass
class AnsweringConnection:
    """Stands in for a replica connection: answers every call at once."""

    closed: bool = False
    in_flight: int = 0
    calls: list[Kind] = field(default_factory=list)

    async def call(
        self, kind: Kind, content_type: str, body: bytes, timeout: float | None = None
    ) -> ResponseFrame:
        self.calls.append(kind)
        return ResponseFrame(1, 200, b'{"predictions":[1]}')


async def unreachable_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("inference paths never reach the wrapped app")
