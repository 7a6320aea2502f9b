"""Batch inference end to end on a real control plane: `stratus batch-predict` scores every row
of a dataset version in a job, shows its progress, and commits a new dataset version with the
same rows, the predictions and its lineage; a job killed mid-way resumes after its last
finished batch (on the same node from its folder, elsewhere from its checkpoint); the SDK and a
pipeline step do the same, and bad requests are refused before anything runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratus.client import Client
from stratus.core.errors import Conflict, InvalidInput, NotFound
from stratus.jobs.schemas import JobPhase
from stratus.testing import LocalPlatform, wait_for

pd = pytest.importorskip("pandas")
pytest.importorskip("sklearn")

JOB_TIMEOUT = 180.0
ROWS = 20_000
PREDICTOR = """
import time


class Predictor:
    def predict(self, batch):
        time.sleep(float({delay!r}))
        m = batch.matrix()
        return m[:, 0] * 2 + m[:, 1]
"""


@pytest.fixture
def client(jobs_platform: LocalPlatform) -> Iterator[Client]:
    with jobs_platform.client() as c:
        yield c


@pytest.fixture(scope="module")
def world(jobs_platform: LocalPlatform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A project with dataset `rows` (id, a, b, label) and two models on inputs a and b: `slow`
    (python, 2a + b after a pause per batch) and `fast` (the same without the pause)."""
    folder = tmp_path_factory.mktemp("batch-world")
    project = f"batch-{uuid.uuid4().hex[:8]}"
    frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(ROWS)],
            "a": [float(i % 97) for i in range(ROWS)],
            "b": [float(i % 13) / 10 for i in range(ROWS)],
            "label": [i % 2 for i in range(ROWS)],
        }
    )
    frame.to_csv(folder / "rows.csv", index=False)
    with jobs_platform.client() as client:
        client.projects.create(project)
        client.datasets.push(
            folder / "rows.csv", "rows", project=project, column_tags={"label": ["label"]}
        )
        for name, delay in (("slow", 0.1), ("fast", 0.0)):
            model = folder / name
            model.mkdir()
            (model / "predictor.py").write_text(PREDICTOR.format(delay=delay))
            client.models.push(
                model, name, project=project, trusted=True, sample=frame[["a", "b"]].head(5)
            )
    return {"project": project, "frame": frame, "folder": folder}


def runner_of(name: str) -> tuple[int, Path] | None:
    """The pid and folder of the runner process of job `name`, if one runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"stratus.training.runner" not in argv or len(argv) < 4:
            continue
        spec = Path(argv[3].decode())
        try:
            if json.loads(spec.read_text())["job"] == name:
                return int(entry.name), spec.parent
        except (OSError, ValueError, KeyError):
            continue
    return None


def runner_after_a_few_batches(client: Client, name: str, project: str) -> tuple[int, Path]:
    """Wait until job `name` has done three batches of 500 rows; its runner's pid and folder."""
    wait_for(
        "a few batches done",
        lambda: (p := client.jobs.get(name, project).status.progress) and p.done >= 1500,
        60,
        0.05,
    )
    found = runner_of(name)
    assert found is not None
    return found


def log_of(client: Client, name: str, project: str) -> str:
    return b"".join(client.jobs.logs(name, project)).decode()


def check_output(client: Client, reference: str, world: dict[str, Any], job: str) -> None:
    version = client.datasets.version(reference, project=world["project"])
    assert version.rows == ROWS
    assert [c.name for c in version.columns] == ["id", "a", "b", "label", "prediction"]
    assert version.lineage is not None
    assert version.lineage.dataset_version == "rows:1" and version.lineage.job == job
    pulled = client.datasets.pull(reference, world["folder"] / reference.replace(":", "-"),
                                  project=world["project"])  # fmt: skip
    result = pd.concat(pd.read_parquet(p) for p in sorted(pulled.glob("*.parquet")))
    frame = world["frame"]
    assert result["id"].tolist() == frame["id"].tolist()  # every row once, in order
    assert result["prediction"].tolist() == (frame["a"] * 2 + frame["b"]).tolist()


