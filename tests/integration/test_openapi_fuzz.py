"""Fuzz the whole HTTP API from its own OpenAPI document, with schemathesis.

Every operation in `/api/v1/openapi.json` is called with generated input, valid and invalid
(odd path characters, boundary and huge numbers, garbage tokens and selectors, binary bodies,
methods a path does not have), as the admin; then the stateful phase chains operations by
their inferred links (create a project, then read, patch and delete it). The test fails on any
5xx and on any response whose status code, content type or body is not what the document says
for its operation; each failure is printed with its operation and a curl command to reproduce.

The run deletes and revokes freely, so it gets a platform of its own rather than the shared
one, on SQLite and on PostgreSQL (whose stricter types found bugs SQLite hides).
`openapi_fuzz_hooks.py` keeps the admin from locking itself out (see there). The CI profile is
quick and deterministic: the same cases on every run, in about a minute per backend; a deeper
one runs with the slow tests (`make test-all`).

To dig deeper by hand, start a platform (`stratus up`) and run the same command with more
examples and a random seed, e.g.
`schemathesis run URL/api/v1/openapi.json -H 'Authorization: Bearer KEY' -n 200 -w 1`
(with SCHEMATHESIS_HOOKS=tests/integration/openapi_fuzz_hooks.py and STRATUS_FUZZ_KEY_ID).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.iam.credentials import split_key
from stratus.testing import LocalPlatform

HOOKS = Path(__file__).with_name("openapi_fuzz_hooks.py")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "unsupported_method",  # a method the path lacks: 405 with an Allow header
)
# The CI profile: every phase on SQLite, with 5 examples per operation where a phase takes a
# number (the coverage phase's ~7,500 boundary and negative cases do not depend on it); the
# random phases only on PostgreSQL, whose stricter types are what it adds. The deep profile,
# behind the `slow` marker (`make test-all`), runs every phase on both with 25 examples.
QUICK, DEEP = 5, 25
ALL_PHASES = "examples,coverage,fuzzing,stateful"
QUICK_PHASES = {"sqlite": ALL_PHASES, "postgres": "examples,fuzzing,stateful"}
PROBLEM = "application/problem+json"


def _postgres_database(server_url: str) -> str:
    """A database of the fuzzer's own on the session's PostgreSQL server."""
    import psycopg

    name = f"stratus_fuzz_{uuid.uuid4().hex[:8]}"
    admin_url = server_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def fuzz_platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalPlatform]:
    """A platform of the fuzzer's own: nothing it deletes or revokes is seen by other tests."""
    db = None
    if request.param == "postgres":
        db = _postgres_database(request.getfixturevalue("postgres_url"))
    home = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    with LocalPlatform(home, db=db) as platform:
        yield platform


# --- the known sharp edges, asked directly: each was a 500 or a broken response once ----------


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


DEEP_TOKEN = _token(b"[" * 1400)  # json.loads hits the recursion limit
BUCKETS = "/api/v1/projects/default/buckets"
# id, method, path, httpx arguments, expected status (None: anything but a 5xx, as the SQLite
# and PostgreSQL backends answer differently, e.g. 404 or 400 for a NUL in a name)
EDGES: list[tuple[str, str, str, dict[str, Any], int | None]] = [
    ("deep-page-token", "GET", "/api/v1/projects", {"params": {"page_token": DEEP_TOKEN}}, 400),
    ("deep-audit-token", "GET", "/api/v1/audit", {"params": {"page_token": DEEP_TOKEN}}, 400),
    ("number-page-token", "GET", "/api/v1/users", {"params": {"page_token": _token(b"5")}}, 400),
    ("garbage-page-token", "GET", "/api/v1/projects", {"params": {"page_token": "%%%"}}, 400),
    ("huge-limit", "GET", "/api/v1/projects", {"params": {"limit": "9" * 30}}, 422),
    ("open-set-selector", "GET", "/api/v1/projects", {"params": {"selector": "a in (b"}}, 400),
    ("empty-term-selector", "GET", "/api/v1/projects", {"params": {"selector": "a=b,,c"}}, 400),
    ("exists-selector", "GET", "/api/v1/projects", {"params": {"selector": "team"}}, 200),
    ("not-selector", "GET", BUCKETS, {"params": {"selector": "!team,tier notin (x)"}}, 200),
    ("nul-selector", "GET", BUCKETS, {"params": {"selector": "a=\x00"}}, None),
    ("nul-path", "GET", "/api/v1/projects/a%00b", {}, None),
    ("nul-path-audited", "DELETE", "/api/v1/projects/a%00b", {}, None),
    ("nul-body", "POST", "/api/v1/projects", {"json": {"name": "n", "description": "\x00"}}, None),
    (
        "bad-object-content-type",  # it would be served back as the object's Content-Type
        "PUT",
        f"{BUCKETS}/none/objects/k",
        {"content": b"x", "headers": {"content-type": "not a media type"}},
        400,
    ),
    ("head-missing-object", "HEAD", f"{BUCKETS}/none/objects/k", {}, 404),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "expected"),
    [pytest.param(*edge[1:], id=edge[0]) for edge in EDGES],
)
def test_sharp_edges_are_answered_with_problems(
    fuzz_platform: LocalPlatform,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    expected: int | None,
) -> None:
    kwargs = dict(kwargs)
    headers = {"authorization": f"Bearer {fuzz_platform.api_key}", **kwargs.pop("headers", {})}
    with httpx.Client(base_url=fuzz_platform.url, timeout=30) as http:
        response = http.request(method, path, headers=headers, **kwargs)
    if expected is None:
        assert response.status_code < 500, response.text
    else:
        assert response.status_code == expected, response.text
    if response.status_code >= 400 and method != "HEAD":
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["detail"]


