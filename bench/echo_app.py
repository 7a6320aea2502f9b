"""The HTTP limit for bench/serving.py (config `echo-w2`): a raw ASGI app that reads each
request and answers every POST with the same small JSON body, without a model, so that
uvicorn --workers 2 on the same cores shows what HTTP alone costs on this machine.

Run:  uvicorn --app-dir bench echo_app:app --host 127.0.0.1 --port 8105 --workers 2 \
          --log-level warning --no-access-log
Request:  POST (any path, any body)  ->  200 {"predictions": [0]};  other methods -> 405
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b'{"predictions": [0]}'
JSON = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
NOT_ALLOWED = [(b"content-length", b"0"), (b"allow", b"POST")]


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        for _ in range(2):  # the server sends startup, then shutdown
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
        return
    if scope["type"] != "http":
        return
    more = True
    while more:  # the body is read (and dropped), as a handler that parses it would read it
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = bool(message.get("more_body", False))
    if scope["method"] == "POST":
        await send({"type": "http.response.start", "status": 200, "headers": JSON})
        await send({"type": "http.response.body", "body": BODY})
    else:
        await send({"type": "http.response.start", "status": 405, "headers": NOT_ALLOWED})
        await send({"type": "http.response.body", "body": b""})