def test_the_cli_scores_a_dataset_into_a_new_version_with_lineage(
    jobs_platform: LocalPlatform, client: Client, world: dict[str, Any], run_cli: Any
) -> None:
    project = world["project"]
    done = run_cli(
        "batch-predict", "fast", "--dataset", "rows", "--output-dataset", "scores",
        "--batch-rows", "3000", "--project", project, "--name", "score-cli",
        env=jobs_platform.cli_env(),
    )  # fmt: skip
    assert done.code == 0, done.stderr
    assert "predicting fast:1 on rows:1" in done.stderr
    assert "predictions: dataset scores:1" in done.stdout
    job = client.jobs.get("score-cli", project)
    assert job.status.phase == JobPhase.succeeded and job.status.dataset_version == "scores:1"
    assert job.status.progress is not None
    assert (job.status.progress.done, job.status.progress.total) == (ROWS, ROWS)
    check_output(client, "scores:1", world, "score-cli")
    assert client.datasets.version("scores:1", project=project).lineage.model_version == "fast:1"  # type: ignore[union-attr]
    text = log_of(client, "score-cli", project)
    assert "in batches of 3,000 rows" in text and "committed scores:1" in text
    assert "peak memory" in text

    shown = run_cli("data", "show", "scores:1", "--project", project, env=jobs_platform.cli_env())
    assert (
        shown.code == 0
        and "lineage: predicted by model fast:1, from dataset rows:1" in shown.stdout
    )
    again = run_cli(
        "batch-predict", "fast", "-d", "rows:1", "--output-dataset", "scores", "--batch-rows",
        "3000", "--project", project, "-o", "json", env=jobs_platform.cli_env(),
    )  # fmt: skip
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["status"]["dataset_version"] == "scores:1"  # the same rows
    listed = run_cli("jobs", "show", "score-cli", "--project", project, env=jobs_platform.cli_env())
    assert (
        "output: dataset scores:1" in listed.stdout
        and "progress: 20,000 of 20,000 rows" in listed.stdout
    )


def test_a_job_killed_mid_way_resumes_after_its_last_finished_batch(
    client: Client, world: dict[str, Any]
) -> None:
    project = world["project"]
    job = client.batch.predict(
        "slow", dataset="rows:1", output_dataset="scores-crash", batch_rows=500,
        max_retries=1, project=project, wait=False,
    )  # fmt: skip
    name = job.metadata.name
    found = runner_after_a_few_batches(client, name, project)
    os.kill(found[0], signal.SIGKILL)  # a crash: no chance to save anything
    done = client.batch.wait(name, project, timeout=JOB_TIMEOUT)
    assert done.status.phase == JobPhase.succeeded, done.status.message
    assert done.status.attempts == 2
    check_output(client, str(done.status.dataset_version), world, name)
    text = log_of(client, name, project)
    resumed = int(text.split("resuming after batch ")[1].split()[0])
    assert 3 <= resumed < ROWS // 500


def test_a_preempted_job_resumes_from_its_checkpoint_on_another_node(
    client: Client, world: dict[str, Any]
) -> None:
    """Preempted by an on-demand job, the spot job saves its parts as a checkpoint; its folder
    is then wiped (as if it resumed on another node), and it resumes from the checkpoint."""
    project = world["project"]
    job = client.batch.predict(
        "slow", dataset="rows:1", output_dataset="scores-spot", batch_rows=500,
        instance_type="cpu.medium", spot=True, project=project, wait=False,
    )  # fmt: skip
    name = job.metadata.name
    found = runner_after_a_few_batches(client, name, project)
    urgent = client.jobs.run(
        trainer={"estimator": "sklearn.linear_model.LogisticRegression"},
        dataset="rows:1",
        project=project,
    )
    preempted = wait_for(
        "the preemption",
        lambda: (j := client.jobs.get(name, project)).status.preemptions == 1 and j,
        60,
        0.05,
    )
    assert preempted.status.checkpoint is not None  # saved as it stopped
    wait_for("the runner gone", lambda: runner_of(name) is None, 60, 0.05)
    shutil.rmtree(found[1] / "predictions")  # another node would not have them
    assert client.jobs.wait(urgent.metadata.name, project, timeout=JOB_TIMEOUT).status.phase == (
        JobPhase.succeeded
    )
    done = client.batch.wait(name, project, timeout=JOB_TIMEOUT)
    assert done.status.phase == JobPhase.succeeded, done.status.message
    assert (done.status.attempts, done.status.preemptions) == (2, 1)
    check_output(client, str(done.status.dataset_version), world, name)
    text = log_of(client, name, project)
    assert "resumed from the last checkpoint" in text
    resumed = int(text.split("resuming after batch ")[1].split()[0])
    assert 3 <= resumed < ROWS // 500


