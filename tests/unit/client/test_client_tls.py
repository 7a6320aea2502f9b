"""A plain-http platform costs the SDK no trust store, and is trusted with nothing else; an https
one is checked against the CA the user names (`ca_file`, `STRATUS_CA_FILE`, the profile's, or
the system's), host name included, and a certificate that does not verify is one clear line
that says how to trust it. Servers here are real, on loopback, stopped by their fixtures."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from stratus.client import Client
from stratus.client.credentials import Credentials, load_profiles, write_credentials
from stratus.core.errors import InvalidInput, ServiceUnavailable


def test_plain_http_loads_no_trust_store_and_trusts_no_certificate() -> None:
    with Client(url="http://127.0.0.1:8700", api_key="stk_x") as client:
        pool = client._http._transport._pool  # type: ignore[attr-defined]
        context = pool._ssl_context
        assert isinstance(context, ssl.SSLContext)
        assert context.get_ca_certs() == []  # nothing loaded, so nothing trusted
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_https_verifies_against_the_system_trust_store() -> None:
    with Client(url="https://stratus.example:8700", api_key="stk_x") as client:
        context = client._http._transport._pool._ssl_context  # type: ignore[attr-defined]
        assert context.get_ca_certs()  # the default bundle
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


# --- trusting a platform's own CA ------------------------------------------------------------


class FakePlatform:
    """An https server on loopback answering `/readyz` and `whoami` as a platform would,
    with a certificate from a local CA made as `stratus up --tls` makes it; stopped by the
    test's fixture."""

    def __init__(self, home: Path, names: list[str] | None = None, *, tls: bool = True) -> None:
        from stratus.api.tls import ServerTls, ensure_local_certificates

        self.made = ensure_local_certificates(home / "tls", names or ["127.0.0.1", "localhost"])
        assert self.made.ca is not None
        self.ca: Path = self.made.ca
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                fake.requests.append(self.path)
                body = json.dumps(WHOAMI if "whoami" in self.path else {"status": "ready"})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls:
            context = ServerTls(self.made.cert, self.made.key).context
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_port
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


WHOAMI = {
    "subject": "user:admin",
    "kind": "user",
    "name": "admin",
    "is_admin": True,
    "key_id": "k1",
    "key_project": None,
    "roles": {},
}
ENV = ("STRATUS_URL", "STRATUS_API_KEY", "STRATUS_PROJECT", "STRATUS_PROFILE", "STRATUS_CA_FILE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STRATUS_HOME", str(tmp_path / "nowhere"))


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakePlatform]:
    platform = FakePlatform(tmp_path / "home")
    try:
        yield platform
    finally:
        platform.close()


def _context(client: Client) -> ssl.SSLContext:
    context = client._http._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert isinstance(context, ssl.SSLContext)
    return context


def test_a_ca_file_is_the_only_authority_trusted(fake: FakePlatform) -> None:
    with Client(url=fake.url, api_key="stk_x", ca_file=fake.ca) as client:
        context = _context(client)
        assert [c["subject"] for c in context.get_ca_certs()] == [
            ((("organizationName", "Stratus"),), (("commonName", CA_NAME),))
        ]
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert client.health() == {"status": "ready"}
        assert client.ca_file == str(fake.ca)


CA_NAME = f"Stratus local CA ({socket.gethostname()})"


