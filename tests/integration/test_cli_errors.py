"""Start-up failures are one clear line, never a traceback; odd keys get a 400 that says why."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from stratus.testing import LocalPlatform, free_port


def _stratus(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stratus", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://nobody@127.0.0.1:{port}/x", "cannot reach the database"),
        ("mysql://x@127.0.0.1:1/x", "Stratus runs on SQLite and PostgreSQL"),
        ("not a url", "is not a database URL"),
    ],
)
def test_bad_database_is_one_line(tmp_path: Path, url: str, expected: str) -> None:
    # the closed port is picked when the test runs: test ids must be the same in every worker
    url = url.format(port=free_port())
    result = _stratus("db", "current", "--db", url, home=tmp_path)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_up_with_unreachable_database_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/x"
    result = _stratus("up", "--port", str(free_port()), "--db", url, home=tmp_path)
    assert result.returncode == 1
    assert "cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--backend", "nope"], "unknown compute backend 'nope'; choose one of: local"),
        (["--backend", "Bad Name"], "bad setting"),
    ],
    ids=["unknown", "malformed"],
)
def test_up_with_a_bad_backend_is_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    result = _stratus("up", "--port", str(free_port()), *args, home=tmp_path)
    assert result.returncode == 1, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("key", ["a\nb", "line\r\nbreak"])
def test_keys_with_line_breaks_are_a_400(platform: LocalPlatform, key: str) -> None:
    headers = {"authorization": f"Bearer {platform.api_key}"}
    bucket = f"lb-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=platform.url, headers=headers) as http:
        assert http.post("/api/v1/projects/default/buckets", json={"name": bucket}).is_success
        quoted = httpx.URL(f"/api/v1/projects/default/buckets/{bucket}/objects/").copy_with()
        response = http.put(
            str(quoted) + key.replace("\n", "%0A").replace("\r", "%0D"), content=b"x"
        )
        assert response.status_code == 400
        assert "control character" in response.json()["detail"]
