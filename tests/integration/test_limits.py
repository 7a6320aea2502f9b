"""Request size limits and who may send a body: every body but an upload's is capped, whatever
its content type (a clear 413, declared or chunked); a caller without a valid credential is
refused before its body is read; uploads stream, whatever their content type."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import httpx
import pytest

from stratus.client import Client
from stratus.testing import LocalPlatform

MiB = 1 << 20


def _big_body() -> bytes:
    return b'{"name": "big", "description": "' + b"x" * (2 << 20) + b'"}'


def test_declared_json_body_over_limit_is_413(platform: LocalPlatform) -> None:
    headers = {"authorization": f"Bearer {platform.api_key}", "content-type": "application/json"}
    response = httpx.post(f"{platform.url}/api/v1/projects", content=_big_body(), headers=headers)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert "larger than" in response.json()["detail"]
    assert response.headers["x-request-id"]


def test_chunked_json_body_over_limit_is_413(platform: LocalPlatform) -> None:
    def chunks() -> Iterator[bytes]:
        body = _big_body()
        for i in range(0, len(body), 64 << 10):
            yield body[i : i + (64 << 10)]

    headers = {"authorization": f"Bearer {platform.api_key}", "content-type": "application/json"}
    response = httpx.post(f"{platform.url}/api/v1/projects", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert response.json()["code"] == "payload-too-large"


def test_small_json_body_is_fine(platform: LocalPlatform) -> None:
    headers = {"authorization": f"Bearer {platform.api_key}"}
    response = httpx.get(f"{platform.url}/api/v1/projects", headers=headers)
    assert response.status_code == 200


class CountingBody:
    """A large request body made as it is sent, counting the bytes the client pulled."""

    def __init__(self, total: int, piece: int = 64 << 10) -> None:
        self.total = total
        self.pulled = 0
        self._piece = b"x" * piece

    def __iter__(self) -> Iterator[bytes]:
        while self.pulled < self.total:
            chunk = self._piece[: self.total - self.pulled]
            self.pulled += len(chunk)
            yield chunk


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("credential", [None, "Bearer stk_nosuchkey_0123456789abcdef"])
def test_a_body_without_a_valid_credential_is_not_read(
    platform: LocalPlatform, declared: bool, credential: str | None
) -> None:
    """A 256 MiB text/plain body with no key (or a bad one) is answered 401 after at most what
    the sockets' buffers hold: the server never reads it (it used to read it whole, then 401)."""
    body = CountingBody(256 * MiB)
    headers = {"content-type": "text/plain"}
    if declared:
        headers["content-length"] = str(body.total)
    if credential:
        headers["authorization"] = credential
    response = httpx.post(
        f"{platform.url}/api/v1/projects", content=iter(body), headers=headers, timeout=60
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unauthenticated"
    assert response.headers["x-request-id"]
    assert body.pulled < 32 * MiB, f"the client sent {body.pulled} bytes before the 401"


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_any_content_type_over_limit_is_413(platform: LocalPlatform, declared: bool) -> None:
    """The cap holds whatever the content type (it used to apply to JSON only)."""
    body = CountingBody(64 * MiB)
    headers = {"authorization": f"Bearer {platform.api_key}", "content-type": "text/plain"}
    if declared:
        headers["content-length"] = str(body.total)
    response = httpx.post(
        f"{platform.url}/api/v1/projects", content=iter(body), headers=headers, timeout=60
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload-too-large"
    assert body.pulled < 32 * MiB


def test_a_public_route_caps_its_body_too(platform: LocalPlatform) -> None:
    """Login needs no credential, so its body is read, up to the cap and no further."""
    body = CountingBody(64 * MiB)
    response = httpx.post(
        f"{platform.url}/api/v1/auth/login",
        content=iter(body),
        headers={"content-type": "application/octet-stream"},
        timeout=60,
    )
    assert response.status_code == 413
    assert body.pulled < 32 * MiB


def test_an_upload_takes_any_content_type_and_size(platform: LocalPlatform, admin: Client) -> None:
    """An object over the body cap uploads whatever its content type, application/json
    included (S3 accepts it); it used to be refused 413 as an oversized JSON body."""
    project = f"lim-{uuid.uuid4().hex[:8]}"
    admin.projects.create(project)
    try:
        admin.buckets.create("b", project=project)
        data = b'{"rows": "' + b"y" * (3 * MiB) + b'"}'
        version = admin.buckets.upload(
            "b", "big.json", data, project=project, content_type="application/json"
        )
        assert version.size == len(data)
        assert version.sha256 == hashlib.sha256(data).hexdigest()
        chunked = admin.buckets.upload(
            "b", "chunked.json", iter([data]), project=project, content_type="application/json"
        )
        assert chunked.size == len(data)
        head = admin.buckets.head_object("b", "big.json", project=project)
        assert head["content-type"].startswith("application/json")
    finally:
        admin.buckets.delete("b", project=project, force=True)
        admin.projects.delete(project)


def test_an_upload_without_a_credential_is_refused(platform: LocalPlatform) -> None:
    body = CountingBody(64 * MiB)
    response = httpx.put(
        f"{platform.url}/api/v1/projects/default/buckets/b/objects/k",
        content=iter(body),
        headers={"content-type": "application/octet-stream"},
        timeout=60,
    )
    assert response.status_code == 401
    assert body.pulled < 32 * MiB
