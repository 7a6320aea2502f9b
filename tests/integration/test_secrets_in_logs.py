"""No credential reaches a log: a platform sends notifications (a webhook whose query holds a
token and whose header holds another, a Slack URL, an SMTP login, a target that answers an
error page, a header that names a project secret), takes logins (right and wrong passwords),
creates and uses an API key, and runs a job given a project secret (which proves it got it);
then every log it wrote — its output, every log file under its home, the job's own log and
the audit log — and the job's folder are searched for each secret, and for the error page's
text."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.client import Client
from stratus.core.errors import Unauthenticated
from stratus.testing import LocalPlatform, WebhookReceiver, free_port, wait_for

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")

TOKEN = "qu3ry-T0KEN-in-url"
HEADER = "h3ader-S3CRET-value"
SLACK = "sl4ck-PATH-s3cret"
SMTP_PASSWORD = "smtp-PA55-word"
USER_PASSWORD = "user-PA55-word-1"
WRONG_PASSWORD = "wrong-PA55-word-2"
ERROR_PAGE = "ERROR-PAGE-from-the-target"
PROJECT_SECRET = "pr0ject-S3CRET-for-jobs"
HOOK_SECRET = "h00k-S3CRET-by-name"
JOB = """
import hashlib, os
value = os.environ["WAREHOUSE_TOKEN"]
print("token", hashlib.sha256(value.encode()).hexdigest(), flush=True)
"""


def _answer(path: str) -> tuple[int, bytes]:
    """200 for every path but /broken, which answers 500 and an error page."""
    broken = path.startswith("/broken")
    return (500, f"<h1>{ERROR_PAGE}</h1>".encode()) if broken else (200, b"")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(answer=_answer) as hooks:
        yield hooks


@pytest.fixture
def mailbox() -> Iterator[tuple[int, list[Any]]]:
    """An SMTP server on 127.0.0.1 that takes any login (without TLS) and keeps messages."""
    from aiosmtpd.smtp import AuthResult

    messages: list[Any] = []
    logins: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            messages.append(envelope)
            return "250 OK"

    def authenticator(*args: Any) -> AuthResult:
        logins.append(args)
        return AuthResult(success=True)

    port = free_port()
    controller = aiosmtpd_controller.Controller(
        Handler(), hostname="127.0.0.1", port=port, auth_require_tls=False,
        authenticator=authenticator,
    )  # fmt: skip
    controller.start()
    try:
        yield port, messages
    finally:
        controller.stop()


def test_no_secret_reaches_a_log(
    tmp_path: Path, receiver: WebhookReceiver, mailbox: tuple[int, list[Any]]
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(JOB)
    url = receiver.url
    smtp_port, messages = mailbox
    platform = LocalPlatform(
        tmp_path / "home",
        extra_args=["--log-level", "debug"],  # the most a platform writes
    )
    secrets = [
        TOKEN, HEADER, SLACK, SMTP_PASSWORD, USER_PASSWORD, WRONG_PASSWORD, PROJECT_SECRET,
        HOOK_SECRET,
    ]  # fmt: skip
    try:
        platform.start()
        with platform.client() as sdk:
            sdk.projects.create("logs")
            sdk.secrets.set("WAREHOUSE_TOKEN", PROJECT_SECRET, project="logs")
            sdk.secrets.set("HOOK_TOKEN", HOOK_SECRET, project="logs")
            sdk.alerts.channels.apply(
                "logs", name="named", type="webhook", url=f"{url}/named",
                headers={"X-Token": "secret:HOOK_TOKEN"},
            )  # fmt: skip
            sdk.alerts.channels.apply(
                "logs", name="hook", type="webhook", url=f"{url}/hook?token={TOKEN}",
                headers={"Authorization": f"Bearer {HEADER}"},
            )  # fmt: skip
            sdk.alerts.channels.apply(
                "logs", name="chat", type="slack", url=f"{url}/services/T0/B0/{SLACK}"
            )
            sdk.alerts.channels.apply(
                "logs", name="mail", type="email", to=["oncall@example.com"],
                sender="stratus@example.com", smtp_host="127.0.0.1", smtp_port=smtp_port,
                starttls=False, username="stratus", password=SMTP_PASSWORD,
            )  # fmt: skip
            sdk.alerts.channels.apply(
                "logs", name="broken", type="webhook", url=f"{url}/broken?token={TOKEN}"
            )
            sdk.alerts.apply(
                "logs", name="always", metric="stratus_jobs", comparison=">=", threshold=0,
                channels=["hook", "chat", "mail", "broken", "named"],
            )  # fmt: skip
            # the test path (on the request's thread) ...
            tested = sdk.alerts.test("always", "logs")
            answers = {r.channel: r for r in tested.results}
            assert answers["hook"].ok and answers["chat"].ok and answers["mail"].ok, answers
            assert answers["named"].ok, answers
            named = [r for r in receiver.requests if r.path == "/named"]
            assert named and named[0].headers["x-token"] == HOOK_SECRET
            assert not answers["broken"].ok
            assert answers["broken"].detail == f"{url} answered HTTP 500"  # no error page
            # ... and the background path (an alert from Alertmanager naming the rule), with
            # retries of the broken one
            sdk.alerts.alertmanager(
                {
                    "version": "4",
                    "status": "firing",
                    "alerts": [
                        {
                            "status": "firing",
                            "labels": {"alertname": "always"},
                            "startsAt": "2026-01-01T00:00:00Z",
                        }
                    ],
                },
                "logs",
            )
            recorded = wait_for(
                "the firing notifications to be recorded",
                lambda: [
                    e
                    for e in sdk.alerts.history("logs", rule="always", state="firing")
                    if len(e.notifications) == 5
                ],
            )[0]
            assert [n.ok for n in recorded.notifications].count(False) == 1
            assert all(ERROR_PAGE not in (n.detail or "") for n in recorded.notifications)
            assert len(messages) >= 2 and any(
                r.path.startswith("/services/") for r in receiver.requests
            )

            # a job given a project secret: it gets the value, and prints only its digest
            job = sdk.jobs.run(
                code=code, entrypoint="train.py", secrets=["WAREHOUSE_TOKEN"], project="logs"
            )
            done = sdk.jobs.wait(job.metadata.name, "logs", timeout=120, interval=0.3)
            output = b"".join(sdk.jobs.logs(job.metadata.name, "logs")).decode()
            assert done.status.phase.value == "succeeded", output
            assert f"token {hashlib.sha256(PROJECT_SECRET.encode()).hexdigest()}" in output
            assert PROJECT_SECRET not in output
            assert PROJECT_SECRET not in job.model_dump_json()
            audit = sdk.audit.list(project="logs", limit=500)
            assert any(e.action == "secrets.set" for e in audit)
            audited = " ".join(e.model_dump_json() for e in audit)

            # logins, right and wrong
            sdk.users.create("alice", USER_PASSWORD)
            with Client(url=platform.url, api_key=None, home=tmp_path / "alice") as alice:
                alice.login("alice", USER_PASSWORD)
                with pytest.raises(Unauthenticated):
                    alice.login("alice", WRONG_PASSWORD)
            # a key: created, used, and a wrong one tried
            key = sdk.keys.create("ci").secret
            secrets += [key, key.split("_", 2)[2]]
            assert httpx.get(
                f"{platform.url}/api/v1/auth/whoami", headers={"authorization": f"Bearer {key}"}
            ).is_success
            forged = key[:-4] + "zzzz"
            secrets.append(forged.split("_", 2)[2])
            assert (
                httpx.get(
                    f"{platform.url}/api/v1/auth/whoami",
                    headers={"authorization": f"Bearer {forged}"},
                ).status_code
                == 401
            )
    finally:
        platform.stop()

    assert all(secret not in audited for secret in secrets)
    # the job's folder: its runner spec (read once, then rewritten without the secret) and all
    logs = {platform.log_path} | set(platform.home.rglob("*.log"))
    logs |= {p for p in (platform.home / "jobs").rglob("*") if p.is_file()}
    text = {path: path.read_text(errors="replace") for path in logs}
    # the failures were logged (by channel and status), just without what they must not say
    assert "notifying channel broken of logs/always failed" in text[platform.log_path]
    for path, content in text.items():
        for secret in [*secrets, ERROR_PAGE]:
            assert secret not in content, f"{secret!r} is in {path}"
