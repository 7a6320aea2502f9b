"""Serving endpoints through the SDK and the CLI, as a user drives them: deploy, wait until
ready, predict in the three protocols (rows, a JSON body, a CSV or Parquet file), roll out a
canary, promote it, roll back, read the history and the logs, delete; and the errors on the
way, one line each. Two endpoints in all, shared by the tests of this module."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from stratus.client import Client
from stratus.core.errors import NotFound
from stratus.testing import LocalPlatform

pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")
pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

READY_TIMEOUT = 180.0
ENDPOINT = "cancer-api"
T = TypeVar("T")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The README's model: a LogisticRegression on the bundled breast-cancer data, as skops."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    data = load_breast_cancer(as_frame=True)
    model = LogisticRegression(max_iter=5000).fit(data.data, data.target)
    root = tmp_path_factory.mktemp("endpoint-cli-model")
    skops_io.dump(model, root / "model.skops")
    return {"path": root / "model.skops", "model": model, "frame": data.data}


@pytest.fixture(scope="module")
def project(platform: LocalPlatform, trained: dict[str, Any]) -> str:
    """A project holding cancer:1 and cancer:2 (the same bytes, stored once), and the alias
    production -> 1."""
    name = f"ep-{uuid.uuid4().hex[:8]}"
    with platform.client() as client:
        client.projects.create(name)
        for _ in range(2):
            client.models.push(
                trained["path"], "cancer", project=name, sample=trained["frame"].head(50)
            )
        client.models.set_alias("cancer", "production", 1, project=name)
    return name


@pytest.fixture(scope="module")
def served(platform: LocalPlatform, project: str) -> Iterator[str]:
    """The endpoint most tests share, deployed with the SDK: cancer:1, one replica."""
    with platform.client() as client:
        endpoint = client.endpoints.deploy(
            ENDPOINT, "cancer:1", project=project, reason="first", wait=True, timeout=READY_TIMEOUT
        )
        assert endpoint.status.phase == "ready"
        try:
            yield ENDPOINT
        finally:
            pids = _replica_pids(client, ENDPOINT, project)
            try:
                client.endpoints.delete(ENDPOINT, project)
            except NotFound:
                pass
            _wait_gone(pids)


def replica_files(platform: LocalPlatform) -> list[str]:
    return sorted(p.name for p in (platform.home / "compute" / "replicas").iterdir())


def _replica_pids(client: Client, name: str, project: str) -> set[int]:
    try:
        endpoint = client.endpoints.get(name, project)
    except NotFound:
        return set()
    return {r.pid for r in endpoint.status.replicas if r.pid}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pids: set[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids), f"replicas still running: {pids}"


def eventually(check: Callable[[], T], timeout: float = 20.0) -> T:
    """`check()` once it stops raising AssertionError (routes may trail the status briefly)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def expected(trained: dict[str, Any], n: int) -> list[int]:
    return [int(p) for p in trained["model"].predict(trained["frame"].head(n))]


def one_line_error(result: Any, *words: str) -> None:
    assert result.code == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


# --- the SDK ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["plain", "mlflow", "v2"])
def test_sdk_predicts_in_every_protocol(
    admin: Client, project: str, served: str, trained: dict[str, Any], protocol: Any
) -> None:
    rows = trained["frame"].head(5).to_dict(orient="records")
    answer = admin.endpoints.predict(served, rows, project=project, protocol=protocol)
    assert answer.predictions == expected(trained, 5)
    assert (answer.model_version, answer.variant) == ("cancer:1", "main")
    assert answer.request_id
    as_lists = admin.endpoints.predict(
        served, trained["frame"].head(3).to_numpy(), project=project, protocol=protocol
    )
    assert as_lists.predictions == expected(trained, 3)


def test_sdk_sends_a_body_as_it_is(
    admin: Client, project: str, served: str, trained: dict[str, Any]
) -> None:
    csv_body = trained["frame"].head(4).to_csv(index=False)
    answer = admin.endpoints.predict(
        served, body=csv_body, project=project, protocol="mlflow", content_type="text/csv"
    )
    assert answer.predictions == expected(trained, 4)
    frame = trained["frame"].head(4)
    split = {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}
    answer = admin.endpoints.predict(
        served, body={"dataframe_split": split}, project=project, protocol="mlflow"
    )
    assert answer.predictions == expected(trained, 4)
    metadata = admin.endpoints.metadata(served, project)
    assert len(metadata["inputs"]) == 30


