"""X.509 pieces for the control plane's certificate authorities, with `cryptography`.

Keys are ECDSA P-256; a CA signs only end-entity certificates (path length 0); every
certificate carries its key identifiers, so OpenSSL's strict verification accepts it. Private
files are written mode 0600 and atomically. Used by the API's local CA (`api/tls.py`) and the
replica CA (`endpoints/replica_authority.py`); nothing here knows what a certificate is for
beyond its key usage.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: certificates start a little in the past, for peers whose clocks lag
BACKDATE = dt.timedelta(minutes=5)
MAX_COMMON_NAME = 64  # characters X.509 allows in a common name

Usage = Literal["server", "client"]
_USAGES = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Stratus"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:MAX_COMMON_NAME]),
        ]
    )


def make_ca(
    key: ec.EllipticCurvePrivateKey, common_name: str, lifetime: dt.timedelta, now: dt.datetime
) -> x509.Certificate:
    """A self-signed CA certificate for `key` that signs end-entity certificates only."""
    name, public = _name(common_name), key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def issue(
    key: ec.EllipticCurvePrivateKey,
    *,
    common_name: str,
    uris: Sequence[str] = (),
    alt_names: Sequence[x509.GeneralName] = (),
    usage: Usage,
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    lifetime: dt.timedelta,
    now: dt.datetime,
) -> x509.Certificate:
    """An end-entity certificate for `key`, signed by the CA, naming `uris` and `alt_names`
    (DNS names, IP addresses) as its subject alternative names, for TLS servers or clients only
    (`usage`), and ending no later than the CA."""
    public = key.public_key()
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + lifetime, ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([_USAGES[usage]]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [*(x509.UniformResourceIdentifier(u) for u in uris), *alt_names]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def uris_of(cert: x509.Certificate) -> list[str]:
    """The URIs among the certificate's subject alternative names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_pair(
    cert_file: Path, key_file: Path
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A certificate and its ECDSA key from PEM files.

    Raises:
        OSError: a file cannot be read.
        ValueError: a file is not PEM, or the key is not an ECDSA key or not the certificate's.
    """
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except TypeError as exc:  # encrypted
        raise ValueError(str(exc)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not same_key(cert, key):
        raise ValueError(f"the key {key_file} is not the one of {cert_file}")
    return key, cert


def same_key(cert: x509.Certificate, key: object) -> bool:
    """Whether `key` (a private key of any kind) is the certificate's."""
    public = getattr(key, "public_key", None)
    if public is None:
        return False
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(cert.public_key().public_bytes(*spki) == public().public_bytes(*spki))


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, mode 0600, atomically: a crash leaves the old file or the
    new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
