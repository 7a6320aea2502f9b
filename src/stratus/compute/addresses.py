"""Where a replica listens, as a URL: `unix:///run/stratus/x.sock` on the machine of the control
plane, `tcp://10.0.0.7:41234` (or `tcp://[::1]:41234`) on another one.

Backends choose and report addresses; the gateway dials them (`serving/connections.py`) and the
replica listens on them (`serving/replica.py`); nothing else looks inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Address:
    """A parsed replica address: a unix socket `path`, or a TCP `host` and `port`."""

    scheme: Literal["unix", "tcp"]
    path: Path | None = None
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.scheme == "unix":
            return unix_address(self.path or Path("/"))
        return tcp_address(self.host, self.port)


def unix_address(path: Path) -> str:
    """`unix:///abs/path.sock` for an absolute socket path."""
    if not path.is_absolute():
        raise ValueError(f"a unix socket address needs an absolute path, not {path}")
    return f"unix://{path}"


def tcp_address(host: str, port: int) -> str:
    """`tcp://host:port`, with an IPv6 host in brackets."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is not between 0 and 65535")
    shown = f"[{host}]" if ":" in host else host
    return f"tcp://{shown}:{port}"


def parse_address(url: str) -> Address:
    """An `Address` from `unix:///path` or `tcp://host:port`.

    Raises:
        ValueError: any other scheme, a relative socket path, or a TCP address without a host
            or port.
    """
    parts = urlsplit(url)
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError(f"a unix address is unix:///absolute/path, not {url!r}")
        return Address("unix", path=Path(parts.path))
    if parts.scheme == "tcp":
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port in {url!r}: {exc}") from None
        if not parts.hostname or port is None or parts.path not in ("", "/"):
            raise ValueError(f"a tcp address is tcp://host:port, not {url!r}")
        return Address("tcp", host=parts.hostname, port=port)
    raise ValueError(f"a replica address is unix:///path or tcp://host:port, not {url!r}")
