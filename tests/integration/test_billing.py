"""Cost end to end, as a user sees it: an endpoint and a training job run, and within a minute
`stratus cost report` shows what each cost (the endpoint per request, its idle time apart,
the job at its instance type's price), the SDK agrees, the Prometheus gauge has the month so
far, a viewer sees only their project, an admin replaces the price catalog and a non-admin may
not, and bad input is a clear 4xx."""

from __future__ import annotations

import csv
import io
import json
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from stratus.billing.prices import shipped_catalog
from stratus.billing.schemas import CostReport
from stratus.client import Client
from stratus.core.errors import BudgetExceeded, InvalidInput, PermissionDenied
from stratus.testing import LocalPlatform, WebhookReceiver

pytest.importorskip("sklearn")

VISIBLE_WITHIN = 60.0  # seconds: what docs/cost.md promises


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    home = tmp_path_factory.mktemp("billing-home")
    platform = LocalPlatform(
        home,
        env={
            "STRATUS_BILLING_METER_INTERVAL_SECONDS": "1",
            "STRATUS_COMPUTE_SCHEDULER_INTERVAL_SECONDS": "0.2",
            "STRATUS_MONITORING_ALLOWED_NOTIFICATION_NETWORKS": "127.0.0.0/8",
        },
    )
    platform.start()
    try:
        yield platform
    finally:
        platform.stop(timeout=60)


@pytest.fixture(scope="module")
def admin(platform: LocalPlatform) -> Iterator[Client]:
    with platform.client() as client:
        yield client


def until(what: str, check: Callable[[], Any], timeout: float = VISIBLE_WITHIN) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.2)


