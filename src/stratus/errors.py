"""The errors the SDK raises: the same classes the server raised (see `stratus.core.errors`)."""

from __future__ import annotations

from stratus.core.errors import (
    AlreadyExists,
    BudgetExceeded,
    Conflict,
    DataCorrupted,
    GatewayTimeout,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    StaleResource,
    StratusError,
    Unauthenticated,
)

__all__ = [
    "AlreadyExists",
    "BudgetExceeded",
    "Conflict",
    "DataCorrupted",
    "GatewayTimeout",
    "InvalidInput",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimited",
    "ServiceUnavailable",
    "StaleResource",
    "StratusError",
    "Unauthenticated",
]