def test_sdk_reads_the_endpoint(admin: Client, project: str, served: str) -> None:
    endpoint = admin.endpoints.get(served, project)
    (main,) = endpoint.spec.variants
    assert (main.name, main.model, main.version, main.replicas) == ("main", "cancer:1", 1, 1)
    (status,) = endpoint.status.variants
    assert status.ready == status.desired == status.updated == 1
    assert [r.phase for r in endpoint.status.replicas] == ["ready"]
    assert served in [e.metadata.name for e in admin.endpoints.list(project)]
    first = admin.endpoints.history(served, project=project)[-1]
    assert (first.revision, first.action, first.reason) == (1, "create", "first")
    assert first.spec.variants[0].version == 1


def test_sdk_deploy_rolls_the_main_variant_over(
    admin: Client, project: str, served: str, trained: dict[str, Any]
) -> None:
    rolled = admin.endpoints.deploy(
        served, "cancer:2", project=project, reason="v2", wait=True, timeout=READY_TIMEOUT
    )
    assert [(v.name, v.version) for v in rolled.spec.variants] == [("main", 2)]

    def answered_by_v2() -> None:
        answer = admin.endpoints.predict(
            served, [trained["frame"].iloc[0].tolist()], project=project
        )
        assert answer.model_version == "cancer:2"

    eventually(answered_by_v2)
    back = admin.endpoints.deploy(
        served, "cancer:1", project=project, reason="back", wait=True, timeout=READY_TIMEOUT
    )
    assert [(v.name, v.version) for v in back.spec.variants] == [("main", 1)]
    assert [r.reason for r in admin.endpoints.history(served, project=project, limit=2)] == [
        "back",
        "v2",
    ]


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_shows_and_lists(cli: Any, project: str, served: str) -> None:
    shown = cli("endpoints", "show", served, "-p", project)
    assert shown.code == 0, shown.stderr
    assert f"/inference/{project}/{served}" in shown.stdout
    main = next(line for line in shown.stdout.splitlines() if line.startswith("main "))
    assert main.split()[:4] == ["main", "cancer:1", "100%", "1/1"]
    assert "REPLICA" in shown.stdout
    as_json = json.loads(cli("endpoints", "show", served, "-p", project, "-o", "json").stdout)
    assert as_json["status"]["phase"] == "ready"
    listed = cli("endpoints", "list", "-p", project)
    assert listed.code == 0 and served in listed.stdout and "ready" in listed.stdout


@pytest.mark.parametrize("protocol", ["plain", "mlflow", "v2"])
def test_cli_predicts_a_json_body(
    cli: Any, project: str, served: str, trained: dict[str, Any], tmp_path: Path, protocol: str
) -> None:
    frame = trained["frame"].head(3)
    rows = frame.to_numpy().tolist()
    body = {
        "plain": {"instances": rows},
        "mlflow": {"dataframe_records": frame.to_dict(orient="records")},
        "v2": {"inputs": [{"name": "x", "shape": [3, 30], "datatype": "FP64", "data": rows}]},
    }[protocol]
    result = cli("predict", served, "--json", json.dumps(body), "--protocol", protocol,
                 "-p", project, "-o", "json")  # fmt: skip
    assert result.code == 0, result.stderr
    answer = json.loads(result.stdout)
    if protocol == "v2":
        assert answer["model_name"] == served and answer["outputs"][0]["data"] == expected(
            trained, 3
        )
    else:
        assert answer == {"predictions": expected(trained, 3)}
    path = tmp_path / "body.json"
    path.write_text(json.dumps(body))
    table = cli("predict", served, "--json", f"@{path}", "--protocol", protocol, "-p", project)
    assert table.code == 0, table.stderr
    assert table.stdout.split()[:2] == ["ROW", "PREDICTION"]
    assert [int(x) for x in table.stdout.split()[3::2]] == expected(trained, 3)
    assert "answered by cancer:1 (variant main)" in table.stderr


