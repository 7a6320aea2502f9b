"""Rate limits: per API key, per caller in a project, per endpoint, and on failed logins.

Token buckets (`core.token_buckets`) held in this process: the gateway asks `Throttle` before
it forwards a request (a few dictionary lookups and one lock when a limit applies, nothing
when none does), the API's `authenticated` dependency before a route runs. A refusal is
`RateLimited` (429 with Retry-After) and is counted by scope through `on_limited` (a
Prometheus counter in the platform).

Logins are limited on failures only: each user, and each source address, may fail
`failures` times in `window_seconds`; past that, attempts are refused (429) before the
password is checked until the bucket fills again, and the moment a caller is locked out is
audited (`on_lockout`). A success clears the user's failures.

The buckets are per control plane: one gateway process enforces each limit exactly; should
several ever serve one platform, each must be given its share (`docs/security.md`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from stratus.core.errors import RateLimited
from stratus.core.ids import new_request_id
from stratus.core.token_buckets import Buckets, Limit
from stratus.iam.audit import AuditEntry, AuditLog
from stratus.iam.principals import Principal

OnLimited = Callable[[str, str, str], None]  # scope, project, endpoint


@dataclass(frozen=True)
class LoginLimits:
    failures_per_user: int = 5
    failures_per_address: int = 20
    window_seconds: float = 300.0

    def user(self) -> Limit:
        return Limit(self.failures_per_user / self.window_seconds, self.failures_per_user)

    def address(self) -> Limit:
        return Limit(self.failures_per_address / self.window_seconds, self.failures_per_address)


class Throttle:
    def __init__(
        self,
        *,
        login: LoginLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_limited: OnLimited | None = None,
        on_lockout: Callable[[str, str, str, int], None] | None = None,
    ) -> None:
        self.clock = clock
        self.login_limits = login or LoginLimits()
        self.on_limited = on_limited
        self.on_lockout = on_lockout  # (kind "user"|"address", who, source, failures)
        self._buckets = Buckets()
        self._failures = Buckets()
        self._projects: dict[str, Limit] = {}

    # --- requests ------------------------------------------------------------------------------

    def set_project_limits(self, limits: Mapping[str, Limit]) -> None:
        self._projects = dict(limits)

    def project_limit(self, project: str) -> Limit | None:
        return self._projects.get(project)

    def caller(self, principal: Principal, project: str | None = None, endpoint: str = "") -> None:
        """Count one request of `principal` (into `project`, if it is in one) against the
        key's own limit and the project's per-caller limit. Raises RateLimited."""
        limit = principal.rate_limit
        if limit is not None:
            wait = self._buckets.take(("key", principal.caller), limit, self.clock())
            if wait:
                self._refuse("key", project or "", endpoint)
                raise RateLimited(
                    f"API key {principal.key_id} is over its limit of {_rate(limit)}; "
                    f"retry in {wait:.2g} s",
                    retry_after=wait,
                )
        if project is not None:
            limit = self._projects.get(project)
            if limit is not None:
                wait = self._buckets.take(
                    ("project", project, principal.caller), limit, self.clock()
                )
                if wait:
                    self._refuse("project", project, endpoint)
                    raise RateLimited(
                        f"project {project!r} allows each caller {_rate(limit)}; "
                        f"retry in {wait:.2g} s",
                        retry_after=wait,
                    )

    def endpoint(self, project: str, endpoint: str, limit: Limit) -> None:
        """Count one request to an endpoint against its owner's limit. Raises RateLimited."""
        wait = self._buckets.take(("endpoint", project, endpoint), limit, self.clock())
        if wait:
            self._refuse("endpoint", project, endpoint)
            raise RateLimited(
                f"endpoint {endpoint!r} is over its limit of {_rate(limit)}; retry in {wait:.2g} s",
                retry_after=wait,
            )

    def _refuse(self, scope: str, project: str, endpoint: str) -> None:
        if self.on_limited is not None:
            self.on_limited(scope, project, endpoint)

    # --- logins --------------------------------------------------------------------------------

    def before_login(self, username: str, source: str) -> None:
        """Refuse a login attempt while the user or the source address is locked out."""
        now = self.clock()
        limits = self.login_limits
        for key, limit in (
            (("user", username), limits.user()),
            (("address", source), limits.address()),
        ):
            wait = self._failures.wait(key, limit, now)
            if wait:
                self._refuse("login", "", "")
                raise RateLimited(
                    f"too many failed logins from this {key[0]}; retry in {wait:.0f} s",
                    retry_after=wait,
                )

    def login_failed(self, username: str, source: str) -> None:
        now = self.clock()
        limits = self.login_limits
        for kind, who, limit, size in (
            ("user", username, limits.user(), limits.failures_per_user),
            ("address", source, limits.address(), limits.failures_per_address),
        ):
            self._failures.take((kind, who), limit, now)
            locked = self._failures.wait((kind, who), limit, now) > 0
            if locked and self.on_lockout is not None:
                self.on_lockout(kind, who, source, size)

    def login_succeeded(self, username: str) -> None:
        self._failures.drop(("user", username))


def audited_lockouts(audit: AuditLog) -> Callable[[str, str, str, int], None]:
    """`on_lockout` that writes each lockout to the audit log (the failed attempts before it
    are there already, one entry each)."""

    def lockout(kind: str, who: str, source: str, failures: int) -> None:
        audit.append(
            AuditEntry(
                actor=f"user:{who}" if kind == "user" else "anonymous",
                action="auth.lockout",
                resource="/api/v1/auth/login",
                project=None,
                outcome="denied",
                status_code=429,
                request_id=new_request_id(),
                source=source,
                details={"locked": kind, "failures": failures},
            )
        )

    return lockout


def _rate(limit: Limit) -> str:
    return f"{limit.rate:g} requests/s (burst {limit.burst})"
