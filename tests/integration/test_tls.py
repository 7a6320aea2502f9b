"""`stratus up --tls` end to end: a real control plane serving https from the local CA it made
in its home. The SDK and the CLI work over verified https (projects, buckets, objects, a
prediction, a training job whose runner and code reach the control plane over https); a client
that does not trust the CA gets one clear line; another machine's home trusts it with
`stratus login --ca-file`; SIGHUP loads a new certificate while a keep-alive connection stays
open, and refuses a bad one.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from stratus.api.tls import LocalFiles, ensure_local_certificates, server_names
from stratus.client import Client
from stratus.client.credentials import read_credentials
from stratus.core.errors import ServiceUnavailable
from stratus.testing import LocalPlatform, wait_for

pytest.importorskip("sklearn")  # the demo endpoint's model


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    home = tmp_path_factory.mktemp("tls-home")
    platform = LocalPlatform(
        home,
        tls=True,
        extra_args=["--demo", "--log-level", "info"],  # info: the reload's log line
        env={"STRATUS_COMPUTE_SCHEDULER_INTERVAL_SECONDS": "0.2"},
    )
    platform.start()
    try:
        yield platform
    finally:
        platform.stop(timeout=60)


@pytest.fixture
def client(platform: LocalPlatform) -> Iterator[Client]:
    with platform.client() as c:
        yield c


def test_the_first_start_made_a_ca_and_wrote_https_and_it_into_the_credentials(
    platform: LocalPlatform,
) -> None:
    files = LocalFiles(platform.home / "tls")
    for path in (files.ca, files.ca_key, files.cert, files.key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(files.folder.stat().st_mode) == 0o700
    creds = read_credentials(platform.home)
    assert creds is not None
    assert creds.url == platform.url and creds.url.startswith("https://127.0.0.1:")
    assert creds.ca_file == str(files.ca) == str(platform.ca_file)
    server = x509.load_pem_x509_certificate(files.cert.read_bytes())
    server.verify_directly_issued_by(x509.load_pem_x509_certificate(files.ca.read_bytes()))


def test_the_sdk_works_over_verified_https(client: Client, tmp_path: Path) -> None:
    assert client.url.startswith("https://") and client.ca_file
    client.projects.create("tls-sdk")
    client.buckets.create("raw", project="tls-sdk")
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(300_000))
    client.buckets.upload("raw", "a/data.bin", source, project="tls-sdk")
    target = tmp_path / "back.bin"
    client.buckets.download("raw", "a/data.bin", target, project="tls-sdk")
    assert target.read_bytes() == source.read_bytes()
    ready = wait_for("the demo endpoint", lambda: _ready(client), timeout=50)
    assert ready
    prediction = client.endpoints.predict("demo", [[0.1] * 30], project="default")
    assert len(prediction.predictions) == 1


def _ready(client: Client) -> bool:
    return client.endpoints.get("demo", "default").status.phase == "ready"


def test_the_cli_works_over_verified_https(platform: LocalPlatform, run_cli: Any) -> None:
    env = platform.cli_env()
    done = run_cli("status", "-o", "json", env=env)
    assert done.code == 0, done.stderr
    status = json.loads(done.stdout)
    assert (status["url"], status["you"]) == (platform.url, "user:admin")
    done = run_cli("projects", "create", "tls-cli", env=env)
    assert done.code == 0, done.stderr
    done = run_cli("projects", "list", "-o", "json", env=env)
    assert "tls-cli" in done.stdout
    # the credentials file alone (as `stratus up` wrote it) is enough: no STRATUS_CA_FILE
    done = run_cli("status", "-o", "json", env={"STRATUS_HOME": str(platform.home)})
    assert done.code == 0, done.stderr


def test_the_cli_predicts_over_https(platform: LocalPlatform, client: Client, run_cli: Any) -> None:
    wait_for("the demo endpoint", lambda: _ready(client), timeout=50)
    body = json.dumps({"instances": [[0.1] * 30]})
    done = run_cli("predict", "demo", "--json", body, "-o", "json", env=platform.cli_env())
    assert done.code == 0, done.stderr
    assert len(json.loads(done.stdout)["predictions"]) == 1


def test_a_client_without_the_ca_gets_one_clear_line(
    platform: LocalPlatform, run_cli: Any, tmp_path: Path
) -> None:
    with (
        Client(url=platform.url, api_key=platform.api_key, home=tmp_path) as c,
        pytest.raises(ServiceUnavailable) as caught,
    ):
        c.whoami()
    assert caught.value.detail.startswith(
        f"cannot verify the TLS certificate of Stratus at {platform.url} (unable to get local "
        "issuer certificate): trust the CA that signed it with `stratus login --ca-file"
    )
    env = {"STRATUS_URL": platform.url, "STRATUS_API_KEY": platform.api_key,
           "STRATUS_HOME": str(tmp_path)}  # fmt: skip
    done = run_cli("projects", "list", env=env)
    assert done.code == 1
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot verify the TLS certificate of Stratus at {platform.url}")


def test_another_machine_logs_in_with_a_copy_of_the_ca(
    platform: LocalPlatform, run_cli: Any, tmp_path: Path
) -> None:
    assert platform.ca_file is not None
    copy = tmp_path / "stratus-ca.pem"
    copy.write_bytes(platform.ca_file.read_bytes())
    laptop = tmp_path / "laptop"
    env = {"STRATUS_URL": platform.url, "STRATUS_HOME": str(laptop)}
    done = run_cli("login", "--api-key", platform.api_key, "--ca-file", str(copy), env=env)
    assert done.code == 0, done.stderr
    saved = read_credentials(laptop)
    assert saved is not None and saved.ca_file == str(copy)
    done = run_cli("status", "-o", "json", env={"STRATUS_HOME": str(laptop)})
    assert done.code == 0, done.stderr
    assert json.loads(done.stdout)["you"] == "user:admin"


TRAIN = textwrap.dedent(
    """
    import os
    import stratus
    import stratus.tracking as tracking

    with stratus.Client() as client:  # from the job's environment: https and its CA
        print("over", client.url.split(":")[0], "as", client.whoami().kind, flush=True)
    with tracking.start_run() as run:
        run.log_metric("loss", 0.5)
    """
)


def test_a_training_job_reaches_the_control_plane_over_https(
    client: Client, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(TRAIN)
    job = client.jobs.run(code=code, entrypoint="train.py", instance_type="cpu.nano")
    done = client.jobs.wait(job.metadata.name, timeout=50, interval=0.2)
    log = b"".join(client.jobs.logs(job.metadata.name)).decode(errors="replace")
    assert done.status.phase == "succeeded", f"{done.status.message}\n{log}"
    assert "over https as" in log


# --- SIGHUP ----------------------------------------------------------------------------------


def _serial(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    der = stream.get_extra_info("ssl_object").getpeercert(True)
    return int(x509.load_der_x509_certificate(der).serial_number)


def _local_port(response: httpx.Response) -> int:
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


def _fresh_serial(platform: LocalPlatform, verify: Any) -> int:
    with httpx.Client(verify=verify, timeout=10) as fresh:
        return _serial(fresh.get(f"{platform.url}/healthz"))


def _logged(platform: LocalPlatform, text: str) -> Callable[[], bool]:
    return lambda: text in platform.log_path.read_text(errors="replace")


def test_sighup_loads_a_new_certificate_and_keeps_open_connections(
    platform: LocalPlatform,
) -> None:
    verify = platform.verify
    files = LocalFiles(platform.home / "tls")
    old = x509.load_pem_x509_certificate(files.cert.read_bytes()).serial_number
    with httpx.Client(verify=verify, timeout=10) as kept:
        first = kept.get(f"{platform.url}/healthz")
        assert first.status_code == 200 and _serial(first) == old
        port = _local_port(first)

        files.cert.unlink()  # a new certificate from the same CA, as a renewal makes it
        ensure_local_certificates(files.folder, server_names("127.0.0.1"))
        new = x509.load_pem_x509_certificate(files.cert.read_bytes()).serial_number
        assert new != old
        os.kill(platform.pid, signal.SIGHUP)

        def reloaded() -> bool:
            # the kept connection is used all along (it stays open, and on the old certificate)
            again = kept.get(f"{platform.url}/healthz")
            assert again.status_code == 200
            assert (_local_port(again), _serial(again)) == (port, old)
            return _fresh_serial(platform, verify) == new

        wait_for("a new connection to see the new certificate", reloaded, timeout=20, interval=0.05)
        wait_for("the reload's log line", _logged(platform, f"serial {new:x}, was {old:x}"), 10)

        # a bad certificate is refused: the last good one is served on
        files.cert.write_text("not a certificate\n")
        os.kill(platform.pid, signal.SIGHUP)
        wait_for("the refusal's log line", _logged(platform, "TLS certificate not reloaded"), 10)
        assert _fresh_serial(platform, verify) == new
        assert kept.get(f"{platform.url}/healthz").status_code == 200
    assert platform.process is not None and platform.process.poll() is None
