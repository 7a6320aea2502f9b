"""From a credential to a Principal: API keys and login tokens, with a short-lived cache.

The cache keeps the inference path free of database reads; it lives `auth_cache_seconds`
and is cleared at once when IAM changes something in this process.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.errors import Unauthenticated
from stratus.core.token_buckets import Limit
from stratus.iam.credentials import (
    TokenSigner,
    looks_like_jwt,
    secret_matches,
    split_key,
)
from stratus.iam.errors import BAD_LOGIN
from stratus.iam.passwords import verify_password
from stratus.iam.principals import Principal
from stratus.iam.roles import PlatformRole, Role
from stratus.iam.tables import (
    ApiKeyRow,
    ProjectRow,
    RoleBindingRow,
    ServiceAccountRow,
    UserRow,
)

LAST_USED_GRANULARITY = timedelta(seconds=60)
INVALID = "the credential is not valid"


class Authenticator:
    def __init__(self, db: Database, signer: TokenSigner, cache_seconds: float) -> None:
        self.db = db
        self.signer = signer
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def cached(self, credential: str) -> Principal | None:
        """The principal of a credential verified less than `cache_seconds` ago, else None
        (no I/O: the inference gateway calls this on its event loop)."""
        entry = self._cache.get(hashlib.sha256(credential.encode()).hexdigest())
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return None

    def authenticate(self, credential: str) -> Principal:
        digest = hashlib.sha256(credential.encode()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        principal, expires_at = self._resolve(credential)
        ttl = self.cache_seconds
        if expires_at is not None:  # never trust a credential from the cache past its expiry
            ttl = min(ttl, (expires_at - utcnow()).total_seconds())
        if ttl > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now + ttl, principal)
        return principal

    def resolve(self, credential: str) -> tuple[Principal, datetime | None]:
        """The principal of a credential, and when the credential expires (None: never);
        Unauthenticated when it is not valid. Never cached: for signing in."""
        return self._resolve(credential)

    def _resolve(self, credential: str) -> tuple[Principal, datetime | None]:
        """The principal, and when the credential expires (None: never)."""
        parts = split_key(credential)
        if parts is not None:
            return self._from_key(*parts)
        if looks_like_jwt(credential):
            claims = self.signer.verify(credential)
            with self.db.transaction() as session:
                if claims.kind == "serviceaccount":
                    sa = session.get(ServiceAccountRow, claims.user_uid)
                    if sa is None or claims.project is None:
                        raise Unauthenticated(INVALID)
                    principal = self._account_principal(session, sa, claims.workload)
                    if principal.key_project != claims.project:
                        raise Unauthenticated(INVALID)
                    return principal, claims.expires_at
                user = session.get(UserRow, claims.user_uid)
                if user is None or user.disabled:
                    raise Unauthenticated(INVALID)
                principal = self._user_principal(session, user, claims.workload, claims.project)
                return principal, claims.expires_at
        raise Unauthenticated(INVALID)

    def _from_key(self, key_id: str, secret: str) -> tuple[Principal, datetime | None]:
        with self.db.transaction() as session:
            key = session.get(ApiKeyRow, key_id)
            if key is None or not secret_matches(secret, key.secret_hash):
                raise Unauthenticated(INVALID)
            now = utcnow()
            if key.revoked_at is not None:
                raise Unauthenticated(f"API key {key_id} has been revoked")
            if key.expires_at is not None and as_utc(key.expires_at) <= now:
                raise Unauthenticated(f"API key {key_id} expired at {as_utc(key.expires_at)}")
            project = session.get(ProjectRow, key.project_uid) if key.project_uid else None
            if key.user_uid is not None:
                user = session.get(UserRow, key.user_uid)
                if user is None or user.disabled:
                    raise Unauthenticated(f"the owner of API key {key_id} is disabled")
                principal = self._user_principal(
                    session, user, key_id, project.name if project else None
                )
            else:
                sa = session.get(ServiceAccountRow, key.service_account_uid)
                if sa is None or project is None:
                    raise Unauthenticated(INVALID)
                principal = self._account_principal(session, sa, key_id)
            limit = Limit.of(key.rate_limit_rps, key.rate_limit_burst)
            if limit is not None:
                principal = replace(principal, rate_limit=limit)
            stale = (
                key.last_used_at is None or now - as_utc(key.last_used_at) > LAST_USED_GRANULARITY
            )
            if stale:
                session.execute(
                    update(ApiKeyRow).where(ApiKeyRow.key_id == key_id).values(last_used_at=now)
                )
            return principal, as_utc(key.expires_at) if key.expires_at is not None else None

    @staticmethod
    def _account_principal(
        session: Session, sa: ServiceAccountRow, key_id: str | None
    ) -> Principal:
        project = session.get(ProjectRow, sa.project_uid)
        if project is None:
            raise Unauthenticated(INVALID)
        binding = session.scalar(
            select(RoleBindingRow).where(RoleBindingRow.service_account_uid == sa.uid)
        )
        roles = {project.name: Role(binding.role)} if binding else {}
        return Principal(
            kind="serviceaccount",
            uid=sa.uid,
            name=f"{project.name}/{sa.name}",
            roles=roles,
            key_project=project.name,
            key_id=key_id,
        )

    @staticmethod
    def _user_principal(
        session: Session, user: UserRow, key_id: str | None, key_project: str | None
    ) -> Principal:
        rows = session.execute(
            select(ProjectRow.name, RoleBindingRow.role)
            .join(ProjectRow, ProjectRow.uid == RoleBindingRow.project_uid)
            .where(RoleBindingRow.user_uid == user.uid)
        )
        return Principal(
            kind="user",
            uid=user.uid,
            name=user.name,
            is_admin=user.is_admin,
            platform_role=PlatformRole(user.platform_role) if user.platform_role else None,
            roles={name: Role(role) for name, role in rows},
            key_project=key_project,
            key_id=key_id,
        )

    def login(self, username: str, password: str) -> tuple[str, str]:
        """Check a password; return (token, expiry ISO time). Failures all say the same."""
        with self.db.transaction() as session:
            user = session.scalar(select(UserRow).where(UserRow.name == username))
            ok = verify_password(user.password_hash if user else None, password)
            if user is None or not ok or user.disabled:
                raise Unauthenticated(BAD_LOGIN)
            token, expires = self.signer.issue(user.uid, user.name)
        return token, expires.isoformat()
