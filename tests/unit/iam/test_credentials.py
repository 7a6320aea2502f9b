"""API keys and login tokens: shapes, hashing, signing, expiry and tampering."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import jwt
import pytest

from stratus.core.errors import InvalidInput, Unauthenticated
from stratus.iam.credentials import (
    KEY_PREFIX,
    TOKEN_ISSUER,
    NewKey,
    TokenSigner,
    derive_signing_key,
    generate_key,
    hash_secret,
    looks_like_jwt,
    secret_matches,
    split_key,
)
from stratus.iam.passwords import MIN_LENGTH, check_strength, hash_password, verify_password

KEY = derive_signing_key(b"k" * 32)

# --- API keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("stk_abc123_secret", ("abc123", "secret")),
        ("stk_abc_sec_ret_with_underscores", ("abc", "sec_ret_with_underscores")),
        ("stk_id_-_", ("id", "-_")),
    ],
)
def test_split_key(token: str, expected: tuple[str, str]) -> None:
    assert split_key(token) == expected


@pytest.mark.parametrize(
    "token",
    [
        "",
        "stk",
        "stk_",
        "stk_id",
        "stk_id_",
        "stk__secret",
        "sk_id_secret",
        "STK_id_secret",
        "xstk_id_secret",
        "eyJhbGciOi.eyJzdWIi.sig",
        "just-a-string",
    ],
)
def test_split_key_refuses_what_is_not_a_key(token: str) -> None:
    assert split_key(token) is None


def test_generated_keys_split_back() -> None:
    for _ in range(200):  # secrets may contain '_' and '-'
        key = generate_key()
        assert key.token.startswith(f"{KEY_PREFIX}_")
        assert split_key(key.token) == (key.key_id, key.secret)
        assert len(key.key_id) == 16 and "_" not in key.key_id
        assert len(key.secret) >= 43


def test_generated_keys_are_unique() -> None:
    keys = [generate_key() for _ in range(500)]
    assert len({k.key_id for k in keys}) == 500
    assert len({k.secret for k in keys}) == 500


def test_new_key_token_shape() -> None:
    assert NewKey("abc", "s3cr_t").token == "stk_abc_s3cr_t"


def test_secret_hash_is_sha256_hex() -> None:
    assert hash_secret("hello") == hashlib.sha256(b"hello").hexdigest()
    assert len(hash_secret("x")) == 64
    assert hash_secret("a") != hash_secret("b")


def test_secret_matches_only_the_right_secret() -> None:
    stored = hash_secret("right-secret")
    assert secret_matches("right-secret", stored)
    assert not secret_matches("wrong-secret", stored)
    assert not secret_matches("right-secret ", stored)
    assert not secret_matches("", stored)
    assert not secret_matches("right-secret", "")


# --- passwords -------------------------------------------------------------------------------


def test_password_hash_verifies_and_is_salted() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("$argon2id$")
    assert verify_password(first, "correct horse")
    assert not verify_password(first, "wrong horse")


def test_no_password_never_verifies() -> None:
    assert not verify_password(None, "stratus-no-such-user")
    assert not verify_password(None, "anything at all")
    assert not verify_password("not-a-hash", "anything")


@pytest.mark.parametrize("password", ["", "short", "x" * (MIN_LENGTH - 1), "x" * 1025])
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(InvalidInput, match="password must be"):
        check_strength(password)


# --- login tokens ----------------------------------------------------------------------------


def test_issue_and_verify() -> None:
    signer = TokenSigner(KEY, ttl_seconds=3600)
    token, expires = signer.issue("uid-1", "alice")
    assert looks_like_jwt(token)
    claims = signer.verify(token)
    assert claims.user_uid == "uid-1"
    assert claims.username == "alice"
    assert abs((claims.expires_at - expires).total_seconds()) < 1
    assert claims.expires_at.tzinfo is not None
    assert abs(expires.timestamp() - time.time() - 3600) < 5


def test_token_claims() -> None:
    token, _ = TokenSigner(KEY, 60).issue("uid-1", "alice")
    claims = jwt.decode(token, KEY, algorithms=["HS256"], issuer=TOKEN_ISSUER)
    assert claims["sub"] == "uid-1" and claims["name"] == "alice"
    assert claims["exp"] - claims["iat"] == 60


def test_workload_tokens_name_their_project_and_workload() -> None:
    signer = TokenSigner(KEY, ttl_seconds=60)
    token = signer.issue_workload("serviceaccount", "sa-1", "ci", "fraud", "job/train-1", 7200)
    claims = signer.verify(token)
    assert (claims.user_uid, claims.kind, claims.project, claims.workload) == (
        "sa-1", "serviceaccount", "fraud", "job/train-1",
    )  # fmt: skip
    assert abs(claims.expires_at.timestamp() - time.time() - 7200) < 5  # its own lifetime
    login, _ = signer.issue("uid-1", "alice")
    plain = signer.verify(login)
    assert (plain.kind, plain.project, plain.workload) == ("user", None, None)


def test_expired_token_is_refused() -> None:
    signer = TokenSigner(KEY, ttl_seconds=1)
    token, _ = signer.issue("uid-1", "alice")
    time.sleep(1.1)
    with pytest.raises(Unauthenticated, match="expired"):
        signer.verify(token)


def test_token_already_past_its_expiry_is_refused() -> None:
    token = jwt.encode(
        {"iss": TOKEN_ISSUER, "sub": "u", "exp": int(time.time()) - 10}, KEY, algorithm="HS256"
    )
    with pytest.raises(Unauthenticated, match="stratus login"):
        TokenSigner(KEY, 60).verify(token)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_tampered_payload_is_refused() -> None:
    signer = TokenSigner(KEY, 3600)
    token, _ = signer.issue("uid-1", "alice")
    header, payload, signature = token.split(".")
    claims = json.loads(_unb64(payload))
    claims["sub"] = "uid-of-the-admin"
    forged = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    with pytest.raises(Unauthenticated, match="not valid"):
        signer.verify(forged)


def test_tampered_signature_is_refused() -> None:
    signer = TokenSigner(KEY, 3600)
    token, _ = signer.issue("uid-1", "alice")
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    with pytest.raises(Unauthenticated):
        signer.verify(".".join([header, payload, flipped]))


def test_token_of_another_key_is_refused() -> None:
    token, _ = TokenSigner(derive_signing_key(b"o" * 32), 3600).issue("uid-1", "alice")
    with pytest.raises(Unauthenticated, match="not valid"):
        TokenSigner(KEY, 3600).verify(token)


def test_unsigned_token_is_refused() -> None:
    claims = {"iss": TOKEN_ISSUER, "sub": "uid-1", "exp": int(time.time()) + 60}
    token = jwt.encode(claims, key=None, algorithm="none")
    with pytest.raises(Unauthenticated):
        TokenSigner(KEY, 3600).verify(token)


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "someone-else", "sub": "u"},
        {"sub": "u"},  # no issuer
        {"iss": TOKEN_ISSUER},  # no subject
    ],
)
def test_tokens_missing_or_with_wrong_claims_are_refused(claims: dict[str, str]) -> None:
    token = jwt.encode({**claims, "exp": int(time.time()) + 60}, KEY, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        TokenSigner(KEY, 3600).verify(token)


def test_token_without_expiry_is_refused() -> None:
    token = jwt.encode({"iss": TOKEN_ISSUER, "sub": "u"}, KEY, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        TokenSigner(KEY, 3600).verify(token)


@pytest.mark.parametrize("garbage", ["a.b.c", "..", "not-a-token", ""])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(Unauthenticated):
        TokenSigner(KEY, 3600).verify(garbage)


def test_signing_key_derivation() -> None:
    assert derive_signing_key(b"m" * 32) == derive_signing_key(b"m" * 32)
    assert derive_signing_key(b"m" * 32) != derive_signing_key(b"n" * 32)
    assert len(KEY) == 32
    assert KEY != b"k" * 32  # derived, not the master key itself


@pytest.mark.parametrize(
    ("text", "expected"), [("a.b.c", True), ("stk_a_b", False), ("a.b", False), ("a.b.c.d", False)]
)
def test_looks_like_jwt(text: str, expected: bool) -> None:
    assert looks_like_jwt(text) is expected
