"""Request size limits: a JSON body over the limit is a clear 413, declared or chunked."""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from stratus.testing import LocalPlatform


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
