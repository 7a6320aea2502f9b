"""API keys and login tokens: how a caller proves who it is.

API keys look like `stk_<key_id>_<secret>`; the key id finds the row, the secret's SHA-256 is
compared in constant time (keys are long and random, so a fast hash is safe and keeps the
inference path cheap). Login tokens are short-lived JWTs signed with a key derived from the
platform's root secret, so they outlive a rotation of the master key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from stratus.core.clock import utcnow
from stratus.core.errors import Unauthenticated

KEY_PREFIX = "stk"
TOKEN_ISSUER = "stratus"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewKey:
    key_id: str
    secret: str

    @property
    def token(self) -> str:
        return f"{KEY_PREFIX}_{self.key_id}_{self.secret}"


def generate_key() -> NewKey:
    return NewKey(key_id=secrets.token_hex(8), secret=secrets.token_urlsafe(32))


def split_key(token: str) -> tuple[str, str] | None:
    """`stk_<id>_<secret>` → (id, secret); None when it is not shaped like an API key."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose, derived from `secret` (HKDF-SHA256; the platform's root
    secret, or the master key for its own check value): the same secret derives the same key,
    and keys of two purposes are unrelated."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
    return hkdf.derive(secret)


def derive_signing_key(secret: bytes) -> bytes:
    return derive_key(secret, "stratus token signing")


@dataclass(frozen=True)
class TokenClaims:
    user_uid: str  # the subject's uid: a user's, or a service account's for a workload
    username: str
    expires_at: datetime
    kind: str = "user"  # "user" or "serviceaccount"
    project: str | None = None  # a workload token works in this project only
    workload: str | None = None  # e.g. "job/<uid>": what the token was issued to


class TokenSigner:
    def __init__(self, signing_key: bytes, ttl_seconds: int) -> None:
        self._key = signing_key
        self.ttl = timedelta(seconds=ttl_seconds)

    def issue(self, user_uid: str, username: str) -> tuple[str, datetime]:
        now = utcnow()
        expires = now + self.ttl
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": user_uid,
            "name": username,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm="HS256"), expires

    def issue_workload(
        self, kind: str, uid: str, name: str, project: str, workload: str, ttl_seconds: int
    ) -> str:
        """A token for a workload (a training job) acting as its submitter, in one project
        only, for as long as the workload may run."""
        now = utcnow()
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": uid,
            "name": name,
            "knd": kind,
            "prj": project,
            "wkl": workload,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=ttl_seconds)).timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                issuer=TOKEN_ISSUER,
                options={"require": ["exp", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("the login token has expired: run `stratus login` again") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated("the credential is not valid") from exc
        project = claims.get("prj")
        return TokenClaims(
            user_uid=str(claims["sub"]),
            username=str(claims.get("name", "")),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=utcnow().tzinfo),
            kind=str(claims.get("knd", "user")),
            project=str(project) if project is not None else None,
            workload=str(claims["wkl"]) if claims.get("wkl") is not None else None,
        )


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2
