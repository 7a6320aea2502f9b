"""Fixtures: a shared control plane, throwaway PostgreSQL and S3 servers, and a CLI runner."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stratus.client import Client
from stratus.testing import LocalPlatform, PostgresMissing, free_port, throwaway_postgres


@pytest.fixture(scope="session")
def platform(stratus_platform: LocalPlatform) -> LocalPlatform:
    return stratus_platform


@pytest.fixture
def admin(platform: LocalPlatform) -> Iterator[Client]:
    with platform.client() as client:
        yield client


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, small model file (a skops LogisticRegression on inputs a and b): pushes are
    loaded before they are committed, so tests that only need some model push this one."""
    skops_io = pytest.importorskip("skops.io")
    from sklearn.linear_model import LogisticRegression

    path = tmp_path_factory.mktemp("tiny-model") / "model.skops"
    skops_io.dump(LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1]), path)
    return path


# --- a control plane in this process -----------------------------------------------------------


@pytest.fixture
def embedded_platform(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build, migrate and start `Platform`s in this process (a home under tmp_path; settings
    given as `load_settings` overrides); each is stopped at the end of the test."""
    from stratus.api.platform import Platform
    from stratus.core.settings import load_settings
    from stratus.migrations.runner import upgrade

    started: list[Platform] = []

    def build(**overrides: Any) -> Platform:
        settings = load_settings({"home": str(tmp_path / f"home{len(started) or ''}"), **overrides})
        settings.home.mkdir(parents=True)
        platform = Platform.build(settings, Platform.master_key(settings))
        upgrade(platform.db)
        platform.start()
        started.append(platform)
        return platform

    yield build
    for platform in reversed(started):
        platform.stop()


# --- the CLI, in-process ---------------------------------------------------------------------


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


CliRunner = Callable[..., CliResult]


_CLI_VARIABLES = (
    "STRATUS_HOME",
    "STRATUS_URL",
    "STRATUS_API_KEY",
    "STRATUS_PROJECT",
    "STRATUS_PROFILE",
    "STRATUS_CA_FILE",
)


@pytest.fixture
def run_cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """Run `stratus ARGS` in-process with exactly the STRATUS_* variables given in `env`."""
    from stratus.cli.main import run

    def invoke(*args: str, env: dict[str, str]) -> CliResult:
        for name in _CLI_VARIABLES:
            if name in env:
                monkeypatch.setenv(name, env[name])
            else:
                monkeypatch.delenv(name, raising=False)
        capsys.readouterr()
        try:
            run(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return invoke


@pytest.fixture
def cli(platform: LocalPlatform, run_cli: Callable[..., CliResult]) -> CliRunner:
    """Run `stratus ARGS` as a user would, against the shared platform."""

    def invoke(*args: str, api_key: str | None = None) -> CliResult:
        return run_cli(*args, env=platform.cli_env(api_key))

    return invoke


@pytest.fixture
def own_platform(tmp_path: Path) -> Iterator[LocalPlatform]:
    """A platform of this test's own (SQLite, local store), stopped by PID afterwards."""
    platform = LocalPlatform(tmp_path / "home")
    try:
        yield platform.start()
    finally:
        platform.stop()


@pytest.fixture(scope="module")
def jobs_platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalPlatform]:
    """A platform for a module's training jobs: 2 vCPU and 6 GiB for jobs, the scheduler
    looking every 0.2 s."""
    home = tmp_path_factory.mktemp(f"{request.module.__name__.rsplit('.', 1)[-1]}-home")
    platform = LocalPlatform(
        home,
        env={
            "STRATUS_COMPUTE_CAPACITY_VCPUS": "2",
            "STRATUS_COMPUTE_CAPACITY_MEMORY_GIB": "6",
            "STRATUS_COMPUTE_SCHEDULER_INTERVAL_SECONDS": "0.2",
        },
    )
    platform.start()
    try:
        yield platform
    finally:
        platform.stop(timeout=60)


# --- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1; yields a SQLAlchemy URL."""
    try:
        with throwaway_postgres() as url:
            yield url
    except PostgresMissing as exc:
        pytest.skip(str(exc))


# --- S3 (moto's server mode) -----------------------------------------------------------------

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Server:
    endpoint: str
    env: dict[str, str]

    def create_bucket(self, name: str) -> None:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        s3.create_bucket(Bucket=name)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """An S3-compatible server (moto) on 127.0.0.1, in a subprocess stopped by PID."""
    port = free_port()
    moto = shutil.which("moto_server", path=str(Path(os.sys.executable).parent))
    if moto is None:
        pytest.skip("moto_server is not installed")
    process = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **S3_ENV},
    )
    import httpx

    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                import time

                time.sleep(0.05)
        yield S3Server(endpoint=endpoint, env=dict(S3_ENV))
    finally:
        process.terminate()
        process.wait(10)


# --- Ray (tests marked `ray`): a real 3-node cluster on loopback addresses, see ray_cluster.py --

from ray_cluster import ray_cluster  # noqa: E402, F401
