"""Mutual TLS between the gateway and the replicas that listen on TCP (on other machines).

The control plane's replica CA (`endpoints/replica_authority.py`) issues each such replica a
certificate for its id and holds one for the gateway; the identity is a URI in the
certificate's subject alternative names (`replica_identity`, `GATEWAY_IDENTITY`). A replica
accepts only a client whose certificate that CA issued for the gateway (`server_context`, then
`identities`), and the gateway sends nothing, not even the replica's secret, to a replica whose
certificate the CA did not issue for the replica it dials (`client_context`, then
`identities`). Replicas on unix sockets use no TLS: the socket's permissions guard them.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

GATEWAY_IDENTITY = "spiffe://stratus/gateway"
REPLICA_IDENTITY_PREFIX = "spiffe://stratus/replica/"
MIN_VERSION = ssl.TLSVersion.TLSv1_2  # both ends are Stratus: they agree on TLS 1.3


def replica_identity(replica_id: str) -> str:
    """What the certificate of replica `replica_id` names it as."""
    return REPLICA_IDENTITY_PREFIX + replica_id


class ReplicaTls(BaseModel):
    """What a replica on TCP serves with (PEM): its certificate and key, and the replica CA,
    the only issuer of client certificates it accepts."""

    cert: str
    key: str = Field(repr=False)
    ca: str


def server_context(tls: ReplicaTls) -> ssl.SSLContext:
    """A replica's: it presents its certificate and requires the client's, issued by the CA.

    Raises:
        ssl.SSLError: the PEMs are not a certificate, its key and a CA.
    """
    context = _context(ssl.PROTOCOL_TLS_SERVER, tls.ca)
    context.num_tickets = 0  # connections are long-lived: no session resumption
    _load_pair(context, tls.cert, tls.key)
    return context


def client_context(ca: str, cert: str, key: str) -> ssl.SSLContext:
    """The gateway's: it presents its certificate (`cert`, `key`) and trusts only replica
    certificates issued by `ca`. Host names are not checked: who the replica is is the
    replica id its certificate names (`identities`), checked after the handshake and before
    anything is sent.

    Raises:
        ssl.SSLError: the PEMs are not a certificate, its key and a CA.
    """
    context = _context(ssl.PROTOCOL_TLS_CLIENT, ca)
    context.check_hostname = False
    _load_pair(context, cert, key)
    return context


def identities(peercert: dict[str, Any] | None) -> list[str]:
    """The URIs a verified peer's certificate names (`SSLObject.getpeercert()`; the
    `peercert` of a connection's extra info)."""
    if not peercert:
        return []
    return [value for kind, value in peercert.get("subjectAltName", ()) if kind == "URI"]


def _context(protocol: ssl._SSLMethod, ca: str) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = MIN_VERSION
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.load_verify_locations(cadata=ca)  # the only authority: no system trust store
    return context


def _load_pair(context: ssl.SSLContext, cert: str, key: str) -> None:
    """`load_cert_chain` from PEM text (it reads only files): through a file in a private
    temporary folder, removed at once."""
    with tempfile.TemporaryDirectory(prefix="stratus-tls-") as folder:  # mode 0700
        path = Path(folder) / "pair.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(cert.rstrip("\n") + "\n" + key)
        context.load_cert_chain(path)
