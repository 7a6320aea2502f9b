"""IAM's errors, in the words a user needs."""

from __future__ import annotations

from stratus.core.errors import NotFound, PermissionDenied, Unauthenticated

BAD_LOGIN = "invalid username or password"


def project_not_found(name: str) -> NotFound:
    # The same words whether the project is missing or merely hidden from the caller.
    return NotFound(f"project {name!r} not found")


def user_not_found(name: str) -> NotFound:
    return NotFound(f"user {name!r} not found")


def no_credential() -> Unauthenticated:
    return Unauthenticated(
        "this route needs a credential: send 'Authorization: Bearer <api key or token>'"
    )


def admins_only(what: str) -> PermissionDenied:
    return PermissionDenied(f"only platform admins may {what}")
