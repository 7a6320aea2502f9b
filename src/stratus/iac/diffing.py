"""What differs between a live resource and its declaration: a pure, field-by-field diff of
two normalised documents (mappings of plain JSON values), as dotted paths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stratus.iac.schemas import FieldChange


def field_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = ""
) -> list[FieldChange]:
    """Every leaf that differs, in sorted path order: a key on one side only is a change from
    or to None; mappings are compared key by key, anything else (lists included) as a value."""
    changes: list[FieldChange] = []
    for key in sorted(set(before) | set(after)):
        path = f"{prefix}{key}"
        old, new = before.get(key), after.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            changes += field_changes(old, new, f"{path}.")
        elif old != new:
            changes.append(FieldChange(path=path, before=old, after=new))
    return changes
