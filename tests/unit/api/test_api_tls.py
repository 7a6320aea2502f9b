"""The control plane's certificates (`stratus.api.tls`): the local CA and the server certificate
it signs (names, modes, reuse, renewal), a certificate the user brings (refused with a reason
when it cannot be served), and the live SSL context reloaded in place: new handshakes get the
new certificate, an open connection carries on, a bad pair is refused whole."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stratus.api.tls import (
    LocalFiles,
    ServerTls,
    certificate_for,
    check_certificate,
    ensure_local_certificates,
    server_names,
    trusted_ca,
)
from stratus.client.credentials import local_ca_path
from stratus.core.errors import InvalidInput
from stratus.core.settings import load_settings

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
NAMES = ["127.0.0.1", "localhost", "::1", "stratus.example"]


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        set(san.get_values_for_type(x509.DNSName)),
        {str(ip) for ip in san.get_values_for_type(x509.IPAddress)},
    )


# --- names ---------------------------------------------------------------------------------------


def test_the_names_cover_the_listen_address_loopback_and_this_machine() -> None:
    assert server_names("10.1.2.3") == [
        "10.1.2.3", "localhost", "127.0.0.1", "::1", socket.gethostname()
    ]  # fmt: skip
    # every interface names no address of its own; IPv6 brackets and repeats are dropped
    assert server_names("0.0.0.0")[0] == "localhost"
    assert server_names("::")[0] == "localhost"
    assert server_names("[::1]", ["LOCALHOST", "ml.example"])[:3] == [
        "::1", "localhost", "127.0.0.1"
    ]  # fmt: skip
    assert server_names("127.0.0.1", ["ml.example"])[-1] == "ml.example"


# --- the local CA --------------------------------------------------------------------------------


def test_first_start_makes_a_ca_and_a_server_certificate_it_signs(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    made = ensure_local_certificates(folder, NAMES, now=NOW)
    files = LocalFiles(folder)
    assert (made.cert, made.key, made.ca) == (files.cert, files.key, files.ca)
    assert len(made.notes) == 2 and "local CA" in made.notes[0]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in (files.ca, files.ca_key, files.cert, files.key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp file left

    ca, server = load(files.ca), load(files.cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).critical
    assert ca.not_valid_after_utc - ca.not_valid_before_utc >= dt.timedelta(days=3650)
    server.verify_directly_issued_by(ca)
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert sans(server) == ({"localhost", "stratus.example"}, {"127.0.0.1", "::1"})
    lifetime = server.not_valid_after_utc - server.not_valid_before_utc
    assert dt.timedelta(days=365) <= lifetime < dt.timedelta(days=366)
    # the client side names the same file
    assert local_ca_path(tmp_path) == files.ca


def test_a_later_start_reuses_both(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    ensure_local_certificates(folder, NAMES, now=NOW)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    again = ensure_local_certificates(folder, NAMES, now=NOW + dt.timedelta(days=100))
    assert again.notes == []
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_looser_mode_is_put_back_to_0600(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    ensure_local_certificates(folder, NAMES, now=NOW)
    LocalFiles(folder).key.chmod(0o644)
    ensure_local_certificates(folder, NAMES, now=NOW)
    assert stat.S_IMODE(LocalFiles(folder).key.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("change", "names", "later", "why"),
    [
        ("remove the certificate", NAMES, 0, "first start"),
        ("nothing", NAMES, 340, "ends on"),  # 25 days left
        ("nothing", NAMES, 400, "ends on"),  # expired
        ("nothing", [*NAMES, "10.0.0.7"], 0, "did not name 10.0.0.7"),
        ("nothing", [*NAMES, "other.example"], 0, "did not name other.example"),
        ("swap the key", NAMES, 0, "key did not match"),
        ("garble the certificate", NAMES, 0, "could not be read"),
        ("a new CA", NAMES, 0, "a new CA"),
    ],
)
def test_the_server_certificate_is_made_anew_when_it_cannot_serve(
    tmp_path: Path, change: str, names: list[str], later: int, why: str
) -> None:
    folder = tmp_path / "tls"
    files = LocalFiles(folder)
    ensure_local_certificates(folder, NAMES, now=NOW)
    ca_before, serial_before = files.ca.read_bytes(), load(files.cert).serial_number
    if change == "remove the certificate":
        files.cert.unlink()
    elif change == "swap the key":
        files.key.write_bytes(files.ca_key.read_bytes())
    elif change == "garble the certificate":
        files.cert.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    elif change == "a new CA":
        files.ca.unlink()
        files.ca_key.unlink()
    now = NOW + dt.timedelta(days=later)
    made = ensure_local_certificates(folder, names, now=now)
    assert why in made.notes[-1]
    server = load(files.cert)
    assert server.serial_number != serial_before
    assert server.not_valid_after_utc > now + dt.timedelta(days=300)
    server.verify_directly_issued_by(load(files.ca))
    dns, ips = sans(server)
    assert {n for n in names if not n[0].isdigit() and ":" not in n} <= dns
    assert {str(ipaddress.ip_address(n)) for n in names if n[0].isdigit() or ":" in n} <= ips
    assert (files.ca.read_bytes() == ca_before) == (change != "a new CA")


def test_a_ca_near_its_end_is_replaced_and_said(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    ensure_local_certificates(folder, NAMES, now=NOW)
    made = ensure_local_certificates(folder, NAMES, now=NOW + dt.timedelta(days=3640))
    assert "new local CA" in made.notes[0] and "must trust the new one" in made.notes[0]
    assert load(LocalFiles(folder).ca).not_valid_before_utc > NOW + dt.timedelta(days=3000)


# --- a certificate the user brings ---------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _self_signed(
    key: ec.EllipticCurvePrivateKey, names: list[str], start: dt.datetime, days: int
) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def own_pair(tmp_path: Path) -> tuple[Path, Path]:
    key = _key()
    cert, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(_self_signed(key, ["*.example.com", "127.0.0.1"], NOW, 90))
    key_file.write_bytes(_pem(key))
    return cert, key_file


def test_a_good_pair_passes_and_names_it_does_not_cover_are_a_warning(
    own_pair: tuple[Path, Path],
) -> None:
    cert, key = own_pair
    now = NOW + dt.timedelta(days=1)
    assert check_certificate(cert, key, ["127.0.0.1", "ml.example.com"], now=now) == []
    (warning,) = check_certificate(cert, key, ["localhost", "a.b.example.com"], now=now)
    assert "does not name localhost, a.b.example.com" in warning  # a wildcard is one label
    (warning,) = check_certificate(cert, key, [], now=NOW + dt.timedelta(days=80))
    assert "renew it" in warning


def _problem(cert: Path, key: Path, now: dt.datetime = NOW + dt.timedelta(days=1)) -> str:
    with pytest.raises(InvalidInput) as caught:
        check_certificate(cert, key, now=now)
    return caught.value.detail


def test_a_pair_that_cannot_be_served_is_refused_with_the_reason(
    own_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = own_pair
    missing = tmp_path / "missing.pem"
    assert _problem(missing, key) == (
        f"cannot read the TLS certificate {missing}: No such file or directory"
    )
    assert (
        _problem(cert, missing) == f"cannot read the TLS key {missing}: No such file or directory"
    )
    other = tmp_path / "other-key.pem"
    other.write_bytes(_pem(_key()))
    assert _problem(cert, other) == (
        f"the key {other} does not belong to the certificate {cert}: give the key the "
        "certificate was issued for"
    )
    assert "holds no PEM certificate" in _problem(key, key)
    assert "holds no PEM private key" in _problem(cert, cert)
    locked = tmp_path / "locked.pem"
    locked.write_bytes(_pem(_key(), password=b"secret"))
    assert "is encrypted" in _problem(cert, locked)
    assert "expired on 2027-03-01" in _problem(cert, key, now=NOW + dt.timedelta(days=91))
    assert "check this machine's clock" in _problem(cert, key, now=NOW - dt.timedelta(days=1))


def test_settings_choose_the_certificate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    local = load_settings({"home": str(home), "tls": {"enabled": True}})
    made = certificate_for(local)
    assert made.ca == trusted_ca(local) == home / "tls" / "ca.pem"
    assert local.internal_url.startswith("https://127.0.0.1:")
    key = _key()
    cert, key_file = tmp_path / "now.pem", tmp_path / "now-key.pem"
    cert.write_bytes(_self_signed(key, ["ml.example"], dt.datetime.now(dt.UTC), 90))
    key_file.write_bytes(_pem(key))
    tls = {"cert_file": cert, "key_file": key_file, "hosts": ["ml.example"]}
    brought = load_settings({"home": str(home), "tls": tls})
    assert brought.tls.enabled  # a certificate implies TLS
    assert trusted_ca(brought) is None  # the system trust store
    served = certificate_for(brought)
    assert (served.cert, served.key, served.ca) == (cert, key_file, None)
    assert "does not name 127.0.0.1, localhost, ::1" in served.notes[0]
    cert.write_bytes(_self_signed(key, ["ml.example"], NOW - dt.timedelta(days=400), 90))
    with pytest.raises(InvalidInput, match="expired"):
        certificate_for(brought)
    plain = load_settings({"home": str(home)})
    assert trusted_ca(plain) is None and plain.internal_url.startswith("http://")


def test_settings_come_from_the_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATUS_TLS_CERT_FILE", str(tmp_path / "c.pem"))
    monkeypatch.setenv("STRATUS_TLS_KEY_FILE", str(tmp_path / "k.pem"))
    monkeypatch.setenv("STRATUS_TLS_HOSTS", "ml.example, 10.0.0.7")
    settings = load_settings({"home": str(tmp_path)})
    assert settings.tls.enabled and settings.tls.cert_file == tmp_path / "c.pem"
    assert settings.tls.hosts == ["ml.example", "10.0.0.7"]
    monkeypatch.delenv("STRATUS_TLS_KEY_FILE")
    with pytest.raises(ValueError, match="go together"):
        load_settings({"home": str(tmp_path)})
    monkeypatch.delenv("STRATUS_TLS_CERT_FILE")
    monkeypatch.setenv("STRATUS_TLS_HOSTS", "not a name")
    with pytest.raises(ValueError, match="neither a host name nor an IP address"):
        load_settings({"home": str(tmp_path)})
    monkeypatch.delenv("STRATUS_TLS_HOSTS")
    (tmp_path / "stratus.toml").write_text("[tls]\nenabled = true\n")
    assert load_settings({"home": str(tmp_path)}).tls.enabled


# --- serving and reloading -----------------------------------------------------------------------


class EchoServer:
    """A TLS server on loopback, serving with a `ServerTls` context: each connection echoes
    lines until it is closed. Stopped by the test's fixture."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.05)  # so that the accepting thread sees `stopping`
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.accepting = threading.Thread(target=self._accept, daemon=True)
        self.accepting.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(10)
            thread = threading.Thread(target=self._echo, args=(raw,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _echo(self, raw: socket.socket) -> None:
        try:
            with self.context.wrap_socket(raw, server_side=True) as conn:
                while data := conn.recv(1024):
                    conn.sendall(data)
        except (OSError, ssl.SSLError):
            pass

    def close(self) -> None:
        self.stopping.set()
        self.accepting.join(5)
        self.sock.close()
        for thread in self.threads:
            thread.join(5)


@pytest.fixture
def local(tmp_path: Path) -> LocalFiles:
    ensure_local_certificates(tmp_path / "tls", NAMES)
    return LocalFiles(tmp_path / "tls")


@pytest.fixture
def served(local: LocalFiles) -> Iterator[tuple[ServerTls, EchoServer]]:
    tls = ServerTls(local.cert, local.key)
    server = EchoServer(tls.context)
    try:
        yield tls, server
    finally:
        server.close()


def _connect(port: int, ca: Path) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _serial(conn: ssl.SSLSocket) -> int:
    der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _echo(conn: ssl.SSLSocket, text: bytes) -> bytes:
    conn.sendall(text)
    return conn.recv(1024)


def test_reload_serves_new_handshakes_the_new_certificate_and_keeps_open_connections(
    local: LocalFiles, served: tuple[ServerTls, EchoServer], caplog: pytest.LogCaptureFixture
) -> None:
    tls, server = served
    with _connect(server.port, local.ca) as first:
        old = _serial(first)
        assert old == tls.serial == load(local.cert).serial_number
        local.cert.unlink()
        ensure_local_certificates(local.folder, NAMES)  # a new certificate, same CA
        new = load(local.cert).serial_number
        assert new != old
        with caplog.at_level(logging.INFO, logger="stratus.api.tls"):
            assert tls.reload()
        assert f"serial {new:x}, was {old:x}" in caplog.text
        assert _echo(first, b"still here") == b"still here"  # the open connection carries on
        assert _serial(first) == old
        with _connect(server.port, local.ca) as second:
            assert _serial(second) == new
            assert _echo(second, b"hello") == b"hello"


@pytest.mark.parametrize("damage", ["garbage", "another key", "missing"])
def test_a_bad_reload_is_refused_whole_and_the_old_certificate_served(
    local: LocalFiles,
    served: tuple[ServerTls, EchoServer],
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    tls, server = served
    old = tls.serial
    if damage == "garbage":
        local.cert.write_text("not a certificate")
    elif damage == "another key":  # a new certificate whose key is not on disk
        local.key.write_bytes(_pem(_key()))
    else:
        local.key.unlink()
    with caplog.at_level(logging.INFO, logger="stratus.api.tls"):
        assert not tls.reload()
    (record,) = [r for r in caplog.records if r.name == "stratus.api.tls"]
    assert record.levelno == logging.ERROR
    assert "not reloaded" in record.getMessage()
    assert f"still serving the previous one (serial {old:x})" in record.getMessage()
    assert tls.serial == old
    with _connect(server.port, local.ca) as conn:  # the live context is whole
        assert _serial(conn) == old
        assert _echo(conn, b"ok") == b"ok"


def test_a_start_with_a_bad_pair_says_why(local: LocalFiles, tmp_path: Path) -> None:
    other = tmp_path / "other-key.pem"
    other.write_bytes(_pem(_key()))
    with pytest.raises(InvalidInput, match="does not belong to the certificate"):
        ServerTls(local.cert, other)
