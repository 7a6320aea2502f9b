"""Secrets of notification channels at rest: header values, SMTP passwords and Slack URLs
are sealed with AES-256-GCM under a key derived from the root secret, which a rotation of the
master key keeps (`iam.credentials.derive_key(root, CHANNEL_SECRETS)`; `storage/key_check.py`),
bound to the channel's uid, so a
sealed blob copied to another row does not open."""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stratus.core.errors import DataCorrupted

_VERSION = b"\x01"
_NONCE = 12
CHANNEL_SECRETS = "stratus notification channel secrets"  # the key's HKDF purpose


class SecretBox:
    """Seal and open small JSON documents of secrets."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, secrets: dict[str, object], context: str) -> bytes:
        nonce = os.urandom(_NONCE)
        plain = json.dumps(secrets, separators=(",", ":"), sort_keys=True).encode()
        return _VERSION + nonce + self._aead.encrypt(nonce, plain, context.encode())

    def open(self, sealed: bytes, context: str) -> dict[str, Any]:
        if not sealed.startswith(_VERSION) or len(sealed) < 1 + _NONCE + 16:
            raise DataCorrupted("the stored channel secrets are not in a known format")
        nonce, body = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
        try:
            plain = self._aead.decrypt(nonce, body, context.encode())
        except InvalidTag:
            raise DataCorrupted(
                "the stored channel secrets do not open with this master key"
            ) from None
        document = json.loads(plain)
        if not isinstance(document, dict):
            raise DataCorrupted("the stored channel secrets are not in a known format")
        return document
