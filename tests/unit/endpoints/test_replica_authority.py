"""The replica CA: made on first use in the home's tls/ folder (files 0600, apart from the API's
CA) and reused by the next control plane; each replica gets a key and a 30-day certificate for
its id, for TLS servers only; the gateway's certificate is for clients only, renewed near its
end; a CA that cannot be read is made anew."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from stratus.core import certificates as certs
from stratus.endpoints.replica_authority import (
    CERTIFICATE_LIFETIME,
    RENEW_BEFORE,
    ReplicaAuthority,
)
from stratus.serving.replica_tls import GATEWAY_IDENTITY, replica_identity

REPLICA = "e1.main.1.abcd1234.a1b2c3"


def usages(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_the_ca_is_made_on_first_use_and_reused(tmp_path: Path) -> None:
    folder = tmp_path / "home" / "tls"
    authority = ReplicaAuthority(folder)
    assert not folder.exists()  # nothing until a replica on the network needs it

    tls = authority.issue(REPLICA)
    authority.client_context()
    files = authority.files
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in (files.ca, files.ca_key, files.gateway, files.gateway_key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert sorted(p.name for p in folder.iterdir()) == [
        "replica-ca-key.pem", "replica-ca.pem", "replica-gateway-key.pem", "replica-gateway.pem",
    ]  # fmt: skip
    assert tls.ca == files.ca.read_text()

    # the next control plane (a restart) signs with the same CA and keeps the gateway's
    again = ReplicaAuthority(folder)
    gateway_before = files.gateway.read_bytes()
    assert again.issue("another").ca == tls.ca
    again.client_context()
    assert files.gateway.read_bytes() == gateway_before


def test_a_replica_certificate_names_its_id_and_serves_only(tmp_path: Path) -> None:
    now = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
    authority = ReplicaAuthority(tmp_path, clock=lambda: now)
    first, second = authority.issue(REPLICA), authority.issue(REPLICA + "x")
    cert = x509.load_pem_x509_certificate(first.cert.encode())
    ca = x509.load_pem_x509_certificate(first.ca.encode())
    cert.verify_directly_issued_by(ca)
    assert certs.uris_of(cert) == [replica_identity(REPLICA)]
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == REPLICA
    assert usages(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_after_utc == now + CERTIFICATE_LIFETIME
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key(first.key.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and certs.same_key(cert, key)
    assert first.key != second.key  # a key of its own per replica
    assert "PRIVATE" not in repr(first)


def test_the_gateway_certificate_is_for_clients_and_renewed_near_its_end(tmp_path: Path) -> None:
    now = [dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)]
    authority = ReplicaAuthority(tmp_path, clock=lambda: now[0])
    context = authority.client_context()
    cert = x509.load_pem_x509_certificate(authority.files.gateway.read_bytes())
    assert certs.uris_of(cert) == [GATEWAY_IDENTITY]
    assert usages(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert authority.client_context() is context  # one context, while it is good

    now[0] += CERTIFICATE_LIFETIME - RENEW_BEFORE + dt.timedelta(hours=1)
    renewed = authority.client_context()
    assert renewed is not context
    newer = x509.load_pem_x509_certificate(authority.files.gateway.read_bytes())
    assert newer.not_valid_after_utc == now[0] + CERTIFICATE_LIFETIME
    assert newer.serial_number != cert.serial_number


def test_an_unreadable_ca_is_made_anew(tmp_path: Path) -> None:
    authority = ReplicaAuthority(tmp_path)
    old = authority.issue(REPLICA).ca
    authority.client_context()
    authority.files.ca_key.write_text("not a key")
    fresh = ReplicaAuthority(tmp_path)
    new = fresh.issue(REPLICA).ca
    assert new != old
    fresh.client_context()  # the gateway's certificate follows the new CA
    gateway = x509.load_pem_x509_certificate(fresh.files.gateway.read_bytes())
    gateway.verify_directly_issued_by(x509.load_pem_x509_certificate(new.encode()))
