"""The gateway's connection to a replica when the replica dies half-way through an answer: the
pending call fails with ReplicaGone (which the gateway retries on another replica), never with
another exception (which the gateway would answer with a 500)."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import orjson
import pytest

from stratus.serving.connections import ReplicaConnection, ReplicaGone
from stratus.serving.wire import HELLO_ID, RESPONSE, Kind, encode_response, read_request


async def _dying_replica(cut: bytes, path: Path) -> asyncio.AbstractServer:
    """Greets, then answers the first request with `cut` (part of a frame) and hangs up."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = await read_request(reader)
        assert hello is not None and hello.request_id == HELLO_ID
        writer.write(encode_response(HELLO_ID, 200, orjson.dumps({"replica": "r-1"})))
        request = await read_request(reader)
        assert request is not None
        writer.write(cut)
        await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(serve, path=str(path))


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(RESPONSE.pack(1, 200, 100)[:5], id="inside-the-header"),
        pytest.param(RESPONSE.pack(1, 200, 100) + b"x" * 10, id="inside-the-body"),
        pytest.param(b"", id="between-frames"),
    ],
)
def test_a_replica_that_dies_inside_an_answer_fails_the_call_with_replica_gone(
    cut: bytes, tmp_path: Path
) -> None:
    unhandled: list[dict[str, Any]] = []

    async def run() -> str:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: unhandled.append(ctx))
        server = await _dying_replica(cut, tmp_path / "r.sock")
        try:
            connection = await ReplicaConnection.open(f"unix://{tmp_path / 'r.sock'}", "s")
            with pytest.raises(ReplicaGone) as caught:
                await connection.call(Kind.PLAIN_PREDICT, "application/json", b"{}", timeout=10)
            assert connection.closed
            with pytest.raises(ReplicaGone):  # and later calls at once
                await connection.call(Kind.PLAIN_PREDICT, "application/json", b"{}", timeout=10)
            await connection.close()
            return str(caught.value)
        finally:
            server.close()
            await server.wait_closed()

    message = asyncio.run(run())
    gc.collect()  # a task that died with an exception nobody read reports it when collected
    if cut:
        assert "inside a frame" in message, message
    assert unhandled == [], unhandled
