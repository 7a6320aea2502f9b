"""Checkpoints of the audit chain's head, kept outside the database.

The audit log (`iam/audit.py`) keys its chain with a secret the database does not hold, so an
entry cannot be forged there; what the database alone cannot show is its newest entries
deleted with `audit_head` rewritten to match. A checkpoint — {seq, hash, keyed_from, time}
signed with the chain's key — is written to the object store every few seconds, on verify and
on shutdown; `verify` compares the database with it. Entries appended since the last
checkpoint are the window a truncation can still hide in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from stratus.core.clock import as_utc

CHECKPOINT_KEY = "audit/checkpoint.json"
FORMAT = "stratus-audit-checkpoint/1"
_DOMAIN = b"stratus audit checkpoint\x00"


class CheckpointStore(Protocol):
    """Where checkpoints live: the object store (`storage.blobstore.BlobStore` is one)."""

    def read_small_object(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""

    def write_small_object(self, key: str, data: bytes) -> None:
        """Replace the object atomically."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    keyed_from: int | None  # the first entry hashed with the key (older ones: legacy hash)
    time: datetime

    def _fields(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "seq": self.seq,
            "hash": self.hash,
            "keyed_from": self.keyed_from,
            "time": as_utc(self.time).isoformat(timespec="microseconds"),
        }


class ForgedCheckpoint(Exception):
    """The stored checkpoint is unreadable or its signature does not match."""


def _mac(key: bytes, fields: dict[str, object]) -> str:
    raw = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, _DOMAIN + raw, hashlib.sha256).hexdigest()


def encode_checkpoint(key: bytes, checkpoint: Checkpoint) -> bytes:
    fields = checkpoint._fields()
    return json.dumps({**fields, "mac": _mac(key, fields)}, sort_keys=True).encode() + b"\n"


def decode_checkpoint(key: bytes, data: bytes) -> Checkpoint:
    """A checkpoint whose signature holds; ForgedCheckpoint otherwise."""
    try:
        document = json.loads(data)
        mac = document.pop("mac")
        if document.get("format") != FORMAT or not isinstance(mac, str):
            raise ValueError("not a checkpoint")
        seq, digest, keyed_from = document["seq"], document["hash"], document["keyed_from"]
        time = datetime.fromisoformat(document["time"])
        if not isinstance(seq, int) or not isinstance(digest, str):
            raise ValueError("bad fields")
        if keyed_from is not None and not isinstance(keyed_from, int):
            raise ValueError("bad fields")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ForgedCheckpoint(f"the audit checkpoint cannot be read ({exc})") from None
    checkpoint = Checkpoint(seq=seq, hash=digest, keyed_from=keyed_from, time=time)
    if not hmac.compare_digest(_mac(key, checkpoint._fields()), mac):
        raise ForgedCheckpoint(
            "the audit checkpoint in the object store fails its signature "
            "(forged, or written under another master key)"
        )
    return checkpoint
