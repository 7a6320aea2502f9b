"""An S3 store that refuses connections or stalls: reads answer 503 with Retry-After, and
/readyz says not ready, within the store's timeouts — never a 500, never a hang.

The platform reaches moto through a proxy the test controls: it forwards, stalls (accepts and
never answers) or refuses (stops listening)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.testing import LocalPlatform, free_port

pytestmark = pytest.mark.s3

TIMEOUTS = {
    "STRATUS_STORE_CONNECT_TIMEOUT_SECONDS": "1",
    "STRATUS_STORE_READ_TIMEOUT_SECONDS": "1",
    "STRATUS_STORE_ATTEMPTS": "1",
}
BOUND = 8.0  # seconds: the timeouts above, with room for a loaded machine


class Proxy:
    """A TCP proxy on 127.0.0.1 to `target`, in one of three modes."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.mode = "forward"
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._listen()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.append(client)
            if self.mode == "forward":
                upstream = socket.create_connection(self.target)
                with self._lock:
                    self._sockets.append(upstream)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()
            # "stall": the connection is held open and never read from or answered

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _drop_connections(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def stall(self) -> None:
        self.mode = "stall"
        self._drop_connections()

    def refuse(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._drop_connections()

    def forward(self) -> None:
        self.mode = "forward"
        self._drop_connections()
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self.refuse()


@pytest.fixture
def proxy(s3_server: Any) -> Iterator[Proxy]:
    host, port = s3_server.endpoint.removeprefix("http://").split(":")
    p = Proxy((host, int(port)))
    try:
        yield p
    finally:
        p.close()


def timed_get(http: httpx.Client, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = http.get(path)
    return response, time.monotonic() - started


def assert_store_unavailable(response: httpx.Response, took: float) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    assert response.json()["code"] == "store-unavailable"
    assert took < BOUND, f"the answer took {took:.1f} s"


def test_an_unreachable_store_is_a_503_with_retry_after(
    tmp_path: Path, s3_server: Any, proxy: Proxy
) -> None:
    bucket = f"stratus-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    p = LocalPlatform(
        tmp_path / "home",
        store=f"s3://{bucket}/stratus",
        s3_endpoint_url=proxy.endpoint,
        env={**s3_server.env, **TIMEOUTS},
    )
    with p, p.client() as c:
        c.buckets.create("b", project="default")
        c.buckets.upload("b", "k", b"kept in S3", project="default")
        path = "/api/v1/projects/default/buckets/b/objects/k"
        with httpx.Client(
            base_url=p.url, headers={"authorization": f"Bearer {p.api_key}"}, timeout=60
        ) as http:
            proxy.stall()  # accepts, never answers
            assert_store_unavailable(*timed_get(http, path))
            ready, took = timed_get(http, "/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["store"] != "ok"
            assert ready.json()["checks"]["database"] == "ok"
            assert took < BOUND, f"/readyz took {took:.1f} s"

            proxy.refuse()  # connection refused
            assert_store_unavailable(*timed_get(http, path))
            assert timed_get(http, "/readyz")[0].status_code == 503
            started = time.monotonic()
            put = http.put(path + "-new", content=b"not stored while S3 is down")
            assert_store_unavailable(put, time.monotonic() - started)

            proxy.forward()  # back: everything reads and writes again
            assert http.get(path).content == b"kept in S3"
            assert http.put(path + "-new", content=b"stored").status_code == 201
            assert http.get("/readyz").status_code == 200
        assert "unexpected error" not in p.log_tail(400)  # no 500 with a traceback
