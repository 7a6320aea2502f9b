"""Storage's errors, in the words a user needs."""

from __future__ import annotations

from stratus.core.errors import NotFound


def object_not_found(bucket: str, key: str, version_id: str | None = None) -> NotFound:
    if version_id:
        return NotFound(f"version {version_id!r} of object {key!r} not found in bucket {bucket!r}")
    return NotFound(f"object {key!r} not found in bucket {bucket!r}")
