"""Evaluation jobs end to end: two versions of a model trained by the built-in trainer are
scored on a dataset version in a job; references are pinned at submit (an alias to its
version), results land in the job's status per NAME:VERSION, and bad references, a missing
dataset or an untrusted pickle are refused when submitted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
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


@pytest.fixture
def client(jobs_platform: LocalPlatform) -> Iterator[Client]:
    with jobs_platform.client() as c:
        yield c


def finished(client: Client, name: str, project: str) -> JobRead:
    return client.jobs.wait(name, project, timeout=JOB_TIMEOUT)


def log_of(client: Client, name: str, project: str) -> str:
    return b"".join(client.jobs.logs(name, project)).decode()


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


@pytest.fixture(scope="module")
def world(jobs_platform: LocalPlatform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A project with the cancer dataset and two versions of model `cancer`, trained at once:
    a logistic regression (`strong`, aliased production) and a one-split tree (`weak`)."""
    with jobs_platform.client() as client:
        project = f"eval-{uuid.uuid4().hex[:8]}"
        client.projects.create(project)
        dataset = push_cancer(client, project, tmp_path_factory.mktemp("cancer"))
        estimators = {
            "strong": ("sklearn.linear_model.LogisticRegression", {"max_iter": 5000}),
            "weak": ("sklearn.tree.DecisionTreeClassifier", {"max_depth": 1}),
        }
        jobs = {
            kind: client.jobs.run(
                trainer={"estimator": estimator, "params": params},
                dataset="cancer",
                model="cancer",
                project=project,
            ).metadata.name
            for kind, (estimator, params) in estimators.items()
        }
        refs = {}
        for kind, name in jobs.items():
            done = finished(client, name, project)
            assert done.status.phase == JobPhase.succeeded, done.status.message
            refs[kind] = done.status.model_version or ""
        assert sorted(refs.values()) == ["cancer:1", "cancer:2"]
        client.models.set_alias(
            "cancer", "production", int(refs["strong"].split(":")[1]), project=project
        )
        return {"project": project, "dataset": dataset, **refs}


def test_an_evaluation_scores_each_pinned_version_on_the_dataset(
    client: Client, world: dict[str, Any]
) -> None:
    project, strong, weak = world["project"], world["strong"], world["weak"]
    job = client.jobs.run(
        evaluation={"models": ["cancer@production", weak]},
        dataset="cancer",
        project=project,
    )
    assert job.spec.evaluation is not None
    assert job.spec.evaluation.models == [strong, weak]  # the alias pinned at submit
    assert job.spec.dataset == world["dataset"] and job.metadata.name.startswith("evaluate-cancer")
    done = finished(client, job.metadata.name, project)
    assert done.status.phase == JobPhase.succeeded, done.status.message
    results = done.status.evaluations
    assert set(results) == {"cancer:1", "cancer:2"}
    for metrics in results.values():
        assert {"accuracy", "f1", "roc_auc"} <= set(metrics)
    assert results[strong]["accuracy"] > results[weak]["accuracy"] > 0.8
    assert results[strong]["roc_auc"] > results[weak]["roc_auc"]
    assert done.status.model_version is None  # an evaluation registers nothing
    assert done.status.metrics == pytest.approx(results[strong])  # the first model's, in the run
    run = client.experiments.run(done.status.run_id or "", project)
    assert run.state == "finished" and run.params["label"] == "target"

    text = log_of(client, job.metadata.name, project)
    assert f"evaluated {strong} on {world['dataset']} (569 rows, 30 features" in text
    assert f"evaluated {weak} on" in text


def test_the_cli_runs_an_evaluation_from_flags_and_a_spec_file(
    jobs_platform: LocalPlatform, run_cli: Any, world: dict[str, Any], tmp_path: Path
) -> None:
    env = jobs_platform.cli_env()
    spec = tmp_path / "evaluate.yaml"
    spec.write_text("name: cli-evaluation\ndataset: cancer\nevaluation:\n  models: [cancer]\n")
    ran = run_cli(
        "jobs", "run", "--file", str(spec), "--label", "target", "--follow",
        "-p", world["project"], env=env,
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    assert "evaluated cancer:2 on" in ran.stdout  # `cancer` is the latest version
    assert "cancer:2: accuracy=" in ran.stderr
    shown = run_cli("jobs", "show", "cli-evaluation", "-p", world["project"], env=env)
    assert "evaluated cancer:2: accuracy=" in shown.stdout
    both = run_cli(
        "jobs", "run", "--evaluate", "cancer:1", "--trainer", "sklearn.tree.DecisionTreeClassifier",
        "--dataset", "cancer", "-p", world["project"], env=env,
    )  # fmt: skip
    assert both.code == 2


def test_bad_evaluations_are_refused_at_submit(
    client: Client, world: dict[str, Any], tmp_path: Path
) -> None:
    project = world["project"]
    before = len(client.jobs.list(project))
    for missing in ("ghost:1", "cancer:9", "cancer@staging"):
        with pytest.raises(NotFound):
            client.jobs.run(evaluation={"models": [missing]}, dataset="cancer", project=project)
    with pytest.raises(InvalidInput, match="needs a `dataset`"):
        client.jobs.run(evaluation={"models": ["cancer:1"]}, project=project)
    with pytest.raises(InvalidInput):
        client.jobs.run(evaluation={"models": ["Not A Name"]}, dataset="cancer", project=project)
    with pytest.raises(InvalidInput, match="at most 5"):
        client.jobs.run(evaluation={"models": ["cancer:1"] * 6}, dataset="cancer", project=project)

    import joblib
    from sklearn.dummy import DummyClassifier

    folder = tmp_path / "pickled"
    folder.mkdir()
    joblib.dump(DummyClassifier().fit([[0]], [0]), folder / "model.joblib")
    client.models.push(folder, "pickled", project=project)
    with pytest.raises(Conflict, match="trust"):
        client.jobs.run(evaluation={"models": ["pickled"]}, dataset="cancer", project=project)
    assert len(client.jobs.list(project)) == before  # nothing half-made
