"""Where a notification may go: a channel's host is resolved and every address it resolves to
must be public — not loopback, link-local (the cloud metadata address), private, multicast,
reserved or unspecified, in IPv4 or IPv6 (IPv4-mapped and 6to4 forms are judged by the IPv4
inside) — unless a platform admin allows its range (`monitoring.allowed_notification_networks`).

`channels.py` checks when a channel is applied; `notifications.py` checks again when it sends
and connects to the very address it checked, so a DNS answer that changes in between (DNS
rebinding) cannot turn a channel inward.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "monitoring.allowed_notification_networks"


class DestinationRefused(Exception):
    """The host resolves to an address notifications may not go to; the message names it."""


class Unresolvable(Exception):
    """The host does not resolve (now)."""


def _kind(ip: IPAddress) -> str | None:
    """What makes `ip` an internal address (None when it is public)."""
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "non-public"
    return None


def _embedded(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (::ffff:a.b.c.d, 2002:AABB:CCDD::/48)."""
    if isinstance(ip, ipaddress.IPv6Address):
        return ip.ipv4_mapped or ip.sixtofour
    return None


@dataclass(frozen=True)
class NetworkPolicy:
    """Which addresses notifications may reach: public ones, plus the allowed networks."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def allowing(cls, cidrs: Iterable[str]) -> NetworkPolicy:
        return cls(tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs))

    def _allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allowed)

    def refusal(self, ip: IPAddress) -> str | None:
        """What kind of internal address `ip` is (None when notifications may go to it)."""
        inner = _embedded(ip)
        if self._allowed(ip) or (inner is not None and self._allowed(inner)):
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return _kind(ip.ipv4_mapped)  # ::ffff:0:0/96 itself counts as reserved
        return _kind(ip) or (_kind(inner) if inner is not None else None)

    def check(self, host: str, port: int) -> list[IPAddress]:
        """Resolve `host` and check every address it resolves to; the addresses, in the
        resolver's order.

        Raises:
            DestinationRefused: one of the addresses is internal and not allowed.
            Unresolvable: the host does not resolve.
        """
        addresses = resolve(host, port)
        for ip in addresses:
            kind = self.refusal(ip)
            if kind is not None:
                said = f"{ip} is" if _literal(host) == ip else f"{host} resolves to {ip},"
                article = "an" if kind[0] in "aeiou" else "a"
                raise DestinationRefused(
                    f"{said} {article} {kind} address; notifications go to public addresses only "
                    f"(a platform admin may allow a network with the setting {SETTING})"
                )
        return addresses


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal in any form, integer and octal IPv4
    included, resolves to itself), without duplicates."""
    try:
        answers = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise Unresolvable(f"{host} does not resolve") from exc
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in answers:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    if not found:
        raise Unresolvable(f"{host} does not resolve")
    return found
