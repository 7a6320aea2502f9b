"""https for the control plane: the certificate `stratus up` serves, and reloading it in place.

`stratus up --tls` calls `ensure_local_certificates`: a local CA and a server certificate it
signs, kept in the home's `tls/` folder (files mode 0600, each written atomically) and reused,
the server's renewed when it nears its end or no longer names the listen address. A
certificate the user brings (`--tls-cert`/`--tls-key`) is checked by `check_certificate`.
`ServerTls` holds the one `ssl.SSLContext` uvicorn serves with; on SIGHUP `reload` loads the
files into that same context, so new handshakes get the new certificate while open
connections carry on.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from stratus.core import certificates as certs
from stratus.core.errors import InvalidInput

if TYPE_CHECKING:
    from stratus.core.settings import Settings

log = logging.getLogger(__name__)

CA_LIFETIME = dt.timedelta(days=3650)
SERVER_LIFETIME = dt.timedelta(days=365)
#: a certificate with less than this left is made anew at the next start
RENEW_BEFORE = dt.timedelta(days=30)
#: listen addresses that mean "every interface": no certificate names them
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class LocalFiles:
    """The home's `tls/` folder (`Settings.tls_dir`)."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"  # client.credentials.local_ca_path names it too

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca-key.pem"

    @property
    def cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def key(self) -> Path:
        return self.folder / "server-key.pem"


@dataclass(frozen=True)
class Certificate:
    """What the control plane serves, and what its own clients should trust."""

    cert: Path
    key: Path
    ca: Path | None  # None: the system trust store
    notes: list[str] = field(default_factory=list)  # what was made or found, to tell the user


# --- names -----------------------------------------------------------------------------------


def server_names(host: str, extra: Iterable[str] = ()) -> list[str]:
    """The names a server certificate for `host` must cover: the listen address (unless it
    means every interface), localhost, 127.0.0.1, ::1, this machine's host name, and
    `extra`, in that order and each once."""
    names: list[str] = []
    wanted = [host.strip("[]")] if host not in WILDCARD_HOSTS else []
    wanted += ["localhost", "127.0.0.1", "::1", socket.gethostname(), *extra]
    seen: set[str | IpAddress] = set()
    for name in wanted:
        key = _key(name)
        if name and key not in seen:
            seen.add(key)
            names.append(name)
    return names


def _key(name: str) -> str | IpAddress:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return name.lower().rstrip(".")


def _general_name(name: str) -> x509.GeneralName:
    key = _key(name)
    if isinstance(key, str):
        return x509.DNSName(key)
    return x509.IPAddress(key)


def missing_names(cert: x509.Certificate, names: Sequence[str]) -> list[str]:
    """The names of `names` the certificate's subject alternative names do not cover (a
    `*.example.com` entry covers one label in its place)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return list(names)
    dns = [d.lower().rstrip(".") for d in san.get_values_for_type(x509.DNSName)]
    ips = set(san.get_values_for_type(x509.IPAddress))
    missing = []
    for name in names:
        key = _key(name)
        if isinstance(key, str):
            covered = key in dns or any(
                d.startswith("*.") and "." in key and key.split(".", 1)[1] == d[2:] for d in dns
            )
        else:
            covered = key in ips
        if not covered:
            missing.append(name)
    return missing


# --- the local CA --------------------------------------------------------------------------------


def ensure_local_certificates(
    folder: Path, names: Sequence[str], *, now: dt.datetime | None = None
) -> Certificate:
    """The local CA and a server certificate for `names`, made in `folder` when missing, and
    reused otherwise. The CA is made anew when it is unreadable or near its end; the server
    certificate when it is missing, unreadable, near its end, not signed by the CA, not the
    key's, or does not name every one of `names`."""
    now = now or dt.datetime.now(dt.UTC)
    files = LocalFiles(folder)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if folder.stat().st_mode & 0o077:
        folder.chmod(0o700)
    notes: list[str] = []
    ca, replaced = _usable_ca(files, now)
    if ca is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _make_ca(ca_key, now)
        certs.write_private(files.ca_key, certs.private_pem(ca_key))
        certs.write_private(files.ca, certs.certificate_pem(ca_cert))
        made = f"{files.ca}, valid until {ca_cert.not_valid_after_utc:%Y-%m-%d}"
        if replaced:
            notes.append(
                f"made a new local CA ({made}) as {replaced}: clients on other machines must "
                "trust the new one (`stratus login --ca-file ca.pem`)"
            )
        else:
            notes.append(
                f"made a local CA ({made}); clients on other machines trust it with "
                "`stratus login --ca-file ca.pem`"
            )
    else:
        ca_key, ca_cert = ca
    why = _server_renewal(files, ca_cert, names, now)
    if why is not None:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _make_server(key, names, ca_key, ca_cert, now)
        certs.write_private(files.key, certs.private_pem(key))
        certs.write_private(files.cert, certs.certificate_pem(cert))
        notes.append(
            f"issued a server certificate ({why}) for {', '.join(names)}, valid until "
            f"{cert.not_valid_after_utc:%Y-%m-%d}"
        )
    for path in (files.ca, files.ca_key, files.cert, files.key):
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    return Certificate(cert=files.cert, key=files.key, ca=files.ca, notes=notes)