@pytest.mark.parametrize("out_suffix", [".csv", ".parquet", ".jsonl"])
def test_cli_predicts_a_file_in_batches(
    cli: Any, project: str, served: str, trained: dict[str, Any], tmp_path: Path, out_suffix: str
) -> None:
    import pandas as pd

    frame = trained["frame"].head(23)
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / f"scored{out_suffix}"
    result = cli("predict", served, "--file", str(source), "--batch-size", "10",
                 "--output-file", str(out), "-p", project)  # fmt: skip
    assert result.code == 0, result.stderr
    assert "predicted 23 rows: cancer:1 (main) ×23" in result.stderr
    read = {".csv": pd.read_csv, ".parquet": pd.read_parquet}.get(out_suffix)
    scored = read(out) if read else pd.read_json(out, lines=True)
    assert list(scored.columns) == [*frame.columns, "prediction"]
    assert scored["prediction"].tolist() == expected(trained, 23)
    assert scored[frame.columns[0]].tolist() == pytest.approx(frame[frame.columns[0]].tolist())


def test_cli_predicts_a_parquet_file_and_prints(
    cli: Any, project: str, served: str, trained: dict[str, Any], tmp_path: Path
) -> None:
    source = tmp_path / "rows.parquet"
    trained["frame"].head(4).to_parquet(source)
    result = cli("predict", served, "-f", str(source), "--protocol", "v2", "-p", project)
    assert result.code == 0, result.stderr
    assert result.stdout.split()[:2] == ["ROW", "PREDICTION"]
    assert [int(x) for x in result.stdout.split()[3::2]] == expected(trained, 4)


def test_cli_rollout_canary_promote_rollback_history(
    cli: Any, admin: Client, project: str, served: str, trained: dict[str, Any]
) -> None:
    canary = cli("deploy", served, "--canary", "cancer:2", "--traffic", "10", "-r", "try v2",
                 "--timeout", str(READY_TIMEOUT), "-p", project)  # fmt: skip
    assert canary.code == 0, canary.stderr
    assert "main=cancer:1 (90%), canary=cancer:2 (10%)" in canary.stdout
    row = [trained["frame"].iloc[0].tolist()]
    for _ in range(20):
        answer = admin.endpoints.predict(served, row, project=project)
        assert (answer.variant, answer.model_version) in {
            ("main", "cancer:1"),
            ("canary", "cancer:2"),
        }

    start = admin.endpoints.get(served, project).spec.revision  # the canary's revision
    # promote waits (no --wait needed) until the new revision is rolled out: its replica
    # ready and routable, the old main and the canary's replicas gone
    promoted = cli("endpoints", "promote", served, "-r", "v2 is good",
                   "--timeout", str(READY_TIMEOUT), "-p", project)  # fmt: skip
    assert promoted.code == 0, promoted.stderr
    assert "main=cancer:2 (100%)" in promoted.stdout
    now = admin.endpoints.get(served, project)
    assert (now.status.phase, now.status.observed_revision) == ("ready", start + 1)
    assert [(r.variant, r.model_version, r.phase) for r in now.status.replicas] == [
        ("main", 2, "ready")
    ]
    listed = next(line for line in promoted.stdout.splitlines() if line.startswith(served))
    assert listed.split()[:3] == [served, "ready", "1/1"]
    assert f"endpoint {served}: revision {start + 1}: cancer:2 serves 100% (variant main)" in (
        promoted.stdout
    )

    # the default rollback after a promote brings the canary back, and says so
    back = cli("endpoints", "rollback", served, "-r", "undo the promotion",
               "--timeout", str(READY_TIMEOUT), "-p", project)  # fmt: skip
    assert back.code == 0, back.stderr
    assert "main=cancer:1 (90%), canary=cancer:2 (10%)" in back.stdout
    assert f"endpoint {served}: rolled back to revision {start} (now revision {start + 2})" in (
        back.stdout
    )
    assert (
        f"endpoint {served}: revision {start + 2}: cancer:1 serves 90% (variant main), "
        "cancer:2 serves 10% (variant canary)"
    ) in back.stdout
    assert f"the canary cancer:2 serves 10% again: `stratus endpoints rollback {served}`" in (
        back.stdout
    )
    now = admin.endpoints.get(served, project)
    assert sorted((r.variant, r.model_version, r.phase) for r in now.status.replicas) == [
        ("canary", 2, "ready"),
        ("main", 1, "ready"),
    ]

    # --to-revision picks one; --no-wait returns at once, saying the rollout is under way
    back_to = cli("endpoints", "rollback", served, "--to-revision", str(start - 1), "--no-wait",
                  "-p", project)  # fmt: skip
    assert back_to.code == 0, back_to.stderr
    listed = next(line for line in back_to.stdout.splitlines() if line.startswith(served))
    assert listed.split()[1] != "ready"  # the controller has not applied it yet
    assert f"rolled back to revision {start - 1} (now revision {start + 3})" in back_to.stdout
    assert (
        f"revision {start + 3} is rolling out (not waited for): "
        "cancer:1 will serve 100% (variant main)"
    ) in back_to.stdout
    rolled = admin.endpoints.wait_ready(served, timeout=READY_TIMEOUT, project=project)
    variants = rolled.spec.variants
    assert [(v.name, v.version, v.traffic) for v in variants] == [("main", 1, 100)]
    one_line_error(
        cli("endpoints", "rollback", served, "--to-revision", "999", "-p", project),
        "to_revision 999",
        "does not exist",
    )

    history = json.loads(cli("endpoints", "history", served, "-p", project, "-o", "json").stdout)
    assert [(r["action"], r["reason"]) for r in history[:4]] == [
        ("rollback", ""),
        ("rollback", "undo the promotion"),
        ("promote", "v2 is good"),
        ("canary", "try v2"),
    ]
    assert all(r["actor"] == "user:admin" for r in history[:4])
    table = cli("endpoints", "history", served, "-p", project)
    assert table.code == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:4] == ["REVISION", "ACTION", "BY", "TIME"]
    assert "main=cancer:1 (90%), canary=cancer:2 (10%)" in table.stdout
    assert "main=cancer:2 (100%)" in table.stdout

    eventually(
        lambda: _assert_version(admin.endpoints.predict(served, row, project=project), "cancer:1")
    )


