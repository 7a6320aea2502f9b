"""Test your models and pipelines against a throwaway Stratus platform.

`LocalPlatform` starts a real control plane in a subprocess (its own home, a free port on
127.0.0.1) and stops it by PID; with `tls=True` it serves https from a local CA in its home,
which its `client()` and `cli_env()` trust. With pytest, add
`pytest_plugins = ["stratus.testing"]` to your conftest.py and use the `stratus_platform`
fixture (one platform per test session).
Notification channels of such a platform may reach loopback (`LOOPBACK_NETWORKS`), where a
test's own webhook and mail receivers listen; pass `env` to change that. `WebhookReceiver`
is such a receiver: an HTTP server on 127.0.0.1 that keeps every request it is sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from stratus.client import Client
from stratus.client.credentials import read_credentials

# what a throwaway platform lets notification channels reach besides public addresses
LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalPlatform:
    """A Stratus control plane running in a subprocess, for tests."""

    def __init__(
        self,
        home: str | Path,
        *,
        port: int | None = None,
        db: str | None = None,
        store: str | None = None,
        s3_endpoint_url: str | None = None,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        tls: bool = False,
    ) -> None:
        self.home = Path(home)
        self.tls = tls
        self.port = port or free_port()
        self.db = db
        self.store = store
        self.s3_endpoint_url = s3_endpoint_url
        self.env = env or {}
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.home / "platform.log"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path | None:
        """With `tls`: the local CA that signs the platform's certificate (made at its start)."""
        return self.home / "tls" / "ca.pem" if self.tls else None

    @property
    def pid(self) -> int:
        assert self.process is not None, "the platform is not running"
        return self.process.pid

    @property
    def api_key(self) -> str:
        creds = read_credentials(self.home)
        if creds is None or creds.api_key is None:
            raise RuntimeError(f"no credentials in {self.home}")
        return creds.api_key

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "stratus", "up", "--home", str(self.home)]
        cmd += ["--port", str(self.port), "--log-level", "warning"]
        if self.db:
            cmd += ["--db", self.db]
        if self.store:
            cmd += ["--store", self.store]
        if self.s3_endpoint_url:
            cmd += ["--s3-endpoint-url", self.s3_endpoint_url]
        if self.tls:
            cmd += ["--tls"]
        return cmd + self.extra_args

    def start(self, timeout: float = 60.0) -> LocalPlatform:
        """Start the platform and wait until it is ready; a running one is left as it is
        (so `with LocalPlatform(home).start() as p:` starts one process, not two)."""
        if self.process is not None and self.process.poll() is None:
            return self
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
        # a throwaway platform warms the replica fork server at its first endpoint, not at start
        env["STRATUS_SERVING_PREWARM"] = "false"
        # a test's webhook and mail receivers listen on loopback: let notifications reach it
        env["STRATUS_MONITORING_ALLOWED_NOTIFICATION_NETWORKS"] = LOOPBACK_NETWORKS
        env.update(self.env)
        env["STRATUS_HOME"] = str(self.home)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"stratus up exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            made = self.ca_file is None or self.ca_file.is_file()  # https: once its CA is made
            try:
                if (
                    made
                    and httpx.get(f"{self.url}/readyz", timeout=2, verify=self.verify).is_success
                ):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the platform was not ready in {timeout}s:\n{self.log_tail()}")

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx should check the platform's certificate with: its CA with `tls` (once
        started), else the default trust store: `httpx.get(p.url, verify=p.verify)`."""
        if self.ca_file is None:
            return True
        return ssl.create_default_context(cafile=str(self.ca_file))

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def cli_env(self, api_key: str | None = None) -> dict[str, str]:
        """The STRATUS_* variables that point the `stratus` CLI at this platform."""
        env = {
            "STRATUS_HOME": str(self.home),
            "STRATUS_URL": self.url,
            "STRATUS_API_KEY": api_key or self.api_key,
        }
        if self.ca_file is not None:
            env["STRATUS_CA_FILE"] = str(self.ca_file)
        return env

    def client(self, api_key: str | None = None) -> Client:
        return Client(
            url=self.url, api_key=api_key or self.api_key, home=self.home, ca_file=self.ca_file
        )

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL: an abrupt crash, as a power cut would do."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2
) -> Any:
    """Call `check` until it returns something truthy, and return that; after `timeout`
    seconds, fail with an AssertionError naming `what` was waited for."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class PostgresMissing(RuntimeError):
    """PostgreSQL's server programs (initdb, pg_ctl) are not installed."""


