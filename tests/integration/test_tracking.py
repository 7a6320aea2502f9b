"""Experiment tracking as training code and a user see it: `stratus.tracking` runs that log
params and metrics in batches, artifacts and a model with its lineage; failed and killed runs;
write-once params; bounded batches; and `stratus experiments` listing, comparing and showing
runs."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import stratus.tracking as tracking
from stratus.client import Client
from stratus.core.errors import Conflict, InvalidInput, NotFound
from stratus.testing import LocalPlatform


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def project(admin: Client) -> Iterator[str]:
    name = uniq("track")
    admin.projects.create(name)
    yield name


def api(platform: LocalPlatform, project: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{platform.url}/api/v1/projects/{project}",
        headers={"authorization": f"Bearer {platform.api_key}"},
        timeout=30,
    )


def test_a_training_script_logs_a_run_and_its_model(
    admin: Client, project: str, tmp_path: Path, tiny_model: Path
) -> None:
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "roc.png").write_bytes(b"\x89PNG roc")
    (plots / "pr.png").write_bytes(b"\x89PNG pr")
    notes = tmp_path / "notes.txt"
    notes.write_text("trained on a laptop")
    model = tmp_path / "model.skops"
    model.write_bytes(tiny_model.read_bytes())
    rows = tmp_path / "churn.csv"
    for n in range(3):  # the data the model names in its lineage: churn:3
        rows.write_text("a,b,y\n" + "".join(f"{n},{i},{i % 2}\n" for i in range(4)))
        admin.datasets.push(rows, "churn", project=project)

    with tracking.start_run(
        experiment="churn", name="lr-c1", client=admin, project=project, flush_every=50
    ) as run:
        assert tracking.active_run() is run
        run.log_params({"C": 1.0, "solver": "lbfgs", "layers": [64, 32]})
        for step in range(120):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
            if step == 60:  # batches of 50 went out while training ran
                assert admin.experiments.run(run.id, project).metrics["loss"] == 1 / 50
        run.log_metrics({"acc": 0.91, "auc": 0.95})
        tracking.log_metric("acc", 0.93)  # no step: the key's next one
        run.set_tags({"team": "growth"})
        assert run.log_artifact(plots) == ["plots/pr.png", "plots/roc.png"]
        assert run.log_artifact(notes, "docs") == ["docs/notes.txt"]
        version = run.log_model(
            model, name="churn-model", flavor="sklearn", dataset_version="churn:3"
        )
    assert tracking.active_run() is None

    ended = admin.experiments.run(run.id, project)
    assert ended.state == "finished" and ended.ended_at is not None
    assert ended.params == {"C": 1.0, "layers": "[64, 32]", "solver": "lbfgs"}
    assert ended.metrics == {"acc": 0.93, "auc": 0.95, "loss": 1 / 120}
    assert ended.tags == {"model/churn-model": f"churn-model:{version.version}", "team": "growth"}
    history = admin.experiments.metric_history(run.id, "loss", project)
    assert [p.step for p in history] == list(range(120))
    acc = admin.experiments.metric_history(run.id, "acc", project)
    assert [(p.step, p.value) for p in acc] == [(0, 0.91), (1, 0.93)]

    # the model version names the run, its data, its params and metrics
    registered = admin.models.version(f"churn-model:{version.version}", project=project)
    assert registered.lineage.training_run == run.id
    assert registered.lineage.dataset_version == "churn:3"
    assert registered.params == ended.params
    assert registered.metrics == {"acc": 0.93, "auc": 0.95, "loss": 1 / 120}
    assert registered.tags["experiment"] == "churn"

    paths = [a.path for a in admin.experiments.artifacts(run.id, project)]
    assert paths == ["docs/notes.txt", "plots/pr.png", "plots/roc.png"]
    out = admin.experiments.download_artifacts(run.id, tmp_path / "out", "plots", project)
    assert (out / "plots" / "roc.png").read_bytes() == b"\x89PNG roc"
    assert not (out / "docs").exists()
    experiment = admin.experiments.get("churn", project)
    assert (experiment.status.runs, experiment.status.running) == (1, 0)
    changed = admin.experiments.update("churn", project=project, description="churn models")
    assert changed.spec.description == "churn models"


def test_an_exception_fails_the_run_and_ctrl_c_kills_it(admin: Client, project: str) -> None:
    with pytest.raises(ZeroDivisionError):
        with tracking.start_run(experiment="crash", client=admin, project=project) as run:
            run.log_metric("loss", 0.5)  # buffered: still sent as the run fails
            _ = 1 / 0
    failed = admin.experiments.run(run.id, project)
    assert failed.state == "failed" and failed.metrics == {"loss": 0.5}
    assert failed.tags["error"].startswith("ZeroDivisionError")
    with pytest.raises(Conflict, match="final"):  # an ended run's record does not change
        admin.experiments.log_batch(run.id, params={"late": 1}, project=project)

    with pytest.raises(KeyboardInterrupt):
        with tracking.start_run(experiment="crash", client=admin, project=project) as killed:
            raise KeyboardInterrupt
    assert admin.experiments.run(killed.id, project).state == "killed"
    assert tracking.active_run() is None


def test_params_are_write_once_and_batches_are_bounded(
    admin: Client, project: str, platform: LocalPlatform
) -> None:
    run = tracking.start_run(experiment="rules", client=admin, project=project)
    run.log_params({"C": 1.0})
    run.log_params({"C": 1.0})  # the same value again is fine
    with pytest.raises(Conflict, match="write-once"):
        run.log_params({"C": 2.0})
    with api(platform, project) as http:
        response = http.post(f"/runs/{run.id}/log", json={"params": {"C": 3}})
        assert response.status_code == 409
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["keys"] == ["C"]
        too_many = [{"key": "loss", "value": 1.0, "step": i} for i in range(1001)]
        response = http.post(f"/runs/{run.id}/log", json={"metrics": too_many})
        assert response.status_code == 422 and "at most 1000" in response.json()["detail"]
        bad = http.post(f"/runs/{run.id}/log", json={"params": {"bad key": 1}})
        assert bad.status_code == 422 and "letters, digits" in bad.json()["detail"]
        nan = http.post(
            f"/runs/{run.id}/log",
            content=b'{"metrics": [{"key": "loss", "value": NaN}]}',
            headers={"content-type": "application/json"},
        )
        assert nan.status_code == 200 and nan.json()["metrics"] == {"loss": "NaN"}
        missing = http.get("/runs/run_nope")
        assert missing.status_code == 404 and "run_nope" in missing.json()["detail"]
    run.log_metrics({"grad": math.inf, "loss": 0.25}, step=1)
    run.end()
    summary = {m.key: m for m in admin.experiments.metrics(run.id, project)}
    assert summary["grad"].value == "Infinity" and summary["loss"].value == 0.25
    assert summary["loss"].min == 0.25 and summary["loss"].count == 2
    with pytest.raises(InvalidInput, match="letters, digits"):
        tracking.start_run(experiment="rules", client=admin, project=project).log_metric(
            "bad key", 1.0
        )
    tracking.end_run()


def test_a_resumed_run_carries_on_and_the_default_client_comes_from_the_environment(
    admin: Client, project: str, platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in platform.cli_env().items():
        monkeypatch.setenv(name, value)
    first = tracking.start_run(experiment="resume", project=project)  # client from the env
    tracking.log_metrics({"loss": 0.9})
    tracking.log_metrics({"loss": 0.8})
    first.flush()
    resumed = tracking.start_run(run_id=first.id, project=project)
    resumed.log_metric("loss", 0.7)  # step 2: after the steps already logged
    resumed.end()
    points = admin.experiments.metric_history(first.id, "loss", project)
    assert [(p.step, p.value) for p in points] == [(0, 0.9), (1, 0.8), (2, 0.7)]
    with pytest.raises(Conflict, match="ended"):
        tracking.start_run(run_id=first.id, project=project)
    first.end()  # already ended by the resumed handle: the server says nothing changed
    with pytest.raises(NotFound):
        tracking.start_run(run_id="run_nope", project=project)


def test_resume_run_continues_a_running_run_or_starts_afresh(admin: Client, project: str) -> None:
    """What a job restarted after preemption does: carry on in its run while it runs."""
    options: dict[str, Any] = {"experiment": "jobs", "client": admin, "project": project}
    first = tracking.resume_run(None, name="attempt-1", tags={"job": "j1"}, **options)
    first.log_metrics({"loss": 0.5, "acc": math.nan})
    again = tracking.resume_run(first.id, params={"lr": 0.1}, **options)
    assert again.id == first.id and again.info.params == {"lr": 0.1}
    assert again.latest_metrics() == {}  # what `first` buffered is still in `first`
    first.flush()
    assert again.latest_metrics() == {"loss": 0.5}  # NaN is left out
    with pytest.raises(Conflict, match="write-once"):
        tracking.resume_run(first.id, params={"lr": 0.2}, **options)
    again.end("failed")
    fresh = tracking.resume_run(first.id, **options)  # the old one ended: a new run
    assert fresh.id != first.id and fresh.info.state == "running"
    admin.experiments.delete_run(fresh.id, project)
    assert tracking.resume_run(fresh.id, **options).id not in (first.id, fresh.id)
    for run in (first, fresh):
        with pytest.raises((Conflict, NotFound)):
            run.end()
    while tracking.active_run() is not None:
        tracking.end_run()


def compared_rows(table: str) -> dict[str, tuple[str, list[str]]]:
    """`stratus experiments compare` rows: key -> (kind with its '*' mark, values)."""
    rows = {}
    for line in table.splitlines()[1:]:
        words = line.split()
        if words and words[0] in ("run", "param", "metric"):
            marked = len(words) > 1 and words[1] == "*"
            kind = f"{words[0]} *" if marked else words[0]
            rest = words[2:] if marked else words[1:]
            rows[rest[0]] = (kind, rest[1:])
    return rows


def test_the_cli_lists_compares_and_shows_runs(
    cli: Any, admin: Client, project: str, tmp_path: Path
) -> None:
    ids = []
    for c in (1.0, 0.1):
        with tracking.start_run(
            experiment="cli", name=f"c{c}", client=admin, project=project
        ) as run:
            run.log_params({"C": c, "solver": "lbfgs"})
            run.log_metrics({"auc": 0.8 + c / 10}, step=0)
            run.log_metrics({"auc": 0.85 + c / 10}, step=1)
            (tmp_path / "report.txt").write_text(f"C={c}")
            run.log_artifact(tmp_path / "report.txt")
            ids.append(run.id)

    listed = cli("experiments", "list", "-p", project, "-o", "json")
    assert listed.code == 0, listed.stderr
    assert [(e["metadata"]["name"], e["status"]["runs"]) for e in json.loads(listed.stdout)] == [
        ("cli", 2)
    ]
    runs = cli("experiments", "runs", "cli", "-p", project)
    assert runs.code == 0, runs.stderr
    lines = runs.stdout.splitlines()
    assert "C" in lines[0] and "auc" in lines[0] and "solver" not in lines[0]  # what varies
    assert ids[1] in lines[1] and "0.1" in lines[1] and "0.86" in lines[1]  # newest first
    assert ids[0] in lines[2] and "finished" in lines[2] and "0.95" in lines[2]

    compared = cli("experiments", "compare", ids[0], ids[1], "-p", project)
    assert compared.code == 0, compared.stderr
    rows = compared_rows(compared.stdout)
    assert rows["C"] == ("param *", ["1", "0.1"])
    assert rows["solver"] == ("param", ["lbfgs", "lbfgs"])
    assert rows["auc"] == ("metric *", ["0.95", "0.86"])
    assert rows["id"] == ("run", ids)
    only_diff = cli("experiments", "compare", "-e", "cli", "--diff", "-p", project)
    assert only_diff.code == 0 and "solver" not in only_diff.stdout and "auc" in only_diff.stdout
    as_json = json.loads(
        cli("experiments", "compare", "-e", "cli", "-p", project, "-o", "json").stdout
    )
    assert [r["id"] for r in as_json["runs"]] == ids[::-1]
    assert cli("experiments", "compare", "-p", project).code == 2

    shown = cli("experiments", "show", ids[0], "-p", project)
    assert shown.code == 0, shown.stderr
    assert "report.txt" in shown.stdout and "lbfgs" in shown.stdout
    metric_line = next(line for line in shown.stdout.splitlines() if line.startswith("auc"))
    assert metric_line.split()[:4] == ["auc", "0.95", "1", "2"]  # latest, step, points
    pulled = cli("experiments", "pull", ids[0], str(tmp_path / "out"), "-p", project)
    assert pulled.code == 0 and (tmp_path / "out" / "report.txt").read_text() == "C=1.0"

    running = tracking.start_run(experiment="cli", client=admin, project=project)
    ended = cli("experiments", "end", running.id, "-p", project, "-o", "json")
    assert ended.code == 0 and json.loads(ended.stdout)["state"] == "killed"
    with pytest.raises(Conflict, match="cannot end again"):
        running.end()  # the script's handle learns its run was ended
    assert tracking.active_run() is None
    missing = cli("experiments", "show", "run_nope", "-p", project)
    assert missing.code == 1 and "run_nope" in missing.stderr
    refused = cli("experiments", "delete", "cli", "-p", project)
    assert refused.code == 1 and "force" in refused.stderr
    assert cli("experiments", "delete-run", ids[0], "-p", project).code == 0
    assert cli("experiments", "delete", "cli", "--force", "-p", project).code == 0
    with pytest.raises(NotFound):
        admin.experiments.get("cli", project)


def test_tracking_lists_page(
    admin: Client, project: str, platform: LocalPlatform, tmp_path: Path
) -> None:
    def walk(http: httpx.Client, path: str) -> list[list[Any]]:
        pages, query = [], {"limit": 2}
        while True:
            body = http.get(path, params=query).raise_for_status().json()
            pages.append(body["items"])
            if not body["next_page_token"]:
                return pages
            query["page_token"] = body["next_page_token"]

    for name in ("e1", "e2", "e3"):
        admin.experiments.create(name, project=project)
    run_ids = [admin.experiments.create_run("e1", project=project).id for _ in range(5)]
    steps = [{"key": "loss", "value": float(s), "step": s} for s in (3, 1, 4, 1, 5)]
    admin.experiments.log_batch(run_ids[0], metrics=steps, project=project)
    for name in ("c.txt", "a.txt", "b.txt"):
        (tmp_path / name).write_text(name)
        admin.experiments.log_artifact(run_ids[0], tmp_path / name, project=project)
    with api(platform, project) as http:
        pages = walk(http, "/experiments")
        assert [e["metadata"]["name"] for p in pages for e in p] == ["e1", "e2", "e3"]
        pages = walk(http, "/experiments/e1/runs")
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [r["id"] for p in pages for r in p] == run_ids[::-1]  # newest first
        pages = walk(http, f"/runs/{run_ids[0]}/metrics/loss")
        assert [(m["step"], m["value"]) for p in pages for m in p] == [
            (1, 1.0), (1, 1.0), (3, 3.0), (4, 4.0), (5, 5.0),
        ]  # fmt: skip
        pages = walk(http, f"/runs/{run_ids[0]}/artifacts")
        assert [a["path"] for p in pages for a in p] == ["a.txt", "b.txt", "c.txt"]
