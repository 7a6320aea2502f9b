"""The object store's credentials as platform secrets: a platform started with S3 credentials
in its environment keeps them as platform secrets (`stratus secrets set --platform`); started
again with no AWS credential anywhere (no variables, no files, no instance metadata) and
settings that name the secrets, it reads and writes the same S3 store; a name that is not set
stops the start with one line saying what to do. Only admins see platform secrets, never a
value."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.client import Client
from stratus.errors import PermissionDenied
from stratus.testing import LocalPlatform

pytestmark = pytest.mark.s3

NO_AWS = {  # nothing but the settings may give the credentials
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/config",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BY_NAME = {
    "STRATUS_STORE_S3_ACCESS_KEY_ID": "secret:S3_KEY_ID",
    "STRATUS_STORE_S3_SECRET_ACCESS_KEY": "secret:S3_SECRET",
}


def test_the_store_credentials_come_from_platform_secrets(
    tmp_path: Path, s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = f"stratus-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    store = {"store": f"s3://{bucket}/stratus", "s3_endpoint_url": s3_server.endpoint}
    home = tmp_path / "home"

    first = LocalPlatform(home, env=dict(s3_server.env), **store)
    with first, first.client() as admin:
        for name, value in (("S3_KEY_ID", "testing"), ("S3_SECRET", "testing")):
            made = admin.secrets.set(name, value, platform=True, description="the store")
            assert made.project is None and made.version == 1
        admin.buckets.create("b", project="default")
        admin.buckets.upload("b", "k", b"kept in S3", project="default")
        listed = httpx.get(
            f"{first.url}/api/v1/secrets", headers={"authorization": f"Bearer {first.api_key}"}
        )
        assert listed.status_code == 200 and "testing" not in listed.text
        assert {s.name for s in admin.secrets.list(platform=True)} == {"S3_KEY_ID", "S3_SECRET"}
        user = f"u-{uuid.uuid4().hex[:4]}"
        admin.users.create(user)
        key = admin.keys.create("k", user=user)
        with Client(first.url, key.secret) as stranger, pytest.raises(PermissionDenied):
            stranger.secrets.list(platform=True)

    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    again = LocalPlatform(home, env={**NO_AWS, **BY_NAME}, **store)
    with again, again.client() as admin:
        assert admin.buckets.read("b", "k", project="default") == b"kept in S3"
        admin.buckets.upload("b", "k2", b"written with the secret's key", project="default")

    missing = LocalPlatform(
        home,
        env={**NO_AWS, **BY_NAME, "STRATUS_STORE_S3_SECRET_ACCESS_KEY": "secret:NOPE"},
        **store,
    )
    with pytest.raises(RuntimeError, match="no platform secret 'NOPE'"):
        missing.start()
    missing.stop()
