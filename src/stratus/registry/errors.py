"""The registry's errors, in the words a user needs."""

from __future__ import annotations

from stratus.core.errors import NotFound


def version_not_found(model: str, ref: str) -> NotFound:
    return NotFound(f"model {model!r} has no version {ref!r}")
