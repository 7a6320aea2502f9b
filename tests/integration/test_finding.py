"""Finding things, as a user would: a list cut at its limit says so and how to see the rest,
`--since` takes `1h` as well as ISO times, platform admins list across projects (`-A`, with a
PROJECT column; anyone else gets a 403), a run names itself when it starts, and the job queue
gauge reads 0 rather than nothing."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import stratus.tracking as tracking
from stratus.client import Client
from stratus.testing import LocalPlatform

CliRunner = Callable[..., Any]  # the `cli` fixture: cli("audit", "list", ...) -> CliResult


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def plain(text: str) -> str:
    """A usage error's text without the panel Typer draws around it (and its line breaks)."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.fixture
def http(platform: LocalPlatform) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {platform.api_key}"}
    with httpx.Client(base_url=platform.url, headers=headers, timeout=30) as client:
        yield client


def test_a_cut_list_says_so_and_how_to_see_the_rest(admin: Client, cli: CliRunner) -> None:
    for _ in range(3):
        admin.projects.create(uniq("audited"))  # three more audit entries, at least
    cut = cli("audit", "list", "-n", "2", "-o", "json")
    assert cut.code == 0, cut.stderr
    assert len(json.loads(cut.stdout)) == 2  # stdout stays whole JSON
    assert "showing the first 2 entries; there are more" in cut.stderr
    assert "--limit N" in cut.stderr and "--all" in cut.stderr

    every = cli("audit", "list", "--all", "-o", "json")
    assert every.code == 0, every.stderr
    assert len(json.loads(every.stdout)) > 2 and "there are more" not in every.stderr
    enough = cli("audit", "list", "-n", str(len(json.loads(every.stdout)) + 10), "-o", "json")
    assert "there are more" not in enough.stderr


def test_since_takes_relative_and_iso_times(admin: Client, cli: CliRunner) -> None:
    project = uniq("since")
    admin.projects.create(project)
    recent = cli("audit", "list", "--since", "1h", "-p", project, "-o", "json")
    assert recent.code == 0, recent.stderr
    assert [e["action"] for e in json.loads(recent.stdout)] == ["projects.create"]
    for value in ("30m", "2d", "1w", "2020-01-01T00:00:00Z", "2020-01-01"):
        found = cli("audit", "list", "--since", value, "-p", project, "-o", "json")
        assert found.code == 0, (value, found.stderr)
        assert len(json.loads(found.stdout)) == 1, value
    future = cli("audit", "list", "--since", "2999-01-01T00:00:00Z", "-p", project, "-o", "json")
    assert json.loads(future.stdout) == []
    until = cli("audit", "list", "--until", "1w", "-p", project, "-o", "json")
    assert until.code == 0 and json.loads(until.stdout) == []

    bad = cli("audit", "list", "--since", "yesterday")
    assert bad.code == 2
    assert "'yesterday' is not a time ago (30s, 15m, 1h, 2d, 1w) or an ISO time" in plain(
        bad.stderr
    )
    bad = cli("monitors", "capture", "any-endpoint", "--since", "5 parsecs")
    assert bad.code == 2 and "is not a time ago" in plain(bad.stderr)


def test_admins_list_across_projects_and_others_get_a_403(
    admin: Client, platform: LocalPlatform, cli: CliRunner, http: httpx.Client
) -> None:
    first, second = uniq("across-a"), uniq("across-b")
    for project in (first, second):
        admin.projects.create(project)
        admin.buckets.create("shared-name", project=project)
    listed = cli("buckets", "list", "-A", "-o", "json")
    assert listed.code == 0, listed.stderr
    mine = [
        b["metadata"]["project"]
        for b in json.loads(listed.stdout)
        if b["metadata"]["project"] in (first, second)
    ]
    assert mine == [first, second]  # by project, then name
    table = cli("buckets", "list", "--all-projects")
    assert table.stdout.split()[0] == "PROJECT"
    assert any(line.split()[:2] == [first, "shared-name"] for line in table.stdout.splitlines())
    assert "PROJECT" not in cli("buckets", "list", "-p", first).stdout.split()[:1]

    # every list command takes -A; each kind's list runs across projects
    for command in (
        ("endpoints", "list"),
        ("models", "list"),
        ("data", "list"),
        ("jobs", "list"),
        ("pipelines", "list"),
        ("monitors", "list"),
        ("monitors", "list", "--endpoint", "nothing-here"),
        ("alerts", "list"),
        ("alerts", "channels", "list"),
        ("experiments", "list"),
    ):
        result = cli(*command, "-A", "-o", "json")
        assert result.code == 0, (command, result.stderr)
        assert isinstance(json.loads(result.stdout), list), command

    # pages across projects: each bucket once, in (project, name) order
    seen: list[tuple[str, str]] = []
    query: dict[str, Any] = {"limit": 1}
    while True:
        page = http.get("/api/v1/projects/-/buckets", params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [(b["metadata"]["project"], b["metadata"]["name"]) for b in body["items"]]
        if not body["next_page_token"]:
            break
        query["page_token"] = body["next_page_token"]
    assert seen == sorted(set(seen)) and (first, "shared-name") in seen
    bad_token = http.get("/api/v1/projects/-/buckets", params={"page_token": "MTI"})
    assert bad_token.status_code == 400

    # not an admin, or an admin's key restricted to one project: 403, clearly
    user = uniq("lister")
    admin.users.create(user, "correct-horse-battery")
    admin.projects.set_member(first, "owner", user=user)
    key = admin.keys.create(user=user).secret
    refused = cli("buckets", "list", "-A", api_key=key)
    assert refused.code == 1
    assert "only platform admins may list across every project" in refused.stderr
    assert cli("buckets", "list", "-p", first, api_key=key).code == 0
    restricted = admin.keys.create(project=first).secret
    answer = httpx.get(
        f"{platform.url}/api/v1/projects/-/endpoints",
        headers={"authorization": f"Bearer {restricted}"},
    )
    assert answer.status_code == 403 and "platform admins" in answer.json()["detail"]
    # '-' is only a list's: a single resource in project '-' is not found
    assert http.get("/api/v1/projects/-/buckets/shared-name").status_code == 404


def test_start_run_names_the_run_once_on_stderr_unless_quiet(
    admin: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    project = uniq("runs")
    admin.projects.create(project)
    capsys.readouterr()
    with tracking.start_run(experiment="loud", name="lr", client=admin, project=project) as run:
        run.log_metric("loss", 0.5)
    err = capsys.readouterr().err
    assert err.count(run.id) == 2  # one line: the id, and the command that shows it
    assert err.count("\n") == 1
    assert f"stratus experiments show {run.id} -p {project}" in err
    assert "'lr'" in err and "'loud'" in err
    with tracking.start_run(experiment="loud", client=admin, project=project, quiet=True):
        pass
    assert capsys.readouterr().err == ""


def test_the_job_queue_gauge_is_zero_for_a_project_without_jobs(
    admin: Client, http: httpx.Client
) -> None:
    project = uniq("gauges")
    admin.projects.create(project)
    wanted = f'stratus_job_queue_length{{project="{project}"}} 0.0'
    deadline = time.monotonic() + 60  # the gauges refresh every alert pass (5 s)
    while True:
        scraped = http.get("/metrics")
        assert scraped.status_code == 200
        if wanted in scraped.text:
            break
        assert time.monotonic() < deadline, f"{wanted!r} never appeared"
        time.sleep(0.2)
    assert 'stratus_job_queue_length{project="default"}' in scraped.text
    assert f'stratus_jobs{{project="{project}"' not in scraped.text  # no job, no job states
