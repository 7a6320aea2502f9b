"""The control plane's certificate authority for replicas that listen on TCP: mutual TLS between
the gateway and replicas on other machines (`serving/replica_tls.py`).

The controller asks it for a certificate for each such replica as it starts it (`issue`: a new
key, the replica's id as its identity, valid for 30 days) and dials those replicas with the
gateway's own certificate (`client_context`). The CA and the gateway's certificate are made on
first use in the home's `tls/` folder, apart from the API's CA (`api/tls.py`), and reused after a
restart, so re-adopted replicas still trust the gateway. Nothing here is stored per replica.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from stratus.core import certificates as certs
from stratus.serving.replica_tls import (
    GATEWAY_IDENTITY,
    ReplicaTls,
    client_context,
    replica_identity,
)

log = logging.getLogger("stratus.endpoints")

CA_LIFETIME = dt.timedelta(days=3650)
CERTIFICATE_LIFETIME = dt.timedelta(days=30)  # a replica's, and the gateway's
#: a replica whose certificate ends sooner is replaced by the controller (as in a rolling
#: update); the gateway's certificate is issued anew
RENEW_BEFORE = dt.timedelta(days=2)
#: a CA with less left is made anew (a certificate it signs ends no later than it does)
CA_RENEW_BEFORE = CERTIFICATE_LIFETIME + RENEW_BEFORE

Pair = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


@dataclass(frozen=True)
class AuthorityFiles:
    """Where the replica CA keeps its files: the home's `tls/` folder."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "replica-ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "replica-ca-key.pem"

    @property
    def gateway(self) -> Path:
        return self.folder / "replica-gateway.pem"

    @property
    def gateway_key(self) -> Path:
        return self.folder / "replica-gateway-key.pem"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ReplicaAuthority:
    """Issues replicas' certificates and holds the gateway's. Thread-safe: the controller
    issues from its worker threads and dials from the event loop."""

    def __init__(self, folder: Path, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.files = AuthorityFiles(folder)
        self._clock = clock
        self._lock = threading.Lock()
        self._ca: Pair | None = None
        # the gateway's context, when its certificate ends, and the CA that issued it
        self._gateway: tuple[ssl.SSLContext, dt.datetime, int] | None = None

    def issue(self, replica_id: str) -> ReplicaTls:
        """A new key and certificate for replica `replica_id` (its identity:
        `replica_identity(replica_id)`, for TLS servers only), with the CA it must trust."""
        now = self._clock()
        with self._lock:
            ca_key, ca = self._authority(now)
        key = certs.new_key()
        cert = certs.issue(
            key,
            common_name=replica_id,
            uris=[replica_identity(replica_id)],
            usage="server",
            ca_key=ca_key,
            ca=ca,
            lifetime=CERTIFICATE_LIFETIME,
            now=now,
        )
        return ReplicaTls(
            cert=certs.certificate_pem(cert).decode(),
            key=certs.private_pem(key).decode(),
            ca=certs.certificate_pem(ca).decode(),
        )

    def client_context(self) -> ssl.SSLContext:
        """The gateway's TLS context for dialling replicas: its certificate (read from the
        folder, or issued anew when missing, not the current CA's, or near its end) and the CA
        as the only authority it trusts."""
        now = self._clock()
        with self._lock:
            ca_key, ca = self._authority(now)
            if self._gateway is not None:
                context, ends, serial = self._gateway
                if serial == ca.serial_number and ends - now > RENEW_BEFORE:
                    return context
            key, cert = self._gateway_pair(ca_key, ca, now)
            context = client_context(
                certs.certificate_pem(ca).decode(),
                certs.certificate_pem(cert).decode(),
                certs.private_pem(key).decode(),
            )
            self._gateway = (context, cert.not_valid_after_utc, ca.serial_number)
            return context

    # --- the files (the lock held) --------------------------------------------------------

    def _authority(self, now: dt.datetime) -> Pair:
        """The CA: in memory, else read from the folder, else made (and written)."""
        if self._ca is not None and self._ca[1].not_valid_after_utc - now > CA_RENEW_BEFORE:
            return self._ca
        files = self.files
        self._folder()
        found: Pair | None = None
        why = "first use"
        if files.ca.exists() or files.ca_key.exists():
            try:
                found = certs.load_pair(files.ca, files.ca_key)
            except (OSError, ValueError) as exc:
                why = f"the old one could not be read: {exc}"
            else:
                if found[1].not_valid_after_utc - now <= CA_RENEW_BEFORE:
                    why = f"the old one ends on {found[1].not_valid_after_utc:%Y-%m-%d}"
                    found = None
        if found is None:
            key = certs.new_key()
            cert = certs.make_ca(key, "Stratus replica CA", CA_LIFETIME, now)
            certs.write_private(files.ca_key, certs.private_pem(key))
            certs.write_private(files.ca, certs.certificate_pem(cert))
            log.info(
                "made the replica CA %s (%s), valid until %s; replicas on other machines "
                "started before it are replaced",
                files.ca,
                why,
                f"{cert.not_valid_after_utc:%Y-%m-%d}",
            )
            found = key, cert
        self._ca = found
        return found

    def _gateway_pair(
        self, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, now: dt.datetime
    ) -> Pair:
        """The gateway's key and certificate from the folder, or issued anew."""
        files = self.files
        try:
            key, cert = certs.load_pair(files.gateway, files.gateway_key)
            cert.verify_directly_issued_by(ca)
            if cert.not_valid_after_utc - now > RENEW_BEFORE and GATEWAY_IDENTITY in (
                certs.uris_of(cert)
            ):
                return key, cert
        except (OSError, ValueError, TypeError, InvalidSignature):
            pass  # missing, unreadable or of another CA: issued anew
        key = certs.new_key()
        cert = certs.issue(
            key,
            common_name="Stratus gateway",
            uris=[GATEWAY_IDENTITY],
            usage="client",
            ca_key=ca_key,
            ca=ca,
            lifetime=CERTIFICATE_LIFETIME,
            now=now,
        )
        certs.write_private(files.gateway_key, certs.private_pem(key))
        certs.write_private(files.gateway, certs.certificate_pem(cert))
        log.info(
            "issued the gateway's certificate for replicas, valid until %s",
            f"{cert.not_valid_after_utc:%Y-%m-%d}",
        )
        return key, cert

    def _folder(self) -> None:
        folder = self.files.folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if folder.stat().st_mode & 0o077:
            folder.chmod(0o700)
