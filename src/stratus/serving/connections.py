"""The gateway's side of the wire: one multiplexed connection to one replica, over a unix
socket or TCP (`stratus.compute.addresses`), opened with the replica's secret. Over TCP it is
mutual TLS when given the gateway's context (`replica_tls.py`): the replica's certificate must
name the replica expected before the secret is sent.

Many requests share the connection, told apart by request id; `in_flight` is what
least-busy routing reads. If the replica goes away, every pending call fails with
`ReplicaGone` at once, so the gateway can retry it on another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any

import orjson

from stratus.compute.addresses import parse_address
from stratus.serving.replica_tls import identities
from stratus.serving.wire import (
    HELLO_ID,
    Kind,
    ResponseFrame,
    WireError,
    encode_request,
    read_response,
)

MAX_REQUEST_ID = 0xFFFFFFFF


class ReplicaGone(ConnectionError):
    """The connection to a replica broke before it answered."""


class ReplicaUntrusted(ConnectionError):
    """The replica's certificate is not the one of the replica expected."""


class ReplicaConnection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        hello: dict[str, Any],
        certificate_ends: float | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.hello = hello
        self.certificate_ends = certificate_ends  # the replica's, over TLS (epoch seconds)
        self._pending: dict[int, asyncio.Future[ResponseFrame]] = {}
        self._next_id = 1
        self._pump = asyncio.create_task(self._read_forever())
        self.closed = False

    @classmethod
    async def open(
        cls,
        address: str,
        secret: str,
        timeout: float = 5.0,
        *,
        tls: ssl.SSLContext | None = None,
        identity: str = "",
    ) -> ReplicaConnection:
        """Connect, present the replica's secret and read its greeting (which proves it is
        loaded, serving, and the replica the secret was made for).

        Args:
            address: `unix:///path` or `tcp://host:port`.
            secret: what the replica was started with.
            timeout: seconds for connecting (with the TLS handshake) and for the greeting, each.
            tls: the gateway's context (`replica_tls.client_context`), for a TCP address (a
                unix socket takes none).
            identity: what the replica's certificate must name (`replica_tls.replica_identity`),
                with `tls`.

        Raises:
            ReplicaGone: the replica closed the connection without greeting (a wrong secret,
                or it refused the gateway's certificate), or during the TLS handshake.
            ReplicaUntrusted: its certificate names another replica.
            OSError, TimeoutError: it cannot be reached, or its certificate is not the CA's
                (`ssl.SSLCertVerificationError`).
        """
        where = parse_address(address)
        secure = tls is not None and where.scheme == "tcp"
        if secure and not identity:
            raise ValueError("a TLS connection to a replica needs the identity it expects")
        if where.scheme == "unix":
            opening = asyncio.open_unix_connection(str(where.path))
        elif secure:
            opening = asyncio.open_connection(
                where.host, where.port, ssl=tls, ssl_handshake_timeout=timeout
            )
        else:
            opening = asyncio.open_connection(where.host, where.port)
        try:
            reader, writer = await asyncio.wait_for(opening, timeout)
        except ConnectionResetError as exc:  # (not refused: it took the TCP connection)
            if not secure:
                raise
            raise ReplicaGone(
                f"the replica at {address} hung up in the TLS handshake (one without TLS?)"
            ) from exc
        ends = None
        try:
            if secure:  # verified by the CA; now: is it the replica we mean?
                peer = writer.get_extra_info("peercert")
                if identity not in identities(peer):
                    raise ReplicaUntrusted(
                        f"the replica at {address} is not {identity}: its certificate names "
                        f"{', '.join(identities(peer)) or 'nothing'}"
                    )
                ends = ssl.cert_time_to_seconds(peer["notAfter"])
            if where.scheme == "tcp":
                sock = writer.get_extra_info("socket")
                if sock is not None:  # small frames go out at once, not after 40 ms
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            writer.write(encode_request(HELLO_ID, Kind.AUTH, "", secret.encode()))
            frame = await asyncio.wait_for(read_response(reader), timeout)
        except BaseException:
            writer.close()
            raise
        if frame is None or frame.request_id != HELLO_ID or frame.status != 200:
            writer.close()
            why = "a wrong secret, or our certificate?" if secure else "a wrong secret?"
            raise ReplicaGone(f"the replica at {address} did not greet ({why})")
        return cls(reader, writer, orjson.loads(frame.body), ends)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def call(
        self, kind: Kind, content_type: str, body: bytes, timeout: float | None = None
    ) -> ResponseFrame:
        if self.closed:
            raise ReplicaGone("the connection to the replica is closed")
        request_id = self._take_id()
        future: asyncio.Future[ResponseFrame] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self.writer.write(encode_request(request_id, kind, content_type, body))
            return await asyncio.wait_for(future, timeout) if timeout else await future
        finally:
            self._pending.pop(request_id, None)

    def _take_id(self) -> int:
        request_id = self._next_id
        self._next_id = 1 if request_id >= MAX_REQUEST_ID else request_id + 1
        return request_id

    async def _read_forever(self) -> None:
        error: BaseException = ReplicaGone("the replica closed the connection")
        try:
            while (frame := await read_response(self.reader)) is not None:
                future = self._pending.get(frame.request_id)
                if future is not None and not future.done():
                    future.set_result(frame)
        except (OSError, asyncio.IncompleteReadError, ValueError, WireError) as exc:
            error = ReplicaGone(f"the connection to the replica broke: {exc}")
        except asyncio.CancelledError:
            error = ReplicaGone("the connection to the replica was closed")
            raise
        finally:
            self.closed = True
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)

    async def close(self) -> None:
        self.closed = True
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, ReplicaGone):
            await self._pump
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