def _assert_version(answer: Any, version: str) -> None:
    assert answer.model_version == version, answer


def test_cli_logs(cli: Any, project: str, served: str) -> None:
    shown = json.loads(cli("endpoints", "show", served, "-p", project, "-o", "json").stdout)
    replica = shown["status"]["replicas"][0]["id"]
    logs = cli("endpoints", "logs", served, "--lines", "20", "-p", project, "-o", "json")
    assert logs.code == 0, logs.stderr
    entries = json.loads(logs.stdout)
    assert replica in [e["replica"] for e in entries]
    assert all(isinstance(e["lines"], list) and len(e["lines"]) <= 20 for e in entries)
    one = cli("endpoints", "logs", served, "--replica", replica, "-p", project, "-o", "json")
    assert [e["replica"] for e in json.loads(one.stdout)] == [replica]
    text = cli("endpoints", "logs", served, "--replica", replica, "-p", project)
    assert text.code == 0, text.stderr


def test_cli_deploys_a_public_endpoint_then_deletes_it(
    cli: Any, admin: Client, platform: LocalPlatform, project: str, trained: dict[str, Any]
) -> None:
    name = "cancer-public"
    deployed = cli("deploy", name, "--model", "cancer@production", "--replicas", "1",
                   "--public", "--max-batch-size", "16", "-r", "for everyone",
                   "--timeout", str(READY_TIMEOUT), "-p", project)  # fmt: skip
    try:
        assert deployed.code == 0, deployed.stderr
        assert "ready" in deployed.stdout and "main=cancer:1 (100%)" in deployed.stdout
        assert f"/inference/{project}/{name}" in deployed.stdout  # the URL
        endpoint = admin.endpoints.get(name, project)
        assert endpoint.spec.public and endpoint.spec.variants[0].batching.max_batch_size == 16
        rows = trained["frame"].head(2).to_numpy().tolist()
        anonymous = httpx.post(
            f"{platform.url}/inference/{project}/{name}/predict",
            json={"instances": rows},
            timeout=30,
        )
        assert anonymous.status_code == 200, anonymous.text
        assert anonymous.json() == {"predictions": expected(trained, 2)}
        assert anonymous.headers["x-stratus-model-version"] == "cancer:1"
        pids = _replica_pids(admin, name, project)
        assert pids
        ids = [r.id for r in admin.endpoints.get(name, project).status.replicas]
        assert ids and all(f"{i}.log" in replica_files(platform) for i in ids)
    finally:
        deleted = cli("endpoints", "delete", name, "-y", "-p", project)
    assert deleted.code == 0, deleted.stderr
    assert f"deleted endpoint {name}" in deleted.stdout
    _wait_gone(pids)

    def files_gone() -> None:  # the spec, the log and its backups go with the replica
        left = [f for f in replica_files(platform) if f.startswith(tuple(ids))]
        assert left == [], left

    eventually(files_gone)
    one_line_error(cli("endpoints", "show", name, "-p", project), name)
    one_line_error(cli("predict", name, "--json", '{"instances": [[1]]}', "-p", project))


