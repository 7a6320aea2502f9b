"""The replica process: load one model version, then answer frames from the gateway.

`python -m stratus.serving.replica --spec spec.json`. The spec (written by the compute backend)
says which files, which flavor, where to listen (a unix socket or a TCP address) and the secret
a connection must present first; on TCP, the certificate it serves mutual TLS with
(`replica_tls.py`). A unix socket appears only once the model is loaded, so a socket path that
exists is a ready replica. Each frame is parsed by its protocol, validated against the
signature, predicted through the adaptive batcher and rendered back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field, model_validator

from stratus.compute.addresses import parse_address, tcp_address
from stratus.core import heap
from stratus.core.errors import InvalidInput, StratusError
from stratus.registry.batches import Batch
from stratus.registry.flavors import get_flavor
from stratus.registry.flavors.base import (
    GivesProbabilities,
    LoadedModel,
    model_outputs,
    probabilities_of,
)
from stratus.registry.signatures import Signature
from stratus.serving import protocols
from stratus.serving.batching import Runner, runner_for
from stratus.serving.passthrough import carried_by
from stratus.serving.replica_tls import GATEWAY_IDENTITY, ReplicaTls, identities, server_context
from stratus.serving.wire import (
    HELLO_ID,
    MAX_SECRET,
    REQUEST,
    Kind,
    WireError,
    encode_response,
    read_request,
)
from stratus.storage.grants import ArtifactGrant, fetch

log = logging.getLogger("stratus.replica")

AUTH_TIMEOUT = 5.0  # seconds a new connection has to present the secret

PROTOCOL_OF: dict[Kind, Literal["v2", "mlflow", "plain"]] = {
    Kind.V2_INFER: "v2",
    Kind.MLFLOW_INVOCATIONS: "mlflow",
    Kind.PLAIN_PREDICT: "plain",
}


class ReplicaSpec(BaseModel):
    """What a replica serves and how; written to a file by the compute backend.

    The model is either a folder on this machine (`model_dir`), or an `artifact` grant the
    replica fetches from the object store itself into its node's cache (`cache_dir`, which the
    backend sets), with no database and no copy by the control plane.
    """

    model_dir: Path | None = None
    artifact: ArtifactGrant | None = None
    cache_dir: Path | None = Field(
        None, description="where this node keeps fetched artifacts (set by the backend)"
    )
    flavor: str
    trusted: bool = False
    signature: dict[str, Any] | None = None
    model_name: str
    model_version: int
    endpoint: str = ""
    variant: str = "main"
    address: str = Field(
        "", description="where to listen: unix:///path or tcp://host:port (port 0: any free one)"
    )
    secret: str = Field(
        min_length=16, repr=False, description="what a connection must present before anything"
    )
    tls: ReplicaTls | None = Field(
        None,
        repr=False,
        description="on a TCP address: serve mutual TLS with this certificate (None: plain TCP)",
    )
    max_batch_size: int = Field(64, ge=1, le=100_000)
    max_wait_ms: float = Field(0.0, ge=0, le=1000)
    max_rows: int = Field(10_000, ge=1)
    environment: dict[str, str] = Field(
        default_factory=dict,
        repr=False,
        description="the endpoint's secrets, as environment variables set before the model loads",
    )
    passthrough: list[str] = Field(
        default_factory=list, description="columns a request may carry that the model never sees"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ReplicaSpec:
        if (self.model_dir is None) == (self.artifact is None):
            raise ValueError("a replica spec needs a model_dir or an artifact, not both")
        return self

    def model_folder(self) -> Path:
        """The model's files on this machine: fetched (or found in the node's cache) first when
        the spec holds a grant.

        Raises:
            StratusError: the grant expired, or a file could not be fetched or verified.
        """
        if self.artifact is None:
            assert self.model_dir is not None
            return self.model_dir
        cache = self.cache_dir or Path(tempfile.gettempdir()) / "stratus-artifacts"
        return fetch(self.artifact, cache)


class ReplicaStats:
    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.batches = 0
        self.rows = 0
        self.batch_sizes: Counter[int] = Counter()
        self.busy_seconds = 0.0  # spent running the model: what per-request billing meters
        self.started = time.time()

    def on_batch(self, rows: int, seconds: float) -> None:
        self.batches += 1
        self.rows += rows
        self.busy_seconds += seconds
        self.batch_sizes[rows] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "batches": self.batches,
            "rows": self.rows,
            "busy_seconds": self.busy_seconds,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "uptime_seconds": time.time() - self.started,
            "pid": os.getpid(),
        }


class Replica:
    def __init__(self, spec: ReplicaSpec, model: LoadedModel) -> None:
        self.spec = spec
        self.model = model
        self.signature = Signature.model_validate(spec.signature) if spec.signature else None
        self.passthrough = carried_by(spec.passthrough, self.signature)
        self.stats = ReplicaStats()
        # the name callers use, and v2 answers give back: the endpoint's ("project/name")
        self.served_name = spec.endpoint.rpartition("/")[2] or spec.model_name
        self.runner = runner_for(
            model,
            max_batch_size=spec.max_batch_size,
            max_wait_ms=spec.max_wait_ms,
            on_batch=self.stats.on_batch,
            on_loop=True,
        )
        self._proba: tuple[Runner, Sequence[Any]] | None = None  # predict_proba's batcher
        # what v2 metadata lists: a signature without outputs gets those the model itself
        # names (a classifier's label, answered as "predict", and its probabilities)
        self.described = self.signature
        if self.signature is not None and not self.signature.outputs:
            outputs = model_outputs(model)
            if outputs:
                outputs[0] = outputs[0].model_copy(update={"name": protocols.DEFAULT_OUTPUT})
                self.described = self.signature.model_copy(update={"outputs": outputs})
        self.hello = orjson.dumps(
            {
                "model": spec.model_name,
                "version": spec.model_version,
                "endpoint": spec.endpoint,
                "variant": spec.variant,
                "flavor": spec.flavor,
                "pid": os.getpid(),
                "supports_batching": model.supports_batching,
            }
        )

    async def _authenticated(self, reader: asyncio.StreamReader) -> bool:
        """Whether the connection's first frame is an AUTH frame with this replica's secret
        (read as raw bytes, and never more than a secret's worth, before trusting anything)."""
        try:
            head = await asyncio.wait_for(reader.readexactly(REQUEST.size), AUTH_TIMEOUT)
            request_id, length, kind, ctype_length = REQUEST.unpack(head)
            if kind != Kind.AUTH or request_id != HELLO_ID or length + ctype_length > MAX_SECRET:
                return False
            rest = await asyncio.wait_for(reader.readexactly(ctype_length + length), AUTH_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return False
        return hmac.compare_digest(rest[ctype_length:], self.spec.secret.encode())

    async def handle_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A TLS connection, its handshake done (a client without a certificate of the
        replica CA never gets here): serve it if the certificate is the gateway's."""
        if GATEWAY_IDENTITY not in identities(writer.get_extra_info("peercert")):
            log.warning(
                "refused a connection from %s: its certificate is not the gateway's",
                writer.get_extra_info("peername"),
            )
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        await self.handle(reader, writer)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await self._authenticated(reader):
            peer = writer.get_extra_info("peername") or "a local peer"
            log.warning("refused a connection from %s: no valid secret", peer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        writer.write(encode_response(HELLO_ID, 200, self.hello))
        tasks: set[asyncio.Task[None]] = set()
        try:
            while (frame := await read_request(reader)) is not None:
                answer = self._answer(
                    frame.request_id, frame.kind, frame.content_type, frame.body, writer
                )
                task = asyncio.create_task(answer)
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except WireError as exc:
            log.warning("dropping a gateway connection: %s", exc)
        except ConnectionError:  # a readiness probe hangs up after the greeting; so may a peer
            pass
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self,
        request_id: int,
        kind: Kind,
        content_type: str,
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> None:
        status, payload = await self.answer(kind, content_type, body, request_id)
        if not writer.is_closing():
            writer.write(encode_response(request_id, status, payload))

    async def answer(
        self, kind: Kind, content_type: str, body: bytes, request_id: int = 0
    ) -> tuple[int, bytes]:
        if kind == Kind.STATS:
            return 200, orjson.dumps(self.stats.as_dict())
        if kind == Kind.METADATA:
            meta = protocols.v2_model_metadata(
                self.served_name, str(self.spec.model_version), self.described
            )
            return 200, orjson.dumps(meta)
        protocol = PROTOCOL_OF[kind]
        self.stats.requests += 1
        try:
            request = protocols.parse_request(
                protocol,
                body,
                content_type,
                self.signature,
                max_rows=self.spec.max_rows,
                passthrough=self.passthrough,
            )
            predictions: Any
            if request.method == "predict":
                predictions = await self.runner.submit(request.batch)
            else:
                predictions = await self._probabilities(request.batch)
            return 200, protocols.render(
                protocol,
                predictions,
                model_name=self.served_name,
                model_version=str(self.spec.model_version),
                request_id=str(request_id),
                signature=self.signature,
                request=request,
            )
        except StratusError as exc:
            self.stats.errors += 1
            trace = getattr(exc, "trace", "")
            if trace:  # the model's library or code failed: its traceback is for this log only
                log.warning("request %d: %s\n%s", request_id, exc.detail, trace.rstrip())
            return exc.status, _error_body(protocol, exc)
        except Exception as exc:  # a bug in Stratus, not in the request: say so, keep serving
            self.stats.errors += 1
            log.exception("replica failed on request %d", request_id)
            problem = StratusError(
                f"the replica failed on this request ({type(exc).__name__}); "
                "the details are in the replica's log"
            )
            return 500, _error_body(protocol, problem)

    async def _probabilities(self, batch: Batch) -> protocols.Probabilities:
        """A `predict_proba` request, through a batcher of its own (made on first use)."""
        if self._proba is None:
            found = probabilities_of(self.model)
            if isinstance(found, str):
                version = f"{self.spec.model_name}:{self.spec.model_version}"
                raise InvalidInput(
                    f"{version} gives no class probabilities: {found}; "
                    "ask for predictions without method predict_proba"
                )
            model, classes = found
            self._proba = (
                runner_for(
                    _ProbabilityModel(model, self.model.supports_batching),
                    max_batch_size=self.spec.max_batch_size,
                    max_wait_ms=self.spec.max_wait_ms,
                    on_batch=self.stats.on_batch,
                    on_loop=True,
                ),
                classes,
            )
        runner, classes = self._proba
        values = await runner.submit(batch)
        assert not isinstance(values, dict)
        return protocols.Probabilities(values, classes)

    async def close(self) -> None:
        await self.runner.close()
        if self._proba is not None:
            await self._proba[0].close()


def _error_body(protocol: str, error: StratusError) -> bytes:
    """v2 errors as that protocol writes them (`{"error": ...}`), others as problem+json."""
    return protocols.v2_error(error) if protocol == "v2" else orjson.dumps(error.to_problem())


class _ProbabilityModel:
    """A classifier's predict_proba, for a batcher (which calls `predict`)."""

    def __init__(self, model: GivesProbabilities, supports_batching: bool) -> None:
        self._predict_proba = model.predict_proba
        self.supports_batching = supports_batching

    def predict(self, batch: Batch) -> Any:
        values = self._predict_proba(batch)
        if values is None:
            raise InvalidInput("the model gave no class probabilities for this request")
        return values


def load(spec: ReplicaSpec) -> LoadedModel:
    signature = Signature.model_validate(spec.signature) if spec.signature else None
    return get_flavor(spec.flavor).load(
        spec.model_folder(), trusted=spec.trusted, signature=signature
    )


async def _listen(replica: Replica, address: str) -> tuple[asyncio.Server, str, Callable[[], None]]:
    """Start accepting on `address`; returns the server, the address it is reachable at (a TCP
    port 0 becomes the port taken) and what removes what it left behind."""
    where = parse_address(address)
    if where.scheme == "tcp":
        tls = replica.spec.tls
        if tls is None:
            server = await asyncio.start_server(replica.handle, where.host, where.port)
        else:  # a client without a certificate of the replica CA fails the handshake, unlogged
            server = await asyncio.start_server(
                replica.handle_tls,
                where.host,
                where.port,
                ssl=server_context(tls),
                ssl_handshake_timeout=AUTH_TIMEOUT,
            )
        for sock in server.sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        port = server.sockets[0].getsockname()[1]
        return server, tcp_address(where.host, port), lambda: None
    path = where.path
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    # bound and listening under another name first, then renamed: the socket's path appears
    # only once it accepts (a path that exists but refuses would look like a broken replica)
    listening = path.with_name(path.name + "~")
    with contextlib.suppress(FileNotFoundError):
        listening.unlink()
    server = await asyncio.start_unix_server(replica.handle, path=str(listening))
    os.replace(listening, path)

    def remove() -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    return server, address, remove


async def serve(
    spec: ReplicaSpec,
    model: LoadedModel,
    stop: asyncio.Event | None = None,
    *,
    on_listening: Callable[[str], None] | None = None,
    handle_signals: bool = True,
) -> None:
    """Serve until `stop` is set (or SIGTERM/SIGINT, when `handle_signals`); `on_listening` is
    told the address callers can dial once connections are accepted."""
    replica = Replica(spec, model)
    server, address, remove = await _listen(replica, spec.address)
    stop = stop or asyncio.Event()
    if handle_signals:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    log.info("replica of %s:%s ready on %s", spec.model_name, spec.model_version, address)
    if on_listening is not None:
        on_listening(address)
    try:
        await stop.wait()
    finally:
        server.close()  # stop accepting; requests in flight are answered before we exit
        await server.wait_closed()
        await replica.close()
        remove()


def main(argv: list[str] | None = None) -> int:
    heap.freeze(collect=False)  # what a fork server gave us: shared pages, never garbage
    parser = argparse.ArgumentParser(description="A Stratus model replica (started by Stratus).")
    parser.add_argument("--spec", type=Path, required=True, help="the replica spec (JSON)")
    parser.add_argument("--address", help="listen here instead of the spec's address")
    parser.add_argument("--cache-dir", type=Path, help="the node's artifact cache, instead")
    parser.add_argument("--ready-file", type=Path, help="write the address taken here once ready")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    try:
        spec = ReplicaSpec.model_validate_json(args.spec.read_bytes())
        where = {"address": args.address, "cache_dir": args.cache_dir}
        spec = spec.model_copy(update={k: v for k, v in where.items() if v is not None})
        os.environ.update(spec.environment)  # for the model's own code (a custom `load`)
        model = load(spec)
    except StratusError as exc:
        print(f"replica: cannot start: {exc.detail}", file=sys.stderr, flush=True)
        return 3
    heap.freeze()  # the model, out of the collector's sight (core/heap.py)
    ready_file = args.ready_file

    def listening(address: str) -> None:
        tmp = ready_file.with_name(f".{ready_file.name}.tmp")
        tmp.write_text(address)
        os.replace(tmp, ready_file)

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass
    asyncio.run(serve(spec, model, on_listening=listening if ready_file else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
