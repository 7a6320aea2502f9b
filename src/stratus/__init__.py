"""Stratus: a self-hosted cloud for the machine-learning lifecycle.

The public SDK: `stratus.Client`, what it returns from a prediction (`stratus.Prediction`),
the error classes it raises (`stratus.errors`), experiment tracking for training code
(`stratus.tracking`), and checkpoints for code that runs as a training job (`stratus.training`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from stratus import errors
from stratus._version import __version__
from stratus.errors import (
    AlreadyExists,
    Conflict,
    DataCorrupted,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    StaleResource,
    StratusError,
    Unauthenticated,
)

if TYPE_CHECKING:
    from stratus import tracking, training
    from stratus.client import Client, Prediction

__all__ = [
    "AlreadyExists",
    "Client",
    "Conflict",
    "DataCorrupted",
    "InvalidInput",
    "NotFound",
    "PermissionDenied",
    "Prediction",
    "ServiceUnavailable",
    "StaleResource",
    "StratusError",
    "Unauthenticated",
    "__version__",
    "errors",
    "tracking",
    "training",
]


def __getattr__(name: str) -> Any:
    """`Client`, `Prediction`, `tracking` and `training`, imported on first use: the `stratus`
    command imports this package for every command, `stratus --version` included, and the
    SDK and its schemas take a moment to import."""
    if name in ("Client", "Prediction"):
        import stratus.client

        return getattr(stratus.client, name)
    if name in ("tracking", "training"):
        return importlib.import_module(f"stratus.{name}")
    raise AttributeError(f"module 'stratus' has no attribute {name!r}")