def test_bad_requests_are_refused_before_anything_runs(
    client: Client, world: dict[str, Any]
) -> None:
    project = world["project"]
    with pytest.raises(NotFound):
        client.batch.predict("missing", dataset="rows", output_dataset="x", project=project)
    with pytest.raises(NotFound):
        client.batch.predict("fast", dataset="nothing", output_dataset="x", project=project)
    with pytest.raises(InvalidInput, match="is the input"):
        client.batch.predict("fast", dataset="rows", output_dataset="rows", project=project)
    with pytest.raises(InvalidInput, match="batch_rows"):
        client.batch.predict(
            "fast", dataset="rows", output_dataset="x", batch_rows=0, project=project
        )
    folder = world["folder"] / "untrusted"
    folder.mkdir(exist_ok=True)
    (folder / "predictor.py").write_text(PREDICTOR.format(delay=0))
    client.models.push(folder, "untrusted", project=project, sample=world["frame"][["a", "b"]])
    with pytest.raises(Conflict, match="must trust it"):
        client.batch.predict("untrusted", dataset="rows", output_dataset="x", project=project)
    with pytest.raises(InvalidInput, match="drop `model`"):
        client.jobs.run(
            batch_predict={"model": "fast", "output_dataset": "x"},
            dataset="rows",
            model="again",
            project=project,
        )


def test_a_failing_model_fails_the_job_and_commits_nothing(
    client: Client, world: dict[str, Any]
) -> None:
    project = world["project"]
    done = client.batch.predict(
        "fast", dataset="rows", output_dataset="scores-bad", features=["a", "id"],
        project=project, timeout=JOB_TIMEOUT,
    )  # fmt: skip
    assert done.status.phase == JobPhase.failed
    assert "id" in log_of(client, done.metadata.name, project)
    with pytest.raises(NotFound):
        client.datasets.get("scores-bad", project)


def test_a_pipeline_step_scores_the_dataset_with_the_model_it_trained(
    client: Client, world: dict[str, Any]
) -> None:
    project = world["project"]
    client.pipelines.apply(
        {
            "name": "train-and-score",
            "steps": [
                {
                    "name": "train",
                    "type": "train",
                    "dataset": "rows",
                    "model": "trained",
                    "trainer": {"estimator": "sklearn.linear_model.LogisticRegression"},
                },
                {
                    "name": "score",
                    "type": "batch_predict",
                    "dataset": "rows",
                    "output_dataset": "trained-scores",
                    "keep": ["id"],
                },
            ],
        },
        project=project,
    )
    run = client.pipelines.run("train-and-score", project=project)
    finished = client.pipelines.wait(
        "train-and-score", run.number, project, timeout=JOB_TIMEOUT, interval=0.2
    )
    score = next(s for s in finished.steps if s.name == "score")
    assert finished.state == "succeeded", score.message
    assert score.outputs["dataset_version"] == "trained-scores:1"
    version = client.datasets.version("trained-scores:1", project=project)
    assert version.rows == ROWS and [c.name for c in version.columns] == ["id", "prediction"]
    assert version.lineage is not None and version.lineage.model_version == "trained:1"
