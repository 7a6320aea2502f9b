"""The tracking service on SQLite: experiments and runs, write-once params, metric series and
their summaries (NaN and infinity included), ending runs, artifacts as counted blobs, and
comparisons."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta

import pytest
from tracking_world import World, project_uid

from stratus.core.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from stratus.core.events import ProjectDeleting
from stratus.tracking import schemas as s
from stratus.tracking.service import same_param


def experiment(world: World, name: str = "churn", project: str = "p") -> s.ExperimentRead:
    return world.tracking.create_experiment(project, s.ExperimentCreate(name=name))


def run(world: World, exp: str = "churn", project: str = "p", **fields: object) -> s.RunRead:
    return world.tracking.create_run(
        project, exp, s.RunCreate.model_validate(fields), actor="user:alice"
    )


def log(world: World, run_id: str, project: str = "p", **batch: object) -> s.RunRead:
    return world.tracking.log(project, run_id, s.RunLog.model_validate(batch))


def upload(world: World, run_id: str, path: str, data: bytes) -> s.ArtifactRead:
    upload = world.tracking.begin_artifact_upload("p", run_id, path)
    try:
        upload.write(data)
        return world.tracking.finish_artifact_upload(upload)
    except BaseException:
        upload.abort()
        raise


def file_of(path: str, data: bytes) -> dict[str, object]:
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


# --- experiments and runs --------------------------------------------------------------------


def test_experiments_are_project_scoped_and_count_their_runs(world: World) -> None:
    t = world.tracking
    experiment(world)
    with pytest.raises(AlreadyExists):
        experiment(world)
    experiment(world, project="q")  # the same name in another project is another experiment
    first = run(world, name="a")
    run(world, name="b")
    t.update_run("p", first.id, s.RunUpdate(state="finished"))
    read = t.get_experiment("p", "churn")
    assert (read.status.runs, read.status.running) == (2, 1)
    assert read.status.last_run_at is not None
    assert t.get_experiment("q", "churn").status.runs == 0
    assert [e.metadata.name for e in t.list_experiments("p", None, None, None)[0]] == ["churn"]

    with pytest.raises(NotFound, match="project 'q'"):
        t.get_run("q", first.id)  # a run is found only in its own project
    with pytest.raises(Conflict, match="2 runs"):
        t.delete_experiment("p", "churn")
    with world.db.transaction() as session, pytest.raises(Conflict, match="experiments"):
        world.bus.publish(
            session, ProjectDeleting(project_id=project_uid(session, "p"), project_name="p")
        )
    t.delete_experiment("p", "churn", force=True)
    with pytest.raises(NotFound):
        t.get_run("p", first.id)


def test_runs_list_newest_first_in_pages_and_by_state(world: World) -> None:
    t = world.tracking
    experiment(world)
    ids = [run(world, name=f"r{i}").id for i in range(5)]
    assert all(i.startswith("run_") for i in ids)
    t.update_run("p", ids[1], s.RunUpdate(state="failed"))
    page, token = t.list_runs("p", "churn", limit=2)
    assert [r.id for r in page] == ids[:-3:-1] and token
    rest, end = t.list_runs("p", "churn", limit=10, page_token=token)
    assert [r.id for r in rest] == ids[2::-1] and end is None
    assert [r.id for r in t.list_runs("p", "churn", state="failed")[0]] == [ids[1]]
    with pytest.raises(InvalidInput, match="state"):
        t.list_runs("p", "churn", state="paused")


def test_a_run_ends_once_and_then_only_its_tags_change(world: World) -> None:
    t = world.tracking
    experiment(world)
    r = run(world, tags={"team": "ml"})
    ended = t.update_run("p", r.id, s.RunUpdate(state="finished", name="final"))
    assert (ended.state, ended.name) == ("finished", "final") and ended.ended_at is not None
    assert t.update_run("p", r.id, s.RunUpdate(state="finished")).state == "finished"  # no-op
    with pytest.raises(Conflict, match="ended"):
        t.update_run("p", r.id, s.RunUpdate(state="killed"))
    with pytest.raises(Conflict, match="final"):
        log(world, r.id, metrics=[{"key": "loss", "value": 1.0}])
    with pytest.raises(Conflict, match="final"):
        log(world, r.id, params={"late": 1})
    with pytest.raises(Conflict, match="final"):
        t.declare_artifacts(
            "p", r.id, s.ArtifactsDeclare.model_validate({"files": [file_of("a", b"a")]})
        )
    tagged = log(world, r.id, tags={"note": "good"})
    assert tagged.tags == {"note": "good", "team": "ml"}
    untagged = t.update_run("p", r.id, s.RunUpdate.model_validate({"tags": {"team": None}}))
    assert untagged.tags == {"note": "good"}


# --- params ----------------------------------------------------------------------------------


def test_params_are_write_once_and_a_conflict_keeps_nothing_of_the_batch(world: World) -> None:
    t = world.tracking
    experiment(world)
    r = run(world, params={"C": 1.0, "solver": "lbfgs"})
    same = log(world, r.id, params={"C": 1, "solver": "lbfgs", "max_iter": 100})
    assert same.params == {"C": 1.0, "max_iter": 100, "solver": "lbfgs"}
    with pytest.raises(Conflict, match="write-once") as info:
        log(
            world,
            r.id,
            params={"C": 2.0, "new": "x"},
            metrics=[{"key": "loss", "value": 0.5}],
            tags={"t": "v"},
        )
    assert info.value.extra == {"keys": ["C"]}
    after = t.get_run("p", r.id)
    assert after.params == same.params and after.metrics == {} and after.tags == {}
    with pytest.raises(NotFound):
        t.metric_history("p", r.id, "loss")
    assert same_param(True, True) and not same_param(True, 1) and same_param(1, 1.0)
    with pytest.raises(Conflict):
        log(world, r.id, params={"max_iter": True})


# --- metrics ---------------------------------------------------------------------------------


def test_metric_series_keep_every_point_and_summarize_the_latest(world: World) -> None:
    t = world.tracking
    experiment(world)
    r = run(world)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    log(
        world,
        r.id,
        metrics=[
            {"key": "loss", "value": 0.9, "step": 0, "timestamp": t0},
            {"key": "loss", "value": 0.5, "step": 2, "timestamp": t0 + timedelta(seconds=2)},
            {"key": "loss", "value": 0.7, "step": 1, "timestamp": t0 + timedelta(seconds=3)},
            {"key": "acc", "value": 0.8, "step": 5},
        ],
    )
    later = log(world, r.id, metrics=[{"key": "loss", "value": 0.4, "step": 1}])  # an old step
    assert later.metrics == {"acc": 0.8, "loss": 0.5}  # the highest step wins, not the newest
    summaries = {m.key: m for m in t.metrics("p", r.id)}
    loss = summaries["loss"]
    assert (loss.value, loss.step, loss.count, loss.min, loss.max) == (0.5, 2, 4, 0.4, 0.9)
    history, token = t.metric_history("p", r.id, "loss")
    assert [(p.step, p.value) for p in history] == [(0, 0.9), (1, 0.7), (1, 0.4), (2, 0.5)]
    assert token is None and history[0].timestamp == t0

    pages, token = [], None
    while True:
        page, token = t.metric_history("p", r.id, "loss", limit=1, page_token=token)
        pages += [(p.step, p.value) for p in page]
        if token is None:
            break
    assert pages == [(p.step, p.value) for p in history]
    with pytest.raises(InvalidInput, match="page_token"):
        t.metric_history("p", r.id, "loss", page_token="bm90IGEgdG9rZW4")
    with pytest.raises(NotFound, match="no metric 'nope'"):
        t.metric_history("p", r.id, "nope")


def test_nan_and_infinity_are_kept_and_shown_as_strings(world: World) -> None:
    t = world.tracking
    experiment(world)
    r = run(world)
    batch = s.RunLog.model_validate_json(
        '{"metrics": [{"key": "loss", "value": 1.5, "step": 0},'
        ' {"key": "loss", "value": NaN, "step": 1},'
        ' {"key": "grad", "value": "Infinity"}, {"key": "low", "value": "-Infinity"}]}'
    )
    read = t.log("p", r.id, batch)
    assert read.metrics == {"grad": "Infinity", "loss": "NaN", "low": "-Infinity"}
    assert read.model_dump_json()  # valid JSON: no bare NaN
    loss = next(m for m in t.metrics("p", r.id) if m.key == "loss")
    assert (loss.value, loss.min, loss.max, loss.count) == ("NaN", 1.5, 1.5, 2)
    grad = next(m for m in t.metrics("p", r.id) if m.key == "grad")
    assert (grad.min, grad.max) == (None, None)  # no finite value
    assert [p.value for p in t.metric_history("p", r.id, "loss")[0]] == [1.5, "NaN"]
    assert s.to_api(math.inf) == "Infinity" and s.to_api(None) == "NaN"


def test_batches_are_bounded_and_keys_checked() -> None:
    with pytest.raises(ValueError, match="at most 1000"):
        s.RunLog.model_validate({"metrics": [{"key": "a", "value": 1}] * 1001})
    with pytest.raises(ValueError, match="at most 100"):
        s.RunLog.model_validate({"params": {f"k{i}": i for i in range(101)}})
    with pytest.raises(ValueError, match="letters, digits"):
        s.RunLog.model_validate({"params": {"a b": 1}})
    with pytest.raises(ValueError, match="finite"):
        s.RunLog.model_validate({"params": {"lr": math.nan}})
    with pytest.raises(ValueError, match="string, a number"):
        s.RunLog.model_validate({"params": {"layers": [1, 2]}})
    with pytest.raises(ValueError, match="a metric value"):
        s.RunLog.model_validate({"metrics": [{"key": "a", "value": "high"}]})
    with pytest.raises(ValueError, match="greater than or equal"):
        s.RunLog.model_validate({"metrics": [{"key": "a", "value": 1, "step": -1}]})


# --- artifacts -------------------------------------------------------------------------------


def test_artifacts_are_counted_blobs_released_with_their_run(world: World) -> None:
    t = world.tracking
    experiment(world)
    first, second = run(world), run(world)
    data = b"roc curve bytes"
    sha = hashlib.sha256(data).hexdigest()
    declared = t.declare_artifacts(
        "p",
        first.id,
        s.ArtifactsDeclare.model_validate({"files": [file_of("plots/roc.png", data)]}),
    )
    assert [(a.path, a.stored) for a in declared] == [("plots/roc.png", False)]
    with pytest.raises(NotFound, match="no artifact"):
        t.open_artifact("p", first.id, "plots/roc.png")  # not uploaded yet
    with pytest.raises(NotFound, match="declare it first"):
        t.begin_artifact_upload("p", first.id, "other.png")
    assert upload(world, first.id, "plots/roc.png", data).stored
    entry, chunks = t.open_artifact("p", first.id, "plots/roc.png")
    assert b"".join(chunks) == data and entry.sha256 == sha

    # the same bytes in another run: stored at once, nothing to upload, one more reference
    again = t.declare_artifacts(
        "p", second.id, s.ArtifactsDeclare.model_validate({"files": [file_of("roc.png", data)]})
    )
    assert again[0].stored and world.refcounts()[sha] == 2

    # replacing a path releases the old bytes
    new = b"a better curve"
    t.declare_artifacts(
        "p", second.id, s.ArtifactsDeclare.model_validate({"files": [file_of("roc.png", new)]})
    )
    assert world.refcounts()[sha] == 1
    with pytest.raises(InvalidInput, match="SHA-256"):
        upload(world, second.id, "roc.png", b"not what was declared")
    upload(world, second.id, "roc.png", new)
    page, token = t.list_artifacts("p", second.id, limit=10)
    assert [(a.path, a.stored) for a in page] == [("roc.png", True)] and token is None

    t.delete_run("p", first.id)
    assert world.refcounts()[sha] == 0
    t.delete_experiment("p", "churn", force=True)
    assert set(world.refcounts().values()) == {0}


def test_artifact_paths_are_checked(world: World) -> None:
    for bad in ("/etc/passwd", "a/../b", "a//b", "", "a\\b", "x\ny"):
        with pytest.raises(ValueError):
            s.ArtifactFile.model_validate({"path": bad, "sha256": "0" * 64, "size": 1})
    experiment(world)
    r = run(world)
    twice = {"files": [file_of("a.txt", b"1"), file_of("a.txt", b"2")]}
    with pytest.raises(InvalidInput, match="twice"):
        world.tracking.declare_artifacts("p", r.id, s.ArtifactsDeclare.model_validate(twice))


# --- comparing -------------------------------------------------------------------------------


def test_compare_puts_runs_side_by_side(world: World) -> None:
    t = world.tracking
    experiment(world)
    a = run(world, name="a", params={"C": 1.0, "solver": "lbfgs"})
    b = run(world, name="b", params={"C": 0.1, "solver": "lbfgs", "l1": True})
    log(world, a.id, metrics=[{"key": "acc", "value": 0.9}])
    log(world, b.id, metrics=[{"key": "acc", "value": 0.9}, {"key": "loss", "value": "NaN"}])

    compared = t.compare("p", [b.id, a.id])
    assert [r.id for r in compared.runs] == [b.id, a.id]
    params = {p.key: (p.values, p.differs) for p in compared.params}
    assert params == {
        "C": ([0.1, 1.0], True),
        "l1": ([True, None], True),
        "solver": (["lbfgs", "lbfgs"], False),
    }
    metrics = {m.key: (m.values, m.differs) for m in compared.metrics}
    assert metrics == {"acc": ([0.9, 0.9], False), "loss": (["NaN", None], True)}

    newest = t.compare("p", experiment="churn", limit=1)
    assert [r.id for r in newest.runs] == [b.id]
    with pytest.raises(InvalidInput, match="either"):
        t.compare("p", [a.id], experiment="churn")
    with pytest.raises(InvalidInput, match="either"):
        t.compare("p")
    with pytest.raises(InvalidInput, match="twice"):
        t.compare("p", [a.id, a.id])
    with pytest.raises(NotFound, match="run_nope"):
        t.compare("p", [a.id, "run_nope"])
    experiment(world, project="q")
    other = run(world, project="q")
    with pytest.raises(NotFound):
        t.compare("p", [a.id, other.id])  # another project's run is not there
