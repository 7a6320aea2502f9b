"""Frames between the gateway and a replica: one connection (a unix socket, or TCP to another
machine), many requests.

A request frame is a fixed header (request id, body length, kind, content-type length), the
content type and the body as the client sent it; a response frame is (request id, HTTP
status, body length) and the body. Request ids let one connection carry many requests at once.

On connect the client first sends an AUTH frame (request id 0) whose body is the replica's
secret; the replica answers it with a HELLO response (request id 0) describing itself, or
closes the connection without a word when the secret is wrong or does not come in time.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from enum import IntEnum

REQUEST = struct.Struct("!IIBH")  # request id, body length, kind, content-type length
RESPONSE = struct.Struct("!IHI")  # request id, HTTP status, body length
HELLO_ID = 0
MAX_BODY = 256 << 20
MAX_SECRET = 1024  # bytes of an AUTH frame's body


class Kind(IntEnum):
    V2_INFER = 0
    MLFLOW_INVOCATIONS = 1
    PLAIN_PREDICT = 2
    METADATA = 3
    STATS = 4
    AUTH = 5


class WireError(Exception):
    """The other side broke the frame format: the connection cannot go on."""


@dataclass(frozen=True)
class RequestFrame:
    request_id: int
    kind: Kind
    content_type: str
    body: bytes


@dataclass(frozen=True)
class ResponseFrame:
    request_id: int
    status: int
    body: bytes


def encode_request(request_id: int, kind: Kind, content_type: str, body: bytes) -> bytes:
    ctype = content_type.encode("latin-1")[:1024]
    return REQUEST.pack(request_id, len(body), int(kind), len(ctype)) + ctype + body


def encode_response(request_id: int, status: int, body: bytes) -> bytes:
    return RESPONSE.pack(request_id, status, len(body)) + body


async def read_request(reader: asyncio.StreamReader) -> RequestFrame | None:
    """The next request, or None when the other side closed the connection cleanly."""
    try:
        head = await reader.readexactly(REQUEST.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise WireError("the connection closed inside a frame header") from None
        return None
    request_id, length, kind, ctype_length = REQUEST.unpack(head)
    if length > MAX_BODY:
        raise WireError(f"a frame of {length} bytes is over the {MAX_BODY}-byte limit")
    try:
        kind_value = Kind(kind)
    except ValueError:
        raise WireError(f"unknown frame kind {kind}") from None
    try:
        ctype = await reader.readexactly(ctype_length)
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise WireError("the connection closed inside a frame") from None
    return RequestFrame(request_id, kind_value, ctype.decode("latin-1"), body)


async def read_response(reader: asyncio.StreamReader) -> ResponseFrame | None:
    try:
        head = await reader.readexactly(RESPONSE.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise WireError("the connection closed inside a frame header") from None
        return None
    request_id, status, length = RESPONSE.unpack(head)
    if length > MAX_BODY:
        raise WireError(f"a frame of {length} bytes is over the {MAX_BODY}-byte limit")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise WireError("the connection closed inside a frame") from None
    return ResponseFrame(request_id, status, body)