def postgres_program(tool: str) -> str:
    """Where PostgreSQL's `tool` is: on the PATH, else Debian's newest under
    /usr/lib/postgresql; PostgresMissing when neither has it."""
    found = shutil.which(tool)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"), reverse=True):
        return str(candidate)
    raise PostgresMissing(f"PostgreSQL's {tool} is not installed (make system-deps)")


@contextlib.contextmanager
def throwaway_postgres(prefix: str = "stratus-pg-") -> Iterator[str]:
    """A throwaway PostgreSQL cluster listening on 127.0.0.1 only (no durability: fsync off);
    yields a SQLAlchemy URL. Stopped with pg_ctl, then by the postmaster's PID if it is still
    there, and its folder removed. As root, the cluster runs as the `postgres` user."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    as_root = os.geteuid() == 0
    runas = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(root, "postgres")
    port = free_port()
    data, log = root / "data", root / "log"
    pid: int | None = None
    try:
        subprocess.run(
            [*runas, postgres_program("initdb"), "-D", str(data), "-U", "postgres", "-A",
             "trust", "--no-sync", "-E", "UTF8", "--locale=C"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            [*runas, postgres_program("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t",
             "60", "-o", options, "start"],
            check=True, capture_output=True, timeout=90,
        )  # fmt: skip
        pid = int((data / "postmaster.pid").read_text().split()[0])
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if data.is_dir():
            subprocess.run(
                [*runas, postgres_program("pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                 "-t", "30", "stop"],
                capture_output=True, timeout=60,
            )  # fmt: skip
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class ReceivedRequest:
    """One request a `WebhookReceiver` was sent."""

    path: str
    headers: httpx.Headers  # names are case-insensitive
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class WebhookReceiver:
    """An HTTP server on 127.0.0.1, in a thread, that keeps every POST it is sent: point a
    notification channel or a webhook at `url`, then read `requests` or `wait_for` them.

    Each request is answered `status` with an empty body, or what `answer(path)` returns
    (a status and a body) when given. Use it as a context manager, or call `close`.
    """

    def __init__(
        self, status: int = 200, answer: Callable[[str], tuple[int, bytes]] | None = None
    ) -> None:
        self.status = status
        self.requests: list[ReceivedRequest] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = httpx.Headers(list(self.headers.items()))
                receiver.requests.append(ReceivedRequest(self.path, headers, body))
                code, page = answer(self.path) if answer else (receiver.status, b"")
                self.send_response(code)
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_port)
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )
        self._thread.start()

    def bodies(self, path: str | None = None) -> list[Any]:
        """The JSON bodies received so far, of every path or only of `path`."""
        return [r.json() for r in list(self.requests) if path is None or r.path == path]

    def wait_for(
        self, count: int = 1, path: str | None = None, timeout: float = 30.0
    ) -> list[ReceivedRequest]:
        """Wait until `count` requests (to `path`, if given) have arrived; return them."""
        deadline = time.monotonic() + timeout
        while True:
            seen = [r for r in list(self.requests) if path is None or r.path == path]
            if len(seen) >= count:
                return seen
            if time.monotonic() > deadline:
                where = f" to {path}" if path else ""
                raise TimeoutError(f"{len(seen)} of {count} requests{where} in {timeout:.0f} s")
            time.sleep(0.05)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


try:
    import pytest
except ImportError:  # pytest is only needed for the fixtures
    pass
else:

    @pytest.fixture(scope="session")
    def stratus_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
        """A platform on SQLite and a local store, shared by the test session."""
        with LocalPlatform(tmp_path_factory.mktemp("stratus-home")) as platform:
            yield platform