def test_cli_errors_are_one_line(cli: Any, project: str, served: str, tmp_path: Path) -> None:
    one_line_error(cli("endpoints", "show", "nope", "-p", project), "'nope'", "not found")
    one_line_error(cli("endpoints", "history", "nope", "-p", project), "'nope'")
    one_line_error(cli("predict", "nope", "--json", '{"instances": [[1]]}', "-p", project))
    one_line_error(cli("deploy", "other", "--model", "nomodel:1", "--no-wait", "-p", project))
    one_line_error(cli("endpoints", "promote", served, "-p", project), "canary")
    bad_rows = cli("predict", served, "--json", '{"instances": [[1, 2]]}', "-p", project)
    one_line_error(bad_rows)
    empty = tmp_path / "empty.csv"
    empty.write_text("a\n")
    one_line_error(cli("predict", served, "--file", str(empty), "-p", project), "no rows")


@pytest.mark.parametrize(
    "args",
    [
        ("deploy", ENDPOINT, "--traffic", "10"),
        ("deploy", ENDPOINT, "--model", "cancer:1", "--traffic", "10"),
        ("deploy", ENDPOINT),
        ("deploy", ENDPOINT, "--model", "cancer:1", "--replicas", "1000"),
        ("predict", ENDPOINT),
        ("predict", ENDPOINT, "--json", "{oops"),
        ("predict", ENDPOINT, "--file", "rows.xlsx"),
        ("endpoints", "rollback", ENDPOINT, "--to-revision", "0"),
    ],
)
def test_cli_bad_usage_exits_2(cli: Any, project: str, args: tuple[str, ...]) -> None:
    result = cli(*args, "-p", project)
    assert result.code == 2, (result.stdout, result.stderr)


def test_cli_quiet_prints_results_and_errors_only(
    cli: Any, project: str, served: str, trained: dict[str, Any], tmp_path: Path
) -> None:
    """-q (the global one, or the command's own) keeps the results on stdout and the errors on
    stderr, and nothing else: no "answered by" line per call, no summary of a file."""
    body = json.dumps({"instances": trained["frame"].head(2).values.tolist()})
    loud = cli("predict", served, "--json", body, "-p", project)
    assert loud.code == 0 and "answered by cancer:1" in loud.stderr
    for args in (("-q", "predict", served), ("predict", served, "-q")):
        quiet = cli(*args, "--json", body, "-p", project)
        assert quiet.code == 0 and quiet.stderr == "", quiet.stderr
        assert quiet.stdout == loud.stdout  # the predictions, as without -q
    source, scored = tmp_path / "rows.csv", tmp_path / "scored.csv"
    trained["frame"].head(5).to_csv(source, index=False)
    done = cli("-q", "predict", served, "--file", str(source), "--output-file", str(scored),
               "-p", project)  # fmt: skip
    assert (done.code, done.stdout, done.stderr) == (0, "", "")
    assert len(scored.read_text().splitlines()) == 6
    one_line_error(cli("-q", "predict", "nope", "--json", body, "-p", project))
