"""Mutual TLS between the gateway and a replica on TCP, with real sockets on 127.0.0.1: the
replica serves only a client with the gateway's certificate from its CA (not a plain client, not
one without a certificate, not one of another CA, not another replica), and the gateway sends
nothing, not even the secret, to a replica whose certificate is of another CA or another replica.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from stratus.compute.addresses import parse_address
from stratus.endpoints.replica_authority import CERTIFICATE_LIFETIME, ReplicaAuthority
from stratus.registry.batches import Batch
from stratus.serving.connections import ReplicaConnection, ReplicaGone, ReplicaUntrusted
from stratus.serving.replica import ReplicaSpec, serve
from stratus.serving.replica_tls import (
    ReplicaTls,
    client_context,
    replica_identity,
    server_context,
)
from stratus.serving.wire import HELLO_ID, Kind, encode_request

SECRET = "s" * 32
REPLICA = "e1.main.1.abcd1234.a1b2c3"


class Constant:
    supports_batching = False

    def predict(self, batch: Batch) -> Any:
        return [7] * batch.n_rows


def spec(folder: Path, tls: ReplicaTls | None, address: str = "tcp://127.0.0.1:0") -> ReplicaSpec:
    return ReplicaSpec(
        model_dir=folder,
        flavor="python",
        model_name="m",
        model_version=1,
        address=address,
        secret=SECRET,
        tls=tls,
    )


@asynccontextmanager
async def replica(replica_spec: ReplicaSpec) -> AsyncIterator[str]:
    """The replica served in this loop; yields the address it listens on."""
    stop = asyncio.Event()
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(
        serve(replica_spec, Constant(), stop, on_listening=listening.set_result,
              handle_signals=False)
    )  # fmt: skip
    try:
        yield await asyncio.wait_for(listening, 10)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 10)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 60))


async def answer_to_raw(address: str, context: ssl.SSLContext | None) -> bytes:
    """What the replica sends back to a client that presents the right secret, over plain TCP
    or TLS with `context`: its greeting, or b"" when it hangs up (also during the handshake)."""
    where = parse_address(address)
    try:
        reader, writer = await asyncio.open_connection(where.host, where.port, ssl=context)
    except (ssl.SSLError, ConnectionError):
        return b""
    try:
        writer.write(encode_request(HELLO_ID, Kind.AUTH, "", SECRET.encode()))
        return await asyncio.wait_for(reader.read(65536), 10)  # its greeting, or EOF
    except (ssl.SSLError, ConnectionError):
        return b""  # TLS 1.3: the client's certificate is judged after its handshake ends
    finally:
        writer.close()


def gateway_pair(authority: ReplicaAuthority) -> tuple[str, str]:
    """The gateway's certificate and key (PEM), as its authority keeps them."""
    authority.client_context()  # made on first use
    return authority.files.gateway.read_text(), authority.files.gateway_key.read_text()


def context_with(ca: str, tls: ReplicaTls | None = None) -> ssl.SSLContext:
    if tls is not None:
        return client_context(ca, tls.cert, tls.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=ca)
    return context


def test_the_gateway_and_a_replica_speak_mutual_tls_13(tmp_path: Path) -> None:
    authority = ReplicaAuthority(tmp_path / "tls")
    tls = authority.issue(REPLICA)

    async def main() -> None:
        async with replica(spec(tmp_path, tls)) as address:
            connection = await ReplicaConnection.open(
                address, SECRET, tls=authority.client_context(), identity=replica_identity(REPLICA)
            )
            try:
                assert connection.hello["model"] == "m"
                sslobj = connection.writer.get_extra_info("ssl_object")
                assert sslobj is not None and sslobj.version() == "TLSv1.3"
                answer = await connection.call(
                    Kind.PLAIN_PREDICT, "application/json", b'{"instances": [[1.0]]}', 10
                )
                assert answer.status == 200 and orjson.loads(answer.body)["predictions"] == [7]
                ends = connection.certificate_ends
                assert ends is not None
                lifetime = ends - dt.datetime.now(dt.UTC).timestamp()
                assert abs(lifetime - CERTIFICATE_LIFETIME.total_seconds()) < 600
            finally:
                await connection.close()

    run(main)


