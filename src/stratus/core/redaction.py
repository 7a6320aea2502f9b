"""Redaction: what of a URL or a log line may be written down. A URL keeps where it goes
(scheme, host, port, the shape of its path) and loses what may be a credential: userinfo,
query values, the fragment, and the whole path of hosts whose path is the secret (a Slack
incoming webhook). `stratus up` formats every log line through `RedactingFormatter`, and any
service that names a URL in a message passes it through `redact_url` first.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

MASK = "****"

# hosts (and their subdomains) whose URL path is itself the credential
SECRET_PATH_HOSTS: tuple[str, ...] = (
    "hooks.slack.com",
    "discord.com",
    "discordapp.com",
    "webhook.office.com",
    "hooks.zapier.com",
    "api.telegram.org",
)

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s\"'<>`]+")
# an API key `stk_<key id>_<secret>`: the key id may be shown, never the secret
_API_KEY = re.compile(r"\b(stk_[0-9a-f]+_)[A-Za-z0-9_\-]+")


def _secret_path_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == h or host.endswith("." + h) for h in SECRET_PATH_HOSTS)


def redact_url(url: str) -> str:
    """`url` with its credentials masked: scheme://host[:port]/path?name=**** — no userinfo,
    no query values, no fragment, and `/****` for the path of a secret-bearing host.
    Text that does not parse as a URL with a host is masked whole."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    if ":" in host:
        host = f"[{host}]"
    out = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    if parts.path:
        out += f"/{MASK}" if _secret_path_host(parts.hostname or "") else parts.path
    if parts.query:
        pairs = parts.query.split("&")
        out += "?" + "&".join(f"{p.split('=', 1)[0]}={MASK}" if "=" in p else MASK for p in pairs)
    return out


def redact_text(text: str) -> str:
    """Every URL in `text` redacted (`redact_url`), and the secret of every API key masked."""
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    if "stk_" in text:
        text = _API_KEY.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFormatter(logging.Formatter):
    """A formatter whose output (message, arguments and traceback alike) is `redact_text`ed,
    so no library's or service's line writes a URL's credential or an API key."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))