def _usable_ca(
    files: LocalFiles, now: dt.datetime
) -> tuple[tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None, str | None]:
    """The CA's key and certificate when they can sign on; else None and why a CA that was
    there cannot (None when there was none)."""
    if not files.ca.exists() and not files.ca_key.exists():
        return None, None
    try:
        cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
        key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return None, f"the old one could not be read ({exc})"
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not certs.same_key(cert, key):
        return None, "the old one's key did not match"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return None, f"the old one ends on {cert.not_valid_after_utc:%Y-%m-%d}"
    return (key, cert), None


def _server_renewal(
    files: LocalFiles, ca: x509.Certificate, names: Sequence[str], now: dt.datetime
) -> str | None:
    """Why the server certificate must be made anew, or None to keep it."""
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    except FileNotFoundError:
        return "first start"
    except (OSError, ValueError, TypeError):
        return "the old one could not be read"
    if not certs.same_key(cert, key):
        return "the old one's key did not match"
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "a new CA"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return f"the old one ends on {cert.not_valid_after_utc:%Y-%m-%d}"
    missing = missing_names(cert, names)
    if missing:
        return f"the old one did not name {', '.join(missing)}"
    return None


def _make_ca(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> x509.Certificate:
    return certs.make_ca(key, f"Stratus local CA ({socket.gethostname()})", CA_LIFETIME, now)


def _make_server(
    key: ec.EllipticCurvePrivateKey,
    names: Sequence[str],
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    now: dt.datetime,
) -> x509.Certificate:
    return certs.issue(
        key,
        common_name=names[0],
        alt_names=[_general_name(n) for n in names],
        usage="server",
        ca_key=ca_key,
        ca=ca,
        lifetime=SERVER_LIFETIME,
        now=now,
    )


# --- a certificate the user brings --------------------------------------------------------------


def check_certificate(
    cert_file: Path, key_file: Path, names: Sequence[str] = (), *, now: dt.datetime | None = None
) -> list[str]:
    """Check a PEM certificate (its chain after it) and its private key, as files or as read
    from them; return warnings (names it does not cover, a near end).

    Raises:
        InvalidInput: a file cannot be read or is not PEM, the key is encrypted or is not the
            certificate's, or the certificate has expired or is not valid yet.
    """
    cert_pem, key_pem = _read(cert_file, "certificate"), _read(key_file, "key")
    return _check(cert_pem, key_pem, cert_file, key_file, names, now)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None


def _check(
    cert_pem: bytes,
    key_pem: bytes,
    cert_file: Path,
    key_file: Path,
    names: Sequence[str],
    now: dt.datetime | None,
) -> list[str]:
    now = now or dt.datetime.now(dt.UTC)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise InvalidInput(
            f"{cert_file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise InvalidInput(
            f"the TLS key {key_file} is encrypted: give Stratus an unencrypted key, readable "
            "by its user only (chmod 600)"
        ) from None
    except ValueError:
        raise InvalidInput(
            f"{key_file} holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
        ) from None
    leaf = chain[0]
    if not certs.same_key(leaf, key):
        raise InvalidInput(
            f"the key {key_file} does not belong to the certificate {cert_file}: give the key "
            "the certificate was issued for"
        )
    if leaf.not_valid_after_utc <= now:
        raise InvalidInput(
            f"the certificate {cert_file} expired on {leaf.not_valid_after_utc:%Y-%m-%d}: renew it"
        )
    if leaf.not_valid_before_utc > now:
        raise InvalidInput(
            f"the certificate {cert_file} is valid only from "
            f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: check this machine's clock"
        )
    warnings = []
    missing = missing_names(leaf, names)
    if missing:
        warnings.append(
            f"the certificate {cert_file} does not name {', '.join(missing)}: clients that "
            "reach Stratus by these names will not trust it"
        )
    if leaf.not_valid_after_utc - now < RENEW_BEFORE:
        warnings.append(
            f"the certificate {cert_file} ends on {leaf.not_valid_after_utc:%Y-%m-%d}: renew "
            "it, then send SIGHUP to `stratus up` to load it"
        )
    return warnings


# --- serving -----------------------------------------------------------------------------------


def certificate_for(settings: Settings) -> Certificate:
    """What `stratus up` serves with these settings (TLS on): the user's certificate, checked,
    or the local CA's, made or reused."""
    names = server_names(settings.server.host, settings.tls.hosts)
    tls = settings.tls
    if tls.cert_file is not None and tls.key_file is not None:
        warnings = check_certificate(tls.cert_file, tls.key_file, names)
        if tls.ca_file is not None and not tls.ca_file.is_file():
            raise InvalidInput(f"the CA file {tls.ca_file} (tls.ca_file) does not exist")
        return Certificate(cert=tls.cert_file, key=tls.key_file, ca=tls.ca_file, notes=warnings)
    return ensure_local_certificates(settings.tls_dir, names)


def trusted_ca(settings: Settings) -> Path | None:
    """The CA this machine's clients (job runners) trust for the control plane: the user's
    `tls.ca_file`, else the local CA; None for plain http or the system trust store."""
    if not settings.tls.enabled:
        return None
    if settings.tls.cert_file is not None:
        return settings.tls.ca_file
    return LocalFiles(settings.tls_dir).ca


class ServerTls:
    """The SSL context uvicorn serves with, and its reload (SIGHUP).

    A reload reads the two files once, checks them, and loads that copy into a scratch context
    before the live one: a bad or half-replaced pair is refused whole, and the previous
    certificate goes on being served.
    """

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.serial = 0
        self.not_after = dt.datetime.min.replace(tzinfo=dt.UTC)
        self._load()

    def _load(self) -> None:
        cert_pem = _read(self.cert_file, "certificate")
        key_pem = _read(self.key_file, "key")
        _check(cert_pem, key_pem, self.cert_file, self.key_file, (), None)
        leaf = x509.load_pem_x509_certificates(cert_pem)[0]
        with tempfile.TemporaryDirectory(prefix="stratus-tls-") as folder:  # mode 0700
            cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
            for path, data in ((cert, cert_pem), (key, key_pem)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
            except ssl.SSLError as exc:
                raise InvalidInput(
                    f"the certificate {self.cert_file} and key {self.key_file} cannot be "
                    f"served: {exc.reason or exc}"
                ) from None
            self.context.load_cert_chain(cert, key)
        self.serial = leaf.serial_number
        self.not_after = leaf.not_valid_after_utc

    def reload(self) -> bool:
        """Load the files again into the live context (new handshakes use them; open
        connections keep what they have). On failure, log why and keep the previous pair."""
        before = self.serial
        try:
            self._load()
        except InvalidInput as exc:
            log.error(
                "TLS certificate not reloaded: %s; still serving the previous one (serial %x)",
                exc.detail,
                before,
            )
            return False
        log.info(
            "TLS certificate reloaded from %s (serial %x, was %x; valid until %s)",
            self.cert_file,
            self.serial,
            before,
            f"{self.not_after:%Y-%m-%d}",
        )
        return True
