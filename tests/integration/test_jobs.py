"""Training jobs end to end on a platform with 2 vCPUs for jobs: the built-in trainer registers
a model with lineage; user code runs with its dataset and tracking run; a spot job preempted
for an on-demand one resumes from its checkpoint and ends with the same result as an
uninterrupted run; jobs queue for room; limits are enforced; cancel, kill -9 and bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stratus.client import Client
from stratus.core.errors import Conflict, InvalidInput, NotFound
from stratus.jobs.schemas import JobPhase, JobRead
from stratus.testing import LocalPlatform

pd = pytest.importorskip("pandas")
pytest.importorskip("sklearn")

JOB_TIMEOUT = 180.0
STEPS = 30


def expected_value(steps: int) -> int:
    value = 1
    for step in range(steps):
        value = (value * 31 + step) % 1_000_003
    return value


COUNTER = textwrap.dedent(
    """
    import os, sys, time
    from stratus import training
    import stratus.tracking as tracking

    steps, pause = int(sys.argv[1]), float(sys.argv[2])
    ckpt = training.checkpoint()
    state = ckpt.state or {"step": 0, "value": 1}
    print(f"attempt {os.environ['STRATUS_JOB_ATTEMPT']} starts at step {state['step']}", flush=True)
    with tracking.start_run() as run:
        for step in range(state["step"], steps):
            state["value"] = (state["value"] * 31 + step) % 1_000_003
            state["step"] = step + 1
            time.sleep(pause)
            run.log_metric("value", state["value"], step=step + 1)
            ckpt.save(state)
        run.log_metric("result", state["value"])
    print(f"result {state['value']}", flush=True)
    """
)


@pytest.fixture
def client(jobs_platform: LocalPlatform) -> Iterator[Client]:
    with jobs_platform.client() as c:
        yield c


@pytest.fixture
def project(client: Client) -> str:
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    client.projects.create(name)
    return name


@pytest.fixture
def counter(tmp_path: Path) -> Path:
    folder = tmp_path / "counter"
    folder.mkdir()
    (folder / "count.py").write_text(COUNTER)
    return folder


def wait_for(
    client: Client, name: str, project: str, check: Callable[[JobRead], bool], what: str
) -> JobRead:
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        job = client.jobs.get(name, project)
        if check(job):
            return job
        if job.status.phase.finished:
            raise AssertionError(f"job {name} ended ({job.status.message}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"job {name}: no {what} within {JOB_TIMEOUT} s")


def log_of(client: Client, name: str, project: str) -> str:
    return b"".join(client.jobs.logs(name, project)).decode()


def finished(client: Client, name: str, project: str) -> JobRead:
    job = client.jobs.wait(name, project, timeout=JOB_TIMEOUT)
    return job


def push_cancer(client: Client, project: str, folder: Path) -> str:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.insert(0, "patient_id", [f"p{i}" for i in range(len(frame))])
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "cancer.csv", index=False)
    version = client.datasets.push(
        folder / "cancer.csv",
        "cancer",
        project=project,
        column_tags={"target": ["label"], "patient_id": ["id"]},
    )
    return f"cancer:{version.version}"


def test_the_builtin_trainer_registers_a_model_with_its_lineage(
    client: Client, project: str, tmp_path: Path
) -> None:
    dataset = push_cancer(client, project, tmp_path)
    job = client.jobs.run(
        trainer={
            "estimator": "sklearn.linear_model.LogisticRegression",
            "params": {"max_iter": 5000},
        },
        dataset="cancer",
        model="cancer",
        experiment="cancer",
        project=project,
    )
    assert job.spec.dataset == dataset  # pinned at submit
    done = finished(client, job.metadata.name, project)
    assert done.status.phase == JobPhase.succeeded, done.status.message
    assert done.status.model_version == "cancer:1"
    assert done.status.metrics["accuracy"] > 0.9 and "roc_auc" in done.status.metrics
    assert done.status.limits.enforced_by in ("cgroup-v2", "rlimit+affinity", "rlimit")
    assert done.status.cost > 0 and done.status.attempts == 1

    version = client.models.version("cancer:1", project=project)
    assert version.lineage.dataset_version == dataset
    assert version.lineage.training_run == done.status.run_id
    assert (version.lineage.source_commit or "").startswith("trainer:")
    assert version.metrics["accuracy"] == pytest.approx(done.status.metrics["accuracy"])
    assert "patient_id" not in {c["name"] for c in (version.signature or {}).get("inputs", [])}
    run = client.experiments.run(done.status.run_id or "", project)
    assert run.state == "finished" and run.params["estimator"].endswith("LogisticRegression")

    text = log_of(client, job.metadata.name, project)
    assert "training sklearn.linear_model.LogisticRegression on" in text
    assert "registered model cancer:1" in text


def test_a_spot_job_preempted_for_an_on_demand_job_resumes_to_the_same_result(
    client: Client, project: str, counter: Path
) -> None:
    spot = client.jobs.run(
        code=counter,
        entrypoint="count.py",
        args=[str(STEPS), "0.15"],
        instance_type="cpu.medium",  # 2 vCPU: the whole capacity
        spot=True,
        grace_seconds=20,
        project=project,
    )
    name = spot.metadata.name
    wait_for(
        client,
        name,
        project,
        lambda j: j.status.checkpoint is not None and (j.status.checkpoint.step or 0) >= 5,
        "checkpoint at step 5",
    )
    urgent = client.jobs.run(code=counter, entrypoint="count.py", args=["3", "0"], project=project)
    preempted = wait_for(client, name, project, lambda j: j.status.preemptions == 1, "preemption")
    assert preempted.status.phase in (JobPhase.queued, JobPhase.running)
    first = finished(client, urgent.metadata.name, project)
    assert first.status.phase == JobPhase.succeeded, first.status.message
    done = finished(client, name, project)
    assert done.status.phase == JobPhase.succeeded, done.status.message
    assert (done.status.attempts, done.status.preemptions) == (2, 1)
    assert done.status.metrics["result"] == expected_value(STEPS)  # as if never interrupted
    text = log_of(client, name, project)
    assert "attempt 1 starts at step 0" in text
    resumed = int(text.split("attempt 2 starts at step ")[1].split()[0])
    assert 5 <= resumed < STEPS  # it did not start over
    assert "resumed from the last checkpoint" in text
    history = client.experiments.run(done.status.run_id or "", project)
    assert history.state == "finished"  # one run across both attempts


def test_jobs_queue_when_the_capacity_is_used(client: Client, project: str, counter: Path) -> None:
    first = client.jobs.run(
        code=counter, entrypoint="count.py", args=["8", "0.2"], instance_type="cpu.medium",
        project=project,
    )  # fmt: skip
    wait_for(client, first.metadata.name, project, lambda j: j.status.phase == "running", "start")
    second = client.jobs.run(
        code=counter, entrypoint="count.py", args=["2", "0"], instance_type="cpu.small",
        project=project,
    )  # fmt: skip
    time.sleep(1.0)
    waiting = client.jobs.get(second.metadata.name, project)
    assert waiting.status.phase == JobPhase.queued  # on-demand never preempts on-demand
    assert finished(client, first.metadata.name, project).status.phase == JobPhase.succeeded
    done = finished(client, second.metadata.name, project)
    assert done.status.phase == JobPhase.succeeded
    ended = client.jobs.get(first.metadata.name, project).status.finished_at
    assert done.status.started_at is not None and ended is not None
    assert done.status.started_at >= ended


def test_the_memory_limit_is_enforced(client: Client, project: str, tmp_path: Path) -> None:
    folder = tmp_path / "hog"
    folder.mkdir()
    (folder / "hog.py").write_text(
        "import os\nprint('cpus', len(os.sched_getaffinity(0)), flush=True)\n"
        "blocks = [bytearray(64 * 2**20) for _ in range(32)]\nprint('survived', flush=True)\n"
    )
    job = client.jobs.run(code=folder, entrypoint="hog.py", instance_type="cpu.nano",
                          project=project)  # fmt: skip
    done = finished(client, job.metadata.name, project)
    assert done.status.phase == JobPhase.failed
    assert "out of memory" in done.status.message and "cpu.nano" in done.status.message
    text = log_of(client, job.metadata.name, project)
    assert "survived" not in text
    if done.status.limits.enforced_by != "cgroup-v2":
        assert "cpus 1" in text  # affinity: ceil(0.5) CPU


def test_cancel_and_kill_minus_9(client: Client, project: str, counter: Path) -> None:
    job = client.jobs.run(code=counter, entrypoint="count.py", args=["1000", "0.1"],
                          project=project)  # fmt: skip
    name = job.metadata.name
    wait_for(client, name, project, lambda j: j.status.checkpoint is not None, "a checkpoint")
    cancelled = client.jobs.cancel(name, project)
    assert cancelled.status.phase == JobPhase.running  # stopping
    done = finished(client, name, project)
    assert done.status.phase == JobPhase.cancelled
    with pytest.raises(Conflict, match="already cancelled"):
        client.jobs.cancel(name, project)

    victim = client.jobs.run(code=counter, entrypoint="count.py", args=["1000", "0.1"],
                             project=project)  # fmt: skip
    running = wait_for(
        client, victim.metadata.name, project, lambda j: j.status.phase == "running", "start"
    )
    assert running.status.phase == JobPhase.running
    assert running.status.node == socket.gethostname()  # the local backend's one node
    pid = _pid_of(client, victim.metadata.name, project)
    os.killpg(pid, signal.SIGKILL)
    dead = finished(client, victim.metadata.name, project)
    assert dead.status.phase == JobPhase.failed and dead.status.node is None
    assert "SIGKILL" in dead.status.message or "gone" in dead.status.message
    client.jobs.delete(victim.metadata.name, project)
    with pytest.raises(NotFound):
        client.jobs.get(victim.metadata.name, project)


def _pid_of(client: Client, name: str, project: str) -> int:
    """The pid of the process running the job (its runner, found in /proc by its spec file)."""
    deadline = time.monotonic() + 30
    marker = f"/jobs/{client.jobs.get(name, project).metadata.uid}/runner.json"
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                return int(entry.name)
        time.sleep(0.2)
    raise AssertionError(f"no process runs job {name}")


def test_bad_jobs_are_clear_errors(client: Client, project: str, counter: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown instance type 'cpu.huge'"):
        client.jobs.run(code=counter, entrypoint="count.py", instance_type="cpu.huge",
                        project=project)  # fmt: skip
    with pytest.raises(InvalidInput, match="can never run here"):
        client.jobs.run(code=counter, entrypoint="count.py", instance_type="cpu.xlarge",
                        project=project)  # fmt: skip
    with pytest.raises(InvalidInput, match="not a file of"):
        client.jobs.run(code=counter, entrypoint="nope.py", project=project)
    with pytest.raises(InvalidInput, match="needs a `dataset`"):
        client.jobs.run(trainer={"estimator": "sklearn.linear_model.Ridge"}, project=project)
    with pytest.raises(NotFound):
        client.jobs.run(
            trainer={"estimator": "sklearn.linear_model.Ridge"}, dataset="ghost", project=project
        )
    assert client.jobs.list(project) == []  # nothing half-made


def test_a_failing_job_keeps_its_log_and_says_why(
    client: Client, project: str, tmp_path: Path
) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "main.py").write_text("print('before the crash', flush=True)\nraise SystemExit(3)\n")
    job = client.jobs.run(code=folder, entrypoint="main.py", max_retries=1, project=project)
    done = finished(client, job.metadata.name, project)
    assert (done.status.phase, done.status.exit_code, done.status.attempts) == (
        JobPhase.failed, 3, 2,
    )  # fmt: skip
    assert "exited with code 3" in done.status.message
    assert log_of(client, job.metadata.name, project).count("before the crash") == 2


def test_the_cli_runs_follows_lists_and_shows(
    jobs_platform: LocalPlatform, run_cli: Any, project: str, counter: Path, tmp_path: Path
) -> None:
    env = jobs_platform.cli_env()
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"name: cli-job\ncode: {counter.name}\nentrypoint: count.py\nargs: ['3', '0']\n"
        "instance_type: cpu.small\n"
    )
    (tmp_path / counter.name).exists() or (tmp_path / counter.name).symlink_to(counter)
    ran = run_cli("jobs", "run", "--file", str(spec), "--follow", "-p", project, env=env)
    assert ran.code == 0, ran.stderr
    assert "result" in ran.stdout and "succeeded" in ran.stderr
    listed = run_cli("jobs", "list", "-p", project, env=env)
    assert "cli-job" in listed.stdout and "succeeded" in listed.stdout
    shown = run_cli("jobs", "show", "cli-job", "-p", project, env=env)
    assert "enforced by" in shown.stdout
    as_json = run_cli("jobs", "show", "cli-job", "-p", project, "-o", "json", env=env)
    assert json.loads(as_json.stdout)["status"]["phase"] == "succeeded"
    logs = run_cli("jobs", "logs", "cli-job", "-p", project, env=env)
    assert "attempt 1 starts at step 0" in logs.stdout
    types = run_cli("jobs", "instance-types", env=env)
    assert "cpu.small" in types.stdout and "SPOT/H" in types.stdout
    bad = run_cli("jobs", "run", "-p", project, env=env)
    assert bad.code == 2
