"""Which proxies' X-Forwarded-For `stratus up` believes, through uvicorn's own app stack: none
unless named (uvicorn's default would believe any process on 127.0.0.1), and from a named
proxy the first address that is not a proxy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn

from stratus.cli.up import proxy_options


def _seen_client(trusted: list[str], peer: str, forwarded: str) -> str:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["client"] = scope["client"][0]

    config = uvicorn.Config(app, log_config=None, **proxy_options(trusted))
    config.load()
    scope = {
        "type": "http",
        "scheme": "http",
        "client": (peer, 40000),
        "headers": [(b"x-forwarded-for", forwarded.encode())],
    }

    async def run() -> None:
        await config.loaded_app(scope, None, None)

    asyncio.run(run())
    return str(seen["client"])


def test_no_proxy_is_believed_by_default() -> None:
    assert _seen_client([], "127.0.0.1", "10.9.9.9") == "127.0.0.1"


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("127.0.0.3", "10.9.9.9", "10.9.9.9"),  # the named proxy: its word is taken
        ("127.0.0.3", "10.9.9.9, 127.0.0.3", "10.9.9.9"),  # proxies in the chain are skipped
        ("127.0.0.1", "10.9.9.9", "127.0.0.1"),  # another peer: the header is ignored
    ],
)
def test_a_named_proxy_says_who_the_client_is(peer: str, forwarded: str, client: str) -> None:
    assert _seen_client(["127.0.0.3/32"], peer, forwarded) == client