def test_a_replica_refuses_a_client_without_the_gateways_certificate(tmp_path: Path) -> None:
    authority = ReplicaAuthority(tmp_path / "tls")
    tls = authority.issue(REPLICA)
    other = ReplicaAuthority(tmp_path / "other-tls")  # another platform's CA and gateway
    foreign = client_context(tls.ca, *gateway_pair(other))
    a_replica = authority.issue("e1.main.1.abcd1234.ffffff")  # the same CA, a server's cert

    async def main() -> None:
        async with replica(spec(tmp_path, tls)) as address:
            # with everything right, the raw client is greeted: the cases below are refusals
            good = await answer_to_raw(address, authority.client_context())
            assert good and b'"model":"m"' in good
            # plain TCP, the right secret: the bytes are no TLS handshake, it hangs up
            assert await answer_to_raw(address, None) == b""
            # TLS without a client certificate
            assert await answer_to_raw(address, context_with(tls.ca)) == b""
            # a certificate of another CA
            assert await answer_to_raw(address, foreign) == b""
            # the certificate of another replica of the same CA: for servers only
            assert await answer_to_raw(address, context_with(tls.ca, a_replica)) == b""
            # and the gateway itself is still served
            connection = await ReplicaConnection.open(
                address, SECRET, tls=authority.client_context(), identity=replica_identity(REPLICA)
            )
            await connection.close()

    run(main)


class Listener:
    """A TLS server that pretends to be a replica: records what a client sends it."""

    def __init__(self, tls: ReplicaTls) -> None:
        self.tls = tls
        self.received = bytearray()
        self.connected = asyncio.Event()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connected.set()
        try:
            while chunk := await reader.read(65536):
                self.received += chunk
        except (ConnectionError, ssl.SSLError):
            pass
        writer.close()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=server_context(self.tls)
        )
        try:
            yield f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        finally:
            server.close()
            await server.wait_closed()


def test_the_gateway_sends_nothing_to_a_replica_that_is_not_the_one_it_dials(
    tmp_path: Path,
) -> None:
    authority = ReplicaAuthority(tmp_path / "tls")
    other = ReplicaAuthority(tmp_path / "other-tls")
    another_replica = Listener(authority.issue("e1.main.1.abcd1234.ffffff"))  # same CA
    other_ca = Listener(other.issue(REPLICA))  # the right id, another CA

    async def main() -> None:
        gateway = authority.client_context()
        async with another_replica.serving() as address:
            with pytest.raises(ReplicaUntrusted, match="e1.main.1.abcd1234.ffffff"):
                await ReplicaConnection.open(
                    address, SECRET, tls=gateway, identity=replica_identity(REPLICA)
                )
            await asyncio.wait_for(another_replica.connected.wait(), 10)
        assert bytes(another_replica.received) == b""  # the secret was never sent

        async with other_ca.serving() as address:
            with pytest.raises(ssl.SSLCertVerificationError):
                await ReplicaConnection.open(
                    address, SECRET, tls=gateway, identity=replica_identity(REPLICA)
                )
        assert bytes(other_ca.received) == b""

    run(main)


def test_a_replica_that_refuses_the_gateways_certificate_does_not_greet(tmp_path: Path) -> None:
    authority = ReplicaAuthority(tmp_path / "tls")
    old = ReplicaAuthority(tmp_path / "old-tls")  # a replica started under another CA
    tls = old.issue(REPLICA)
    trusting = client_context(tls.ca, *gateway_pair(authority))  # trusts it, but presents ours

    async def main() -> None:
        async with replica(spec(tmp_path, tls)) as address:
            with pytest.raises((ReplicaGone, ssl.SSLError, ConnectionError)):
                await ReplicaConnection.open(
                    address, SECRET, tls=trusting, identity=replica_identity(REPLICA)
                )

    run(main)


def test_a_replica_without_tls_is_one_that_refuses_the_gateway(tmp_path: Path) -> None:
    authority = ReplicaAuthority(tmp_path / "tls")  # (started by a version without TLS)

    async def main() -> None:
        async with replica(spec(tmp_path, None)) as address:
            with pytest.raises(ReplicaGone, match="TLS handshake"):
                await ReplicaConnection.open(
                    address,
                    SECRET,
                    tls=authority.client_context(),
                    identity=replica_identity(REPLICA),
                )

    run(main)


def test_a_unix_socket_replica_stays_plain(tmp_path: Path) -> None:
    authority = ReplicaAuthority(tmp_path / "tls")
    with tempfile.TemporaryDirectory(prefix="st-") as folder:  # unix socket paths are short
        address = f"unix://{folder}/r.sock"

        async def main() -> None:
            async with replica(spec(tmp_path, None, address)) as listening:
                connection = await ReplicaConnection.open(
                    listening, SECRET, tls=authority.client_context(), identity="ignored"
                )
                assert connection.writer.get_extra_info("ssl_object") is None
                assert connection.certificate_ends is None
                await connection.close()

        run(main)


def test_a_spec_never_shows_its_key() -> None:
    tls = ReplicaTls(cert="CERT", key="-----BEGIN PRIVATE KEY-----xyz", ca="CA")
    replica_spec = spec(Path("/nonexistent"), tls)
    assert "PRIVATE KEY" not in repr(replica_spec) and "PRIVATE KEY" not in repr(tls)
    # ...but hands it to the replica (the backends write the spec mode 0600)
    assert ReplicaSpec.model_validate_json(replica_spec.model_dump_json()).tls == tls
