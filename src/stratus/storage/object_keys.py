"""Object key rules: what a key may look like before it touches a path or a database."""

from __future__ import annotations

from stratus.core.errors import InvalidInput

MAX_KEY_BYTES = 1024


def validate_key(key: str) -> str:
    if not key:
        raise InvalidInput("object key must not be empty")
    if len(key.encode("utf-8", errors="surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidInput(f"object key is longer than {MAX_KEY_BYTES} bytes")
    for ch in key:
        if ord(ch) < 32 or ord(ch) == 127:
            raise InvalidInput(f"object key {key!r} contains a control character")
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise InvalidInput("object key is not valid UTF-8")
    if "\\" in key:
        raise InvalidInput(f"object key {key!r} must not contain a backslash")
    if key.startswith("/"):
        raise InvalidInput(f"object key {key!r} must not be an absolute path (starts with '/')")
    if key.endswith("/"):
        raise InvalidInput(f"object key {key!r} must not end with '/'")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidInput(
                f"object key {key!r} must not contain empty, '.' or '..' path segments"
            )
    return key


def validate_prefix(prefix: str) -> str:
    if len(prefix.encode("utf-8", errors="surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidInput(f"prefix is longer than {MAX_KEY_BYTES} bytes")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in prefix):
        raise InvalidInput("prefix contains a control character")
    return prefix
