"""Password hashing with argon2id; verification is constant-time and rehashes old parameters."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from stratus.core.errors import InvalidInput

_hasher = PasswordHasher()
MIN_LENGTH = 8
# A fixed hash to verify against when the user does not exist, so timing does not leak it.
_DUMMY = _hasher.hash("stratus-no-such-user")


def check_strength(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"password must be at least {MIN_LENGTH} characters long")
    if len(password) > 1024:
        raise InvalidInput("password must be at most 1024 characters long")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(check_strength(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
