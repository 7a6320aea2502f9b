"""The one error hierarchy of Stratus, shared by the server and the SDK.

    StratusError                       (any failure Stratus reports; HTTP 500)
     ├── InvalidInput                  400  a request the server cannot accept
     │    ├── MethodNotAllowed         405  the path exists, not with this method
     │    └── PayloadTooLarge          413
     ├── Unauthenticated               401  no credential, or a bad one
     ├── PermissionDenied              403  authenticated, but not allowed
     ├── NotFound                      404  no such resource (or one you may not see)
     ├── RateLimited                   429  over a rate limit (Retry-After)
     ├── Conflict                      409  the resource's state forbids the change
     │    ├── AlreadyExists            409
     │    └── StaleResource            409  resource_version did not match
     ├── DataCorrupted                 500  stored bytes failed their integrity check
     ├── ServiceUnavailable            503  a dependency (database, store) is down
     │    └── StoreUnavailable         503  the object store does not answer (Retry-After)
     ├── GatewayTimeout                504  a model replica did not answer in time
     └── ReconcileError                     controllers only, never sent over HTTP
          ├── PermanentError                do not retry
          └── TemporaryError(delay)         retry after `delay` seconds

Every class carries its HTTP status and a stable `code`; `ERRORS` maps codes back to classes
so the SDK re-raises the same class from an RFC 9457 problem+json body. Services add their
own subclasses (e.g. the registry's `ModelLoadError`); each registers itself on definition,
and a code may belong to one class only.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

ERRORS: dict[str, type[StratusError]] = {}


class StratusError(Exception):
    """Base of every error Stratus reports."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        owner = ERRORS.get(cls.code)
        if owner is not None and owner.__qualname__ != cls.__qualname__:
            raise TypeError(f"error code {cls.code!r} is taken by {owner.__qualname__}")
        ERRORS[cls.code] = cls

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://stratus.dev/errors/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with this error's response."""
        return {}


ERRORS[StratusError.code] = StratusError  # first: the fallback for an unknown 5xx code


class InvalidInput(StratusError):
    status = 400
    code = "invalid-input"
    title = "Invalid input"


class PayloadTooLarge(InvalidInput):
    status = 413
    code = "payload-too-large"
    title = "Payload too large"


class MethodNotAllowed(InvalidInput):
    status = 405
    code = "method-not-allowed"
    title = "Method not allowed"


class Unauthenticated(StratusError):
    status = 401
    code = "unauthenticated"
    title = "Authentication required"


class PermissionDenied(StratusError):
    status = 403
    code = "permission-denied"
    title = "Permission denied"


class QuotaExceeded(PermissionDenied):
    """The change would take a project over one of its quotas (`quota`, `limit`, `in_use` and
    `requested` in the problem document)."""

    code = "quota-exceeded"
    title = "Quota exceeded"


class BudgetExceeded(PermissionDenied):
    """The project has spent a budget whose action freezes it: what adds capacity is refused
    (`budget`, `amount` and `spent` in the problem document)."""

    code = "budget-exceeded"
    title = "Budget exceeded"


class NotFound(StratusError):
    status = 404
    code = "not-found"
    title = "Not found"


DAY_SECONDS = 86400


class RateLimited(StratusError):
    """More requests than a limit allows: try again after `retry_after` seconds."""

    status = 429
    code = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: float = 1.0, **extra: Any) -> None:
        super().__init__(detail, **extra)
        wait = retry_after if math.isfinite(retry_after) else DAY_SECONDS
        self.retry_after = max(1, math.ceil(min(wait, DAY_SECONDS)))

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        return {**super().to_problem(instance), "retry_after": self.retry_after}

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}


class Conflict(StratusError):
    status = 409
    code = "conflict"
    title = "Conflict"


class AlreadyExists(Conflict):
    code = "already-exists"
    title = "Already exists"


class StaleResource(Conflict):
    code = "stale-resource"
    title = "Stale resource version"


class DataCorrupted(StratusError):
    status = 500
    code = "data-corrupted"
    title = "Stored data is corrupted"


class ServiceUnavailable(StratusError):
    status = 503
    code = "service-unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str, retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"retry-after": str(self.retry_after)}


class StoreUnavailable(ServiceUnavailable):
    """The object store refuses connections or does not answer in time: try again shortly."""

    code = "store-unavailable"
    title = "Object store unavailable"

    def __init__(self, detail: str, retry_after: int | None = 5, **extra: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extra)


class GatewayTimeout(StratusError):
    status = 504
    code = "gateway-timeout"
    title = "Gateway timeout"


class ReconcileError(StratusError):
    code = "reconcile-error"


class PermanentError(ReconcileError):
    code = "permanent-error"


class TemporaryError(ReconcileError):
    code = "temporary-error"

    def __init__(self, detail: str, delay: float = 1.0, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.delay = delay


def error_from_problem(status: int, body: dict[str, Any]) -> StratusError:
    """Rebuild the server's error from a problem+json body (used by the SDK)."""
    code = str(body.get("code", ""))
    cls = ERRORS.get(code)
    if cls is None:
        cls = next((c for c in ERRORS.values() if c.status == status), StratusError)
    detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
    known = {"type", "title", "status", "detail", "code", "instance"}
    extra = {k: v for k, v in body.items() if k not in known}
    return cls(detail, **extra)