def test_an_endpoint_and_a_job_cost_what_the_catalog_says_within_a_minute(
    platform: LocalPlatform,
    admin: Client,
    tiny_model: Path,
    tmp_path: Path,
    run_cli: Callable[..., Any],
) -> None:
    project = f"cost-{uuid.uuid4().hex[:6]}"
    admin.projects.create(project)
    admin.models.push(tiny_model, "tiny", project=project)
    admin.endpoints.deploy(
        "scorer", "tiny", project=project, instance_type="cpu.medium", wait=True, timeout=120
    )
    url = f"{platform.url}/inference/{project}/scorer/predict"
    headers = {"Authorization": f"Bearer {platform.api_key}"}
    for _ in range(5):
        answer = httpx.post(url, json={"instances": [[0.0, 1.0]]}, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
    code = tmp_path / "code"
    code.mkdir()
    (code / "work.py").write_text(textwrap.dedent("import time\ntime.sleep(1.5)\n"))
    job = admin.jobs.run(
        code=code, entrypoint="work.py", instance_type="cpu.nano", project=project, name="work"
    )
    admin.jobs.wait(job.metadata.name, project=project, timeout=120)

    def served() -> CostReport | None:
        report = admin.cost.report(by="endpoint", project=project, granularity="total")
        lines = [line for line in report.lines if line.name == "scorer"]
        return report if lines and lines[0].requests >= 5 else None

    report = until("the endpoint's requests in its cost", served)
    line = next(line for line in report.lines if line.name == "scorer")
    medium = shipped_catalog().instance_types["cpu.medium"].on_demand
    assert 0 < line.cost <= line.instance_hours * medium * 1.0001
    assert line.cost == pytest.approx(line.instance_hours * medium, rel=1e-3)
    assert line.cost_per_request == pytest.approx(line.cost / line.requests, rel=1e-5)
    assert 0 <= line.idle_cost <= line.cost

    def trained() -> CostReport | None:
        found = admin.cost.report(by="job", project=project, granularity="total")
        return found if found.lines and found.lines[0].instance_hours > 0 else None

    jobs = until("the job's cost", trained)
    nano = shipped_catalog().instance_types["cpu.nano"].on_demand
    ran = admin.jobs.get("work", project=project).status
    assert jobs.lines[0].name == "work"
    assert jobs.lines[0].instance_hours * 3600 == pytest.approx(
        (ran.finished_at - ran.started_at).total_seconds(), abs=0.5
    )
    assert jobs.lines[0].cost == pytest.approx(jobs.lines[0].instance_hours * nano, rel=1e-3)

    by_project = admin.cost.report(project=project, granularity="total")
    # each total is rounded to 1e-9 (half a unit either way): three roundings apart at most
    assert by_project.total >= report.total + jobs.total - 3e-9
    assert by_project.forecast.projected >= by_project.forecast.to_date > 0

    env = platform.cli_env()
    table = run_cli("cost", "report", "--by", "endpoint", "-p", project, env=env)
    assert table.code == 0, table.stderr
    assert "scorer" in table.stdout and "forecast" in table.stdout
    as_csv = run_cli("cost", "report", "--by", "job", "-p", project, "-o", "csv", env=env)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert rows and rows[0]["name"] == "work" and float(rows[0]["cost"]) > 0
    as_json = run_cli("cost", "report", "-p", project, "-o", "json", "-g", "hour", env=env)
    assert json.loads(as_json.stdout)["lines"][0]["period"].endswith("+00:00")

    advice = run_cli("cost", "recommendations", "-p", project, "--days", "7", "-o", "json", env=env)
    assert advice.code == 0, advice.stderr
    assert json.loads(advice.stdout)["days"] == 7  # (a few minutes of use: little to say)
    table_advice = run_cli("cost", "recommendations", "-p", project, env=env)
    assert "a month in all" in table_advice.stdout

    metrics = httpx.get(f"{platform.url}/metrics", headers=headers, timeout=30).text
    gauge = [
        m
        for m in metrics.splitlines()
        if m.startswith("stratus_cost_month_to_date{") and f'project="{project}"' in m
    ]
    assert gauge and float(gauge[0].rsplit(" ", 1)[1]) > 0, gauge


def test_projects_see_only_their_own_costs(admin: Client, platform: LocalPlatform) -> None:
    mine = f"mine-{uuid.uuid4().hex[:6]}"
    admin.projects.create(mine)
    admin.service_accounts.create("reader", project=mine, role="viewer")
    key = admin.service_accounts.create_key("reader", project=mine).secret
    with Client(platform.url, api_key=key) as viewer:
        assert viewer.cost.report(project=mine).lines == []
        with pytest.raises(Exception, match="not found|may not|admin"):
            viewer.cost.report(project="default")
        with pytest.raises(Exception, match="admin"):
            viewer.cost.report(all_projects=True)
        with pytest.raises(PermissionDenied):
            viewer.prices.apply(shipped_catalog().model_dump(mode="json"))
        assert viewer.prices.get().version >= 1


def test_an_admin_replaces_the_price_catalog(
    admin: Client, platform: LocalPlatform, run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    before = admin.prices.get()
    listed = run_cli("prices", "list", "-o", "yaml", env=platform.cli_env())
    assert listed.code == 0, listed.stderr
    document = yaml.safe_load(listed.stdout)
    document["catalog"]["instance_types"]["cpu.small"]["on_demand"] = 0.05
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump(document))
    applied = run_cli("prices", "apply", "-f", str(path), env=platform.cli_env())
    assert applied.code == 0, applied.stderr
    after = admin.prices.get()
    assert after.version == before.version + 1
    assert after.catalog["instance_types"]["cpu.small"]["on_demand"] == 0.05
    assert admin.prices.get(before.version).catalog == before.catalog
    table = run_cli("prices", "list", env=platform.cli_env())
    assert "cpu.small" in table.stdout and "$0.05" in table.stdout
    bad = dict(after.catalog, storage_gib_month=-1)
    with pytest.raises(InvalidInput, match="storage_gib_month"):
        admin.prices.apply(bad)


def test_bad_report_requests_are_clear_4xx(admin: Client, platform: LocalPlatform) -> None:
    headers = {"Authorization": f"Bearer {platform.api_key}"}
    base = f"{platform.url}/api/v1/projects/default/cost/report"
    for params, words in [
        ({"by": "colour"}, "by"),
        ({"granularity": "week"}, "granularity"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-01-02", "to": "2026-01-01"}, "not after"),
    ]:
        answer = httpx.get(base, params=params, headers=headers, timeout=30)
        assert answer.status_code in (400, 422), answer.text
        assert words in answer.text, answer.text
    with pytest.raises(InvalidInput):
        admin.cost.report(by="colour")
    assert admin.endpoints is not None
    with pytest.raises(InvalidInput, match="instance type 'cpu.huge'"):
        admin.endpoints.deploy("sized", "tiny", instance_type="cpu.huge", project="default")


def _store_files(platform: LocalPlatform) -> int:
    return sum(1 for p in (platform.home / "store").rglob("*") if p.is_file())


def test_quotas_refuse_what_would_go_over_and_leave_nothing_behind(
    admin: Client,
    platform: LocalPlatform,
    tiny_model: Path,
    tmp_path: Path,
    run_cli: Callable[..., Any],
) -> None:
    project = f"quota-{uuid.uuid4().hex[:6]}"
    admin.projects.create(project)
    admin.models.push(tiny_model, "tiny", project=project)  # before the byte quota
    admin.buckets.create("raw", project=project)
    env = platform.cli_env()
    used = admin.quotas.get(project).used["stored_bytes"]
    given = run_cli(
        "quotas", "set", "-p", project, "--replicas", "2", "--vcpus", "3", "--jobs", "1",
        "--stored", str(int(used) + 1000), env=env,
    )  # fmt: skip
    assert given.code == 0, given.stderr
    assert "replicas" in given.stdout and "none" in given.stdout  # gpus: no limit

    # replicas: three asked, two allowed; nothing is created
    with pytest.raises(PermissionDenied) as refused:
        admin.endpoints.deploy("api", "tiny", replicas=3, project=project)
    message = str(refused.value)
    assert "quota of 2 replicas" in message and "0 in use" in message and "3 more" in message
    assert [e.metadata.name for e in admin.endpoints.list(project)] == []
    # two cpu.small (1 vCPU each) fit; a cpu.medium (2 vCPU) more would not (3 vCPU)
    admin.endpoints.deploy("api", "tiny", replicas=2, project=project)
    with pytest.raises(PermissionDenied, match=r"quota of 3 vCPUs \(vcpus\): 2 in use"):
        admin.endpoints.deploy(
            "api", "tiny", replicas=2, project=project, instance_type="cpu.medium"
        )
    with pytest.raises(PermissionDenied, match="replicas"):
        admin.endpoints.deploy(
            "api", "tiny", project=project, autoscaling={"min_replicas": 1, "max_replicas": 5}
        )
    spec = admin.endpoints.get("api", project).spec
    assert spec.revision == 1 and spec.variants[0].replicas == 2  # unchanged
    admin.endpoints.deploy("api", "tiny", replicas=1, project=project)  # shrinking is fine

    # jobs: one pending, queued or running at a time
    code = tmp_path / "code"
    code.mkdir()
    (code / "work.py").write_text("import time\ntime.sleep(30)\n")
    first = admin.jobs.run(
        code=code, entrypoint="work.py", instance_type="cpu.nano", project=project
    )
    with pytest.raises(PermissionDenied, match=r"quota of 1 queued or running jobs \(jobs\)"):
        admin.jobs.run(code=code, entrypoint="work.py", instance_type="cpu.nano", project=project)
    assert len(admin.jobs.list(project)) == 1
    admin.jobs.cancel(first.metadata.name, project=project)

    # bytes: an upload past the quota is refused, and its bytes are not kept
    files = _store_files(platform)
    with pytest.raises(PermissionDenied, match="stored_bytes"):
        admin.buckets.upload("raw", "big.bin", b"x" * 5000, project=project)
    assert admin.buckets.list_objects("raw", project=project).objects == []
    assert _store_files(platform) == files
    admin.buckets.upload("raw", "small.bin", b"x" * 500, project=project)

    shown = run_cli("quotas", "show", "-p", project, "-o", "json", env=env)
    read = json.loads(shown.stdout)
    assert read["limits"]["replicas"] == 2 and read["used"]["replicas"] == 1
    admin.service_accounts.create("watcher", project=project, role="viewer")
    key = admin.service_accounts.create_key("watcher", project=project).secret
    with Client(platform.url, api_key=key) as viewer:
        assert viewer.quotas.get(project).limits.jobs == 1
        with pytest.raises(PermissionDenied):
            viewer.quotas.set(project, replicas=100)
    lifted = run_cli("quotas", "set", "-p", project, "--unset", "replicas", env=env)
    assert lifted.code == 0, lifted.stderr
    assert admin.quotas.get(project).limits.replicas is None
    bad = httpx.put(
        f"{platform.url}/api/v1/projects/{project}/quotas",
        json={"replicas": -1, "colour": 1},
        headers={"Authorization": f"Bearer {platform.api_key}"},
        timeout=30,
    )
    assert bad.status_code in (400, 422) and "replicas" in bad.text and "colour" in bad.text
    admin.endpoints.delete("api", project=project)


def test_a_budget_alerts_its_channel_freezes_the_project_and_lifts_when_raised(
    admin: Client,
    platform: LocalPlatform,
    tiny_model: Path,
    tmp_path: Path,
    run_cli: Callable[..., Any],
) -> None:
    project = f"budget-{uuid.uuid4().hex[:6]}"
    admin.projects.create(project)
    admin.models.push(tiny_model, "tiny", project=project)
    env = platform.cli_env()
    with WebhookReceiver() as hooks:
        admin.alerts.channels.apply(project, name="ops", type="webhook", url=hooks.url + "/ops")
        # a cpu.xlarge replica costs about a tenth of a cent a second: spent within seconds
        made = run_cli(
            "budgets", "apply", "-p", project, "--amount", "0.0003", "--threshold", "50",
            "--threshold", "100", "--channel", "ops", "--action", "freeze", env=env,
        )  # fmt: skip
        assert made.code == 0, made.stderr
        admin.endpoints.deploy(
            "api", "tiny", project=project, instance_type="cpu.xlarge", wait=True, timeout=120
        )

        def told(percent: str) -> list[Any]:
            return [
                b
                for b in hooks.bodies("/ops")
                for alert in b.get("alerts", [])
                if alert["labels"].get("budget") == "monthly"
                and alert["labels"].get("percent") == percent
            ]

        until("the 50 % crossing at the channel", lambda: told("50"))
        until("the 100 % crossing at the channel", lambda: told("100"))
        budget = until(
            "the budget frozen",
            lambda: (b := admin.budgets.get("monthly", project)).status.frozen and b,
        )
        assert [c.percent for c in budget.status.crossed] == [50, 100]
        assert budget.status.spent >= 0.0003

        code = tmp_path / "code"
        code.mkdir()
        (code / "work.py").write_text("print('hi')\n")
        with pytest.raises(BudgetExceeded, match="has spent its budget 'monthly'"):
            admin.jobs.run(
                code=code, entrypoint="work.py", instance_type="cpu.nano", project=project
            )
        with pytest.raises(BudgetExceeded):
            admin.endpoints.deploy("more", "tiny", project=project)
        assert [j for j in admin.jobs.list(project)] == []
        shown = run_cli("budgets", "show", "monthly", "-p", project, env=env)
        assert "frozen since" in shown.stdout and "crossed 100%" in shown.stdout
        actions = {e.action for e in admin.audit.list(project=project, action="budgets.*")}
        assert "budgets.freeze" in actions

        raised = admin.budgets.apply(1000.0, channels=["ops"], action="freeze", project=project)
        assert raised.status.frozen is False  # evaluated at once
        job = admin.jobs.run(
            code=code, entrypoint="work.py", instance_type="cpu.nano", project=project
        )
        assert job.metadata.name
        assert "budgets.lift" in {
            e.action for e in admin.audit.list(project=project, action="budgets.*")
        }
        listed = run_cli("budgets", "list", "-p", project, "-o", "json", env=env)
        assert json.loads(listed.stdout)[0]["spec"]["amount"] == 1000.0
        with pytest.raises(InvalidInput, match="notification channel 'nope' not found"):
            admin.budgets.apply(10.0, channels=["nope"], project=project)
        admin.endpoints.delete("api", project=project)


def test_reservations_are_set_by_admins_and_priced_by_the_meter(
    admin: Client, platform: LocalPlatform, tiny_model: Path, run_cli: Callable[..., Any]
) -> None:
    project = f"reserved-{uuid.uuid4().hex[:6]}"
    admin.projects.create(project)
    env = platform.cli_env()
    made = run_cli("reservations", "set", "-p", project, "cpu.small=1", env=env)
    assert made.code == 0, made.stderr
    assert admin.reservations.get(project).instance_types == {"cpu.small": 1}
    bad = run_cli("reservations", "set", "-p", project, "cpu.huge=1", env=env)
    assert bad.code == 1 and "unknown instance type 'cpu.huge'" in bad.stderr
    admin.models.push(tiny_model, "tiny", project=project)
    admin.endpoints.deploy("api", "tiny", project=project, wait=True, timeout=120)

    def reserved_cost() -> CostReport | None:
        found = admin.cost.report(by="instance-type", project=project, granularity="total")
        return found if found.total > 0 else None

    found = until("the replica's cost", reserved_cost)
    line = found.lines[0]
    small = shipped_catalog().instance_types["cpu.small"]
    assert line.name == "cpu.small"
    assert line.cost == pytest.approx(line.instance_hours * small.reserved, rel=1e-3)
    admin.service_accounts.create("reader", project=project, role="owner")
    key = admin.service_accounts.create_key("reader", project=project).secret
    with Client(platform.url, api_key=key) as owner:
        with pytest.raises(PermissionDenied, match="only platform admins"):
            owner.reservations.set({"cpu.small": 5}, project)
        assert owner.reservations.get(project).instance_types == {"cpu.small": 1}
    admin.endpoints.delete("api", project=project)
