"""Reading an HTTP request's body off ASGI, bounded: what the gateway and the standalone
replica both do before they parse a request."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import Receive

from stratus.core.errors import InvalidInput, PayloadTooLarge


async def read_body(
    receive: Receive, headers: Mapping[bytes, bytes], limit: int, setting: str
) -> bytes:
    """The whole body, refused (413, naming `setting`) as soon as it is known to be larger
    than `limit` bytes: by its Content-Length, or while it arrives."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit, setting)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidInput("the client went away before sending the whole request")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise too_large(limit, setting)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def too_large(limit: int, setting: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is larger than {limit} bytes ({setting}); send fewer rows per request"
    )