def test_the_ca_comes_from_the_environment_then_the_profile_of_that_url(
    fake: FakePlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "client-home"
    write_credentials(Credentials(url=fake.url, api_key="stk_x", ca_file=str(fake.ca)), home)
    with Client(home=home) as client:  # the profile's own platform: its CA
        assert client.ca_file == str(fake.ca)
        assert client.health()["status"] == "ready"
    with Client(url="https://127.0.0.1:9", home=home) as client:  # another platform: not
        assert client.ca_file is None
    other = tmp_path / "other.pem"
    other.write_bytes(fake.ca.read_bytes())
    monkeypatch.setenv("STRATUS_CA_FILE", str(other))
    with Client(home=home) as client:
        assert client.ca_file == str(other)
    with Client(home=home, ca_file=fake.ca) as client:  # the argument wins
        assert client.ca_file == str(fake.ca)


def test_a_ca_file_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(InvalidInput) as caught:
        Client(url="https://127.0.0.1:9", api_key="stk_x", ca_file=missing)
    assert caught.value.detail == (
        f"cannot trust the CA file {missing} for https://127.0.0.1:9 (No such file or "
        "directory): give the PEM file of the CA that signed the platform's certificate "
        "(--ca-file, STRATUS_CA_FILE)"
    )
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(InvalidInput, match="cannot trust the CA file"):
        Client(url="https://127.0.0.1:9", api_key="stk_x", ca_file=junk)
    # plain http reads no CA at all
    Client(url="http://127.0.0.1:9", api_key="stk_x", ca_file=missing).close()


def _unavailable(client: Client) -> str:
    with client, pytest.raises(ServiceUnavailable) as caught:
        client.whoami()
    return caught.value.detail


def test_an_unknown_ca_says_how_to_trust_it(fake: FakePlatform) -> None:
    detail = _unavailable(Client(url=fake.url, api_key="stk_x"))
    assert detail.startswith(
        f"cannot verify the TLS certificate of Stratus at {fake.url} (unable to get local "
        "issuer certificate): trust the CA that signed it with `stratus login --ca-file CA.pem`"
    )
    assert "tls/ca.pem" in detail and "\n" not in detail
    assert fake.requests == []  # nothing was sent to an unverified server


def test_a_certificate_for_another_name_is_refused(tmp_path: Path) -> None:
    fake = FakePlatform(tmp_path / "home", ["stratus.example"])
    try:
        detail = _unavailable(Client(url=fake.url, api_key="stk_x", ca_file=fake.ca))
        assert "(IP address mismatch, certificate is not valid for '127.0.0.1')" in detail
        assert fake.requests == []
    finally:
        fake.close()


def test_the_wrong_scheme_is_named(fake: FakePlatform, tmp_path: Path) -> None:
    detail = _unavailable(Client(url=fake.url.replace("https", "http"), api_key="stk_x"))
    assert "a platform started with --tls is at https://" in detail
    plain = FakePlatform(tmp_path / "plain", tls=False)
    try:
        url = plain.url.replace("http", "https")
        detail = _unavailable(Client(url=url, api_key="stk_x", ca_file=fake.ca))
        assert detail.startswith(f"the TLS handshake with Stratus at {url} failed (")
        assert "A platform started without --tls is at http://" in detail
    finally:
        plain.close()


def test_the_cli_says_it_in_one_line(fake: FakePlatform, run_cli: Any, tmp_path: Path) -> None:
    env = {"STRATUS_URL": fake.url, "STRATUS_API_KEY": "stk_x", "STRATUS_HOME": str(tmp_path)}
    done = run_cli("status", env=env)
    assert done.code == 1
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot verify the TLS certificate of Stratus at https://")
    done = run_cli("--ca-file", str(fake.ca), "status", "-o", "json", env=env)
    assert done.code == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "ready"
    done = run_cli("status", "-o", "json", env={**env, "STRATUS_CA_FILE": str(fake.ca)})
    assert done.code == 0, done.stderr


def test_login_records_the_ca(fake: FakePlatform, run_cli: Any, tmp_path: Path) -> None:
    home = tmp_path / "laptop"
    env = {"STRATUS_URL": fake.url, "STRATUS_HOME": str(home)}
    copy = tmp_path / "ca.pem"
    copy.write_bytes(fake.ca.read_bytes())
    done = run_cli("login", "--api-key", "stk_x", env=env)  # no CA: refused, nothing saved
    assert done.code == 1 and "stratus login --ca-file" in done.stderr
    assert load_profiles(home).profiles == {}
    done = run_cli("login", "--api-key", "stk_x", "--ca-file", str(copy), env=env)
    assert done.code == 0, done.stderr
    assert f"trusting the CA {copy}" in done.stdout
    saved = load_profiles(home).profiles["default"]
    assert (saved.url, saved.ca_file) == (fake.url, str(copy))
    # later commands trust it without being told
    done = run_cli("status", "-o", "json", env={"STRATUS_HOME": str(home)})
    assert done.code == 0, done.stderr
    # a second login to the same platform keeps it
    done = run_cli("login", "--api-key", "stk_x", "--profile", "again", env=env)
    assert done.code == 0, done.stderr
    assert load_profiles(home).profiles["again"].ca_file == str(copy)


def test_login_trusts_the_ca_of_its_own_home(
    fake: FakePlatform, run_cli: Any, tmp_path: Path
) -> None:
    """`stratus up --tls` on this home made the CA: a login needs no --ca-file."""
    home = tmp_path / "home"  # the fake platform's certificates are in it
    done = run_cli("login", "--api-key", "stk_x", env={"STRATUS_URL": fake.url,
                                                        "STRATUS_HOME": str(home)})  # fmt: skip
    assert done.code == 0, done.stderr
    assert load_profiles(home).profiles["default"].ca_file == str(fake.ca)
