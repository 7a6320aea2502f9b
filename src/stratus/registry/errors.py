"""The registry's errors, in the words a user needs."""

from __future__ import annotations

from typing import Any

from stratus.core.errors import Conflict, NotFound


def version_not_found(model: str, ref: str) -> NotFound:
    return NotFound(f"model {model!r} has no version {ref!r}")


def rejected_version(model: str, number: int, verdict: dict[str, Any]) -> Conflict:
    """Why a rejected version may not get an alias or be deployed, and how to go on anyway."""
    source = verdict.get("source") or "a gate"
    reason = verdict.get("reason") or "no reason given"
    return Conflict(
        f"{model}:{number} was rejected by {source}: {reason}; an owner of the project may "
        f"accept it anyway (stratus models accept {model}:{number} --reason WHY)",
        verdict=verdict,
    )
