"""Compute backends by name, each a small config and an implementation imported only when
chosen (the shape of `registry/flavors/`): `local` runs replicas and jobs as processes of this
machine; `ray` runs them on a Ray cluster (`stratus[ray]`).

`open_backend(name, options)` validates the backend's options with its own config class and
builds it; nothing else imports a backend's module, so `ray` is loaded only by a control plane
that uses it (the import-linter contract `ray-only-in-its-backend` says so).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel, ValidationError

from stratus.compute.backend import ComputeBackend
from stratus.core.errors import InvalidInput


@dataclass(frozen=True)
class BackendEntry:
    module: str
    config: str  # the pydantic config class in `module`
    backend: str  # the class built from it
    needs: str = ""  # the extra to install, when the backend needs one


#: name -> where its config and implementation live
BACKENDS: dict[str, BackendEntry] = {
    "local": BackendEntry("stratus.compute.local", "LocalBackendConfig", "LocalBackend"),
    "ray": BackendEntry(
        "stratus.compute.ray_backend", "RayBackendConfig", "RayBackend", needs="ray"
    ),
}


def backend_names() -> list[str]:
    return list(BACKENDS)


def open_backend(name: str, options: Mapping[str, Any]) -> ComputeBackend:
    """Build backend `name` from its options.

    Raises:
        InvalidInput: an unknown backend, options its config refuses, or a backend whose
            extra is not installed (the message says which to install).
    """
    entry = BACKENDS.get(name)
    if entry is None:
        raise InvalidInput(
            f"unknown compute backend {name!r}; choose one of: {', '.join(BACKENDS)}"
        )
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        hint = f": install it with pip install 'stratus[{entry.needs}]'" if entry.needs else ""
        raise InvalidInput(f"the {name} compute backend cannot load ({exc}){hint}") from exc
    config_class = cast(type[BaseModel], getattr(module, entry.config))
    try:
        config = config_class.model_validate(dict(options))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"bad settings for the {name} compute backend: {problems}") from None
    backend: ComputeBackend = getattr(module, entry.backend)(config)
    return backend
