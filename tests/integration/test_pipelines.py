"""Pipelines end to end with the worked example (examples/churn), as the README's tour runs it:
the first run validates, trains, evaluates, gates, registers and creates the endpoint; new
data starts a run by itself that canaries the new model under traffic and promotes it; a bad
batch stops at validation; a worse model is refused by the gate; a canary that breaks its
latency bound is rolled back; a failed run resumes from its failed step; the webhook starts a
run with its secret and refuses a wrong one; a step gets the project secrets it names."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.client import Client
from stratus.core.errors import Conflict, InvalidInput, Unauthenticated
from stratus.pipelines.schemas import RunRead, RunState, StepState, TriggerKind
from stratus.testing import LocalPlatform

pd = pytest.importorskip("pandas")
pytest.importorskip("sklearn")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "churn"
RUN_TIMEOUT = 300.0


def load_example_module() -> Any:
    spec = importlib.util.spec_from_file_location("churn_data", EXAMPLE / "make_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("churn-data")
    load_example_module().main(out)
    return out


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    home = tmp_path_factory.mktemp("pipelines-home")
    platform = LocalPlatform(
        home,
        env={
            "STRATUS_COMPUTE_CAPACITY_VCPUS": "2",
            "STRATUS_COMPUTE_SCHEDULER_INTERVAL_SECONDS": "0.3",
        },
    )
    platform.start()
    try:
        yield platform
    finally:
        platform.stop(timeout=60)


@pytest.fixture(scope="module")
def world(platform: LocalPlatform, data_dir: Path) -> Iterator[dict[str, Any]]:
    """A project with the churn data (train v1, holdout v1) and the example pipeline applied."""
    project = f"churn-{uuid.uuid4().hex[:6]}"
    with platform.client() as client:
        client.projects.create(project)
        client.datasets.push(
            data_dir / "train.csv", "churn", project=project,
            column_tags={"churned": ["label"], "customer_id": ["id"]},
        )  # fmt: skip
        client.datasets.push(data_dir / "holdout.csv", "churn-holdout", project=project)
        pipeline = client.pipelines.apply(EXAMPLE / "pipeline.yaml", project)
        yield {"project": project, "client": client, "secret": pipeline.webhook_secret}


def wait_run(client: Client, project: str, number: int) -> RunRead:
    return client.pipelines.wait("churn", number, project, timeout=RUN_TIMEOUT)


def steps(run: RunRead) -> dict[str, StepState]:
    return {step.name: step.state for step in run.steps}


def newest_run(client: Client, project: str, after: int) -> RunRead:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = client.pipelines.runs("churn", project)
        if runs and runs[0].number > after:
            return runs[0]
        time.sleep(0.3)
    raise AssertionError(f"no run after #{after} started")


class Traffic:
    """Requests to an endpoint from a thread, until stopped (bounded in count and time)."""

    def __init__(self, client: Client, project: str, endpoint: str, rows: list[dict[str, Any]]):
        self.url = f"{client.url}/inference/{project}/{endpoint}/predict"
        self.headers = {"authorization": f"Bearer {client.api_key}"}
        self.rows = rows
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._send, daemon=True)

    def _send(self) -> None:
        deadline = time.monotonic() + RUN_TIMEOUT
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set() and self.sent < 20_000 and time.monotonic() < deadline:
                row = self.rows[self.sent % len(self.rows)]
                try:
                    http.post(self.url, json={"instances": [row]}, headers=self.headers)
                except httpx.HTTPError:
                    pass
                self.sent += 1
                time.sleep(0.02)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=15)


def holdout_rows(data_dir: Path) -> list[dict[str, Any]]:
    frame = pd.read_csv(data_dir / "holdout.csv").head(50)
    columns = ["tenure_months", "monthly_charges", "support_calls", "contract", "plan"]
    return frame[columns].to_dict(orient="records")


def test_the_example_pipeline_end_to_end(world: dict[str, Any], data_dir: Path, cli: Any) -> None:
    client, project = world["client"], world["project"]

    # 1. A first run: every step; the endpoint is created with the model.
    first = client.pipelines.run("churn", project, reason="first model")
    done = wait_run(client, project, first.number)
    assert done.state == RunState.succeeded, done.message
    assert all(state == StepState.succeeded for state in steps(done).values())
    by_name = {s.name: s for s in done.steps}
    assert by_name["train"].outputs["model_version"] == "churn:1"
    assert by_name["evaluate"].outputs["metrics"]["accuracy"] > 0.8
    assert by_name["evaluate"].outputs["baseline_metrics"] is None  # nothing in production yet
    assert by_name["gate"].outputs["passed"] is True
    assert client.models.version("churn@production", project=project).version == 1
    assert client.models.version("churn@staging", project=project).version == 1
    endpoint = client.endpoints.get("churn-api", project=project)
    assert endpoint.status.phase == "ready"
    version = client.models.version("churn:1", project=project)
    assert version.lineage.dataset_version == f"churn:{done.datasets['churn']}"
    assert version.lineage.training_run == by_name["train"].outputs["run_id"]

    # 2. New data starts a run by itself; its model goes out as a canary under traffic and is
    #    promoted once it has answered enough requests within bounds.
    client.datasets.push(data_dir / "train-refresh.csv", "churn", project=project)
    second = newest_run(client, project, after=done.number)
    assert second.trigger == TriggerKind.dataset and second.datasets["churn"] == 2
    with Traffic(client, project, "churn-api", holdout_rows(data_dir)):
        promoted = wait_run(client, project, second.number)
    assert promoted.state == RunState.succeeded, promoted.message
    deploy = {s.name: s for s in promoted.steps}["deploy"]
    assert deploy.outputs["verdict"] == "promote" and deploy.outputs["canary"]["requests"] >= 30
    assert client.models.version("churn@production", project=project).version == 2
    served = client.endpoints.get("churn-api", project=project)
    assert [v.name for v in served.spec.variants] == ["main"]
    assert served.spec.variants[0].version == 2

    # 3. A bad batch: the run it starts stops at validation; nothing after it runs.
    client.datasets.push(data_dir / "train-bad.csv", "churn", project=project)
    third = newest_run(client, project, after=promoted.number)
    stopped = wait_run(client, project, third.number)
    assert stopped.state == RunState.failed
    assert steps(stopped)["validate"] == StepState.failed
    assert steps(stopped)["train"] == StepState.pending
    assert (
        "failed" in stopped.message
        and "tenure_months" in {s.name: s for s in stopped.steps}["validate"].message
    )

    # 4. A worse model: the gate refuses it; production does not change.
    client.pipelines.apply(EXAMPLE / "pipeline-weak.yaml", project)
    weak = client.pipelines.run("churn", project, datasets={"churn": 2})
    refused = wait_run(client, project, weak.number)
    assert refused.state == RunState.failed
    assert steps(refused)["gate"] == StepState.failed
    gate = {s.name: s for s in refused.steps}["gate"]
    assert "does not hold up against" in gate.message
    assert client.models.version("churn@production", project=project).version == 2
    #    The registry keeps the verdict: the candidate is `rejected`, with the failed checks;
    #    it gets no alias until an owner accepts it.
    weak_model = str({s.name: s for s in refused.steps}["train"].outputs["model_version"])
    rejected = client.models.version(weak_model, project=project)
    assert rejected.state == "rejected" and rejected.verdict is not None
    assert rejected.verdict.status == "rejected"
    assert "does not hold up against" in rejected.verdict.reason
    assert rejected.verdict.source == f"pipeline churn run {refused.number}, step gate"
    assert [c["text"] for c in rejected.verdict.checks if not c["passed"]]
    assert client.models.version("churn", project=project).version == 2  # latest passes it by
    with pytest.raises(Conflict, match=f"{weak_model} was rejected by pipeline churn"):
        client.models.set_alias("churn", "staging", rejected.version, project=project)
    listed = cli("models", "versions", "churn", "-p", project, "-o", "json")
    assert {v["version"]: v["state"] for v in json.loads(listed.stdout)}[rejected.version] == (
        "rejected"
    )
    accepted = cli("models", "accept", weak_model, "-r", "reviewed by hand", "-p", project)
    assert accepted.code == 0, accepted.stderr
    overridden = client.models.version(weak_model, project=project).verdict
    assert overridden is not None and overridden.status == "overridden"
    assert overridden.override_reason == "reviewed by hand"
    client.pipelines.apply(EXAMPLE / "pipeline.yaml", project)

    # 5. The CLI shows runs and logs.
    logs = client.pipelines.get_run("churn", refused.number, project)
    assert any("FAIL" in s.log for s in logs.steps if s.name == "gate")


def test_a_canary_out_of_bounds_is_rolled_back(world: dict[str, Any], data_dir: Path) -> None:
    client, project = world["client"], world["project"]
    before = client.endpoints.get("churn-api", project=project)
    serving = before.spec.variants[0].version
    candidate = 1 if serving != 1 else 2
    spec = {
        "name": "rollback-demo",
        "steps": [
            {"name": "pick", "type": "evaluate", "model": f"churn:{candidate}",
             "dataset": "churn-holdout", "label": "churned"},
            {"name": "deploy", "type": "deploy", "endpoint": "churn-api",
             "canary": {"traffic": 50, "min_requests": 20, "min_requests_for_errors": 5,
                        "max_p95_latency_ms": 0.001}},
        ],
    }  # fmt: skip
    client.pipelines.apply(spec, project)
    run = client.pipelines.run("rollback-demo", project)
    with Traffic(client, project, "churn-api", holdout_rows(data_dir)):
        done = client.pipelines.wait("rollback-demo", run.number, project, timeout=RUN_TIMEOUT)
    assert done.state == RunState.failed
    deploy = {s.name: s for s in done.steps}["deploy"]
    assert deploy.state == StepState.failed and deploy.outputs["verdict"] == "rollback"
    assert "rolled back" in deploy.message and "p95" in deploy.message
    after = client.endpoints.get("churn-api", project=project)
    assert [v.name for v in after.spec.variants] == ["main"]
    assert after.spec.variants[0].version == serving


def test_a_failed_run_resumes_from_the_failed_step(world: dict[str, Any], tmp_path: Path) -> None:
    client, project = world["client"], world["project"]
    code = tmp_path / "check"
    code.mkdir()
    (code / "check.py").write_text(
        "import stratus\n"
        "c = stratus.Client()\n"
        "c.datasets.version('approvals')  # fails (NotFound) until someone approves\n"
        "print('approved', flush=True)\n"
    )
    spec = tmp_path / "approval.yaml"
    spec.write_text(
        "name: approval\nsteps:\n"
        "  - {name: validate, type: validate, dataset: churn-holdout, rules: {rows: {min: 1}}}\n"
        f"  - {{name: check, type: custom, code: {code.name}, entrypoint: check.py}}\n"
    )
    client.pipelines.apply(spec, project)
    run = client.pipelines.run("approval", project)
    failed = client.pipelines.wait("approval", run.number, project, timeout=RUN_TIMEOUT)
    assert failed.state == RunState.failed and steps(failed)["check"] == StepState.failed
    approvals = tmp_path / "approvals.csv"
    approvals.write_text("run,approved\n1,yes\n")
    client.datasets.push(approvals, "approvals", project=project)
    client.pipelines.resume("approval", run.number, project)
    resumed = client.pipelines.wait("approval", run.number, project, timeout=RUN_TIMEOUT)
    assert resumed.state == RunState.succeeded, resumed.message
    by_name = {s.name: s for s in resumed.steps}
    assert by_name["validate"].attempts == 1  # kept, not run again
    assert by_name["check"].attempts == 2
    with pytest.raises(Exception, match="only a failed run resumes"):
        client.pipelines.resume("approval", run.number, project)


def test_a_custom_step_gets_the_secrets_it_names(world: dict[str, Any], tmp_path: Path) -> None:
    client, project = world["client"], world["project"]
    code = tmp_path / "uses-secret"
    code.mkdir()
    (code / "step.py").write_text(
        "import hashlib, os\n"
        "print('digest', hashlib.sha256(os.environ['API_TOKEN'].encode()).hexdigest())\n"
    )
    spec = tmp_path / "secretive.yaml"
    spec.write_text(
        "name: secretive\nsteps:\n"
        f"  - {{name: use, type: custom, code: {code.name}, entrypoint: step.py,"
        " secrets: [API_TOKEN=warehouse]}\n"
    )
    with pytest.raises(InvalidInput, match="has no secret warehouse"):
        client.pipelines.apply(spec, project)
    client.secrets.set("warehouse", "pipeline-s3cret", project=project)
    client.pipelines.apply(spec, project)
    run = client.pipelines.run("secretive", project)
    done = client.pipelines.wait("secretive", run.number, project, timeout=RUN_TIMEOUT)
    assert done.state == RunState.succeeded, done.message
    output = b"".join(client.jobs.logs(f"secretive-r{run.number}-use-1", project)).decode()
    assert f"digest {hashlib.sha256(b'pipeline-s3cret').hexdigest()}" in output
    assert "pipeline-s3cret" not in output


def test_the_webhook_starts_a_run_with_its_secret_only(world: dict[str, Any]) -> None:
    client, project = world["client"], world["project"]
    secret = client.pipelines.rotate_webhook("churn", project).webhook_secret
    assert secret and secret.startswith("whs_")
    with pytest.raises(Unauthenticated):
        client.pipelines.trigger_webhook("churn", "whs_wrong", project)
    with pytest.raises(Unauthenticated):
        client.pipelines.trigger_webhook("nope", secret, project)  # says no more than that
    run = client.pipelines.trigger_webhook(
        "churn", secret, project, ref="refs/heads/main", sha="abc123", datasets={"churn": 1}
    )
    assert run.trigger == TriggerKind.webhook and run.trigger_detail["sha"] == "abc123"
    assert run.datasets["churn"] == 1
    train = wait_step(client, project, run.number, "train")
    cancelled = client.pipelines.cancel("churn", run.number, project)
    assert cancelled.state == RunState.cancelled
    assert {s.name: s.state for s in cancelled.steps}["train"] == StepState.skipped
    job = client.jobs.wait(str(train.outputs["job"]), project, timeout=60)
    assert job.status.phase.value == "cancelled"  # the run's job stops with it


def wait_step(client: Client, project: str, number: int, name: str) -> Any:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        run = client.pipelines.get_run("churn", number, project)
        step = next(s for s in run.steps if s.name == name)
        if step.outputs.get("job"):
            return step
        assert not run.state.finished, run.message
        time.sleep(0.2)
    raise AssertionError(f"step {name} of run {number} never started its job")


def test_the_cli_waits_for_and_follows_triggered_runs(
    world: dict[str, Any], cli: Any, tmp_path: Path
) -> None:
    """What a script does after pushing data a pipeline watches: wait for the run it starts,
    then for its end; the exit code says how it ended."""
    client, project = world["client"], world["project"]
    client.pipelines.apply(
        {"name": "checked", "triggers": {"datasets": ["checked-data"]},
         "steps": [{"name": "validate", "type": "validate", "dataset": "checked-data",
                    "rules": {"columns": {"x": {"min": 0}}}}]},
        project,
    )  # fmt: skip
    nothing = cli("pipelines", "wait", "checked", "--next-run", "--timeout", "1", "-p", project)
    assert nothing.code == 1, (nothing.stdout, nothing.stderr)
    assert "error: pipeline 'checked': no run started within 1s (it has no runs)" in (
        nothing.stderr
    )

    since = datetime.now(UTC).isoformat()
    (tmp_path / "good.csv").write_text("x\n1\n2\n")
    client.datasets.push(tmp_path / "good.csv", "checked-data", project=project)
    good = cli("pipelines", "wait", "checked", "--since", since, "--trigger", "dataset",
               "--timeout", str(RUN_TIMEOUT), "-p", project)  # fmt: skip
    assert good.code == 0, (good.stdout, good.stderr)
    assert "run #1 of checked (dataset checked-data:1)" in good.stderr
    assert "✓ validate" in good.stderr
    assert good.stdout.startswith("checked run #1: succeeded (dataset)")

    (tmp_path / "bad.csv").write_text("x\n-1\n2\n")
    client.datasets.push(tmp_path / "bad.csv", "checked-data", project=project)
    # run 2 may not have started yet: --run waits for it to exist, then for its end
    bad = cli("pipelines", "wait", "checked", "--run", "2", "--timeout", str(RUN_TIMEOUT),
              "-p", project, "-o", "json")  # fmt: skip
    assert bad.code == 1, (bad.stdout, bad.stderr)
    assert json.loads(bad.stdout)["state"] == "failed"
    followed = cli("pipelines", "show", "checked", "--run", "2", "--follow", "-p", project)
    assert followed.code == 1, (followed.stdout, followed.stderr)
    assert "✗ validate" in followed.stderr and "run #2 failed" in followed.stderr
    assert followed.stdout.startswith("checked run #2: failed (dataset)")

    started = cli("pipelines", "run", "checked", "--dataset", "checked-data=1", "-p", project)
    assert started.code == 0 and "run #3 of checked started" in started.stdout, started.stderr
    newest = cli("pipelines", "show", "checked", "--follow", "-p", project)  # the newest run
    assert newest.code == 0, (newest.stdout, newest.stderr)
    assert "✓ validate" in newest.stderr and "run #3 succeeded" in newest.stderr
    manual = cli("pipelines", "wait", "checked", "--trigger", "manual", "--for", "started",
                 "-p", project, "-o", "json")  # fmt: skip
    assert manual.code == 0, manual.stderr
    assert json.loads(manual.stdout)["number"] == 3

    late = cli("pipelines", "wait", "checked", "--run", "9", "--timeout", "0.5", "-p", project)
    assert late.code == 1
    assert "run #9 did not start within 0.5s (the newest is #3)" in late.stderr
    usage = cli("pipelines", "wait", "checked", "--run", "2", "--next-run", "-p", project)
    assert usage.code == 2


def test_bad_specs_are_clear_errors(world: dict[str, Any], tmp_path: Path) -> None:
    client, project = world["client"], world["project"]
    bad_specs = [
        ({"name": "x", "steps": []}, "at least 1"),
        ({"name": "x", "steps": [{"name": "g", "type": "gate", "metrics": {"a": {"min": 1}}}]},
         "needs an evaluate step"),
        ({"name": "x", "steps": [{"name": "d", "type": "deploy", "endpoint": "e"}]},
         "needs a candidate model"),
        ({"name": "x", "triggers": {"schedule": "every day"},
          "steps": [{"name": "v", "type": "validate", "dataset": "churn", "rules": {}}]},
         "not a cron expression"),
        ({"name": "x", "steps": [{"name": "v", "type": "nope"}]}, "does not match any"),
    ]  # fmt: skip
    for spec, message in bad_specs:
        with pytest.raises(InvalidInput, match=message):
            client.pipelines.apply(spec, project)
    with pytest.raises(InvalidInput, match="not a file of"):
        (tmp_path / "c").mkdir()
        (tmp_path / "c" / "a.py").write_text("")
        client.pipelines.apply(
            {"name": "x", "steps": [{"name": "c", "type": "custom", "code": str(tmp_path / "c"),
                                     "entrypoint": "b.py"}]},
            project,
        )  # fmt: skip
    assert "x" not in {p.metadata.name for p in client.pipelines.list(project)}
