"""Identifiers: time-ordered unique ids for rows and request ids for tracing."""

from __future__ import annotations

import os
import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


_last = [0, 0]
_lock = threading.Lock()


def new_id(prefix: str = "") -> str:
    """A 26-character id that sorts by creation time (48-bit ms clock + 80 random bits).

    Within one process ids are strictly increasing: in the same millisecond the random part
    is incremented instead of drawn again.
    """
    with _lock:
        millis = time.time_ns() // 1_000_000
        if millis <= _last[0]:
            millis, rand = _last[0], _last[1] + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # leave room to increment
        _last[0], _last[1] = millis, rand
    return prefix + _b32(millis, 10) + _b32(rand, 16)


def new_request_id() -> str:
    return "req-" + secrets.token_hex(8)


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)
