"""What differs between a live resource and its declaration: a pure, field-by-field diff of
two normalised documents (mappings of plain JSON values), as dotted paths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from stratus.iac.schemas import FieldChange


def field_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = ""
) -> list[FieldChange]:
    """Every leaf that differs, in sorted path order: a key on one side only is a change from
    or to None; mappings are compared key by key, lists of named mappings (variants, steps)
    name by name (`spec.variants[main].replicas`), anything else as a value."""
    changes: list[FieldChange] = []
    for key in sorted(set(before) | set(after)):
        path = f"{prefix}{key}"
        old, new = before.get(key), after.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            changes += field_changes(old, new, f"{path}.")
        elif old != new and _named(old) and _named(new) and _names(old) == _names(new):
            for left, right in zip(old, new, strict=True):
                changes += field_changes(left, right, f"{path}[{left['name']}].")
        elif old != new:
            changes.append(FieldChange(path=path, before=old, after=new))
    return changes


def _named(value: Any) -> TypeGuard[list[Mapping[str, Any]]]:
    """A list of mappings, each with a distinct `name`."""
    if not isinstance(value, list) or not value:
        return False
    if not all(isinstance(v, Mapping) and isinstance(v.get("name"), str) for v in value):
        return False
    return len({v["name"] for v in value}) == len(value)


def _names(value: list[Mapping[str, Any]]) -> list[str]:
    return [v["name"] for v in value]