def test_405_names_every_method_of_the_path(fuzz_platform: LocalPlatform) -> None:
    headers = {"authorization": f"Bearer {fuzz_platform.api_key}"}
    response = httpx.put(f"{fuzz_platform.url}/api/v1/projects", headers=headers, timeout=30)
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["allow"] == "GET, POST"  # two routes: Starlette alone names one


# --- the fuzz run ----------------------------------------------------------------------------


def _schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("schemathesis is not installed (make install-dev)")
    return found


def _operations(platform: LocalPlatform) -> set[str]:
    document = httpx.get(f"{platform.url}/api/v1/openapi.json", timeout=30).json()
    return {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace")
    }


def _report(junit: Path) -> tuple[set[str], list[str]]:
    """The operations tested, and one block per failure: its operation, then the report."""
    tested, failures = set(), []
    for case in ET.parse(junit).getroot().iter("testcase"):
        tested.add(str(case.get("name")))
        for problem in [*case.iter("failure"), *case.iter("error")]:
            text = (problem.text or problem.get("message") or "").strip()
            failures.append(f"=== {case.get('name')} ===\n{text}")
    return tested, failures


def _server_log(platform: LocalPlatform) -> str:
    secrets = ("API key:", "admin password:")
    lines = platform.log_tail(80).splitlines()
    return "\n".join(line for line in lines if not any(s in line for s in secrets))


@pytest.mark.parametrize(
    "examples",
    [
        pytest.param(QUICK, id="quick", marks=pytest.mark.timeout(600)),
        pytest.param(DEEP, id="deep", marks=[pytest.mark.slow, pytest.mark.timeout(1800)]),
    ],
)
def test_openapi_fuzz(
    fuzz_platform: LocalPlatform, tmp_path: Path, examples: int, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.params["fuzz_platform"]
    phases = QUICK_PHASES[backend] if examples == QUICK else ALL_PHASES
    st = _schemathesis()
    api_key = fuzz_platform.api_key
    parts = split_key(api_key)
    assert parts is not None, "the bootstrap credential is not an API key"
    junit = tmp_path / "junit.xml"
    command = [
        st, "run", f"{fuzz_platform.url}/api/v1/openapi.json",
        "--header", f"Authorization: Bearer {api_key}",
        "--checks", ",".join(CHECKS),
        "--max-examples", str(examples),
        "--phases", phases,
        "--generation-deterministic",  # the same cases on every run, and no example database
        "--suppress-health-check", "all",  # they judge generation speed, not the API: no flakes
        "--workers", "1",  # Python 3.11's ast.parse is not thread-safe, and hypothesis uses it
        "--request-timeout", "30",
        "--report", "junit", "--report-junit-path", str(junit),
        "--no-color",
    ]  # fmt: skip
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(HOOKS),
        "STRATUS_FUZZ_ADMIN": "admin",
        "STRATUS_FUZZ_KEY_ID": parts[0],
    }
    # cwd: schemathesis writes its files there, and must not pick up a project config file.
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=560 if examples == QUICK else 1750,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert junit.exists(), f"schemathesis wrote no report (exit {run.returncode}):\n{output}"
    tested, failures = _report(junit)
    assert not failures, (
        f"{len(failures)} operation(s) failed the OpenAPI fuzz run:\n\n"
        + "\n\n".join(failures)
        + f"\n\n--- server log ---\n{_server_log(fuzz_platform)}"
    )
    assert run.returncode == 0, f"schemathesis exited with {run.returncode}:\n{output}"
    untested = _operations(fuzz_platform) - tested
    assert not untested, f"operations the run did not test: {sorted(untested)}\n{output}"
