"""Monitoring end to end on a running platform: an endpoint captures its traffic (personal data
masked, the subject hashed), the records and hourly Parquet files are readable, drift is found
on shifted traffic (ad hoc, and by a scheduled monitor with history, HTML and gauges),
accuracy is measured against ground truth posted later, and one subject's records are erased
(audited)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.client import Client
from stratus.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from stratus.testing import LocalPlatform

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")
pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")
pq = pytest.importorskip("pyarrow.parquet")

FEATURES = ["x1", "x2", "plan"]


def make_frame(n: int, seed: int, shift: float = 0.0, plans: tuple[float, ...] = (0.5, 0.3, 0.2)):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer_id": rng.integers(1000, 1100, n),
            "email": [f"user{i}@example.com" for i in rng.integers(0, 10_000, n)],
            "x1": rng.normal(0, 1, n) + shift,
            "x2": rng.normal(5, 2, n),
            "plan": rng.choice(["free", "pro", "team"], n, p=list(plans)),
        }
    )
    frame["y"] = (
        (frame["x1"] + (frame["plan"] == "pro") * 0.8 + rng.normal(0, 0.5, n)) > 0.4
    ).astype(int)
    return frame


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    platform = LocalPlatform(
        tmp_path_factory.mktemp("monitoring-home"),
        env={
            "STRATUS_MONITORING_CAPTURE_FLUSH_SECONDS": "0.2",
            "STRATUS_MONITORING_INTERVAL_SECONDS": "0.5",
        },
    )
    platform.start()
    try:
        yield platform
    finally:
        platform.stop(timeout=60)


@pytest.fixture(scope="module")
def world(
    platform: LocalPlatform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    root = tmp_path_factory.mktemp("monitoring-data")
    train = make_frame(2000, seed=1)
    train.to_csv(root / "train.csv", index=False)
    model = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [("num", "passthrough", ["x1", "x2"]), ("cat", OneHotEncoder(), ["plan"])],
                    remainder="drop",
                ),
            ),
            ("model", LogisticRegression()),
        ]
    ).fit(train.drop(columns=["y"]), train["y"])
    (root / "model").mkdir()
    skops_io.dump(model, root / "model" / "model.skops")
    project = f"mon-{uuid.uuid4().hex[:6]}"
    with platform.client() as client:
        client.projects.create(project)
        client.datasets.push(
            root / "train.csv",
            "churn",
            project=project,
            column_tags={"y": ["label"], "customer_id": ["id"], "email": ["pii"]},
        )
        client.models.push(
            root / "model",
            "churn",
            project=project,
            sample=train.drop(columns=["y"]).head(20),
            dataset_version="churn:1",
        )
        client.endpoints.create(
            "churn-api",
            [{"name": "main", "model": "churn:1"}],
            project=project,
            capture={"sample": 1.0, "pii": ["email"], "subject": "customer_id"},
        )
        client.endpoints.wait_ready("churn-api", project=project, timeout=120)
        yield {"client": client, "project": project, "root": root, "train": train}


def send(world: dict[str, Any], frame: Any, per_request: int = 5) -> list[tuple[str, int, int]]:
    """Send the frame's rows (without y); (request id, row, true label) of each row sent."""
    client: Client = world["client"]
    url = f"{client.url}/inference/{world['project']}/churn-api/predict"
    sent = []
    rows = frame.drop(columns=["y"]).to_dict(orient="records")
    with httpx.Client(headers={"authorization": f"Bearer {client.api_key}"}, timeout=30) as http:
        for start in range(0, len(rows), per_request):
            chunk = rows[start : start + per_request]
            response = http.post(url, json={"instances": chunk})
            assert response.status_code == 200, response.text
            rid = response.headers["x-request-id"]
            for i in range(len(chunk)):
                sent.append((rid, i, int(frame["y"].iloc[start + i])))
    return sent


def wait_captured(world: dict[str, Any], at_least: int) -> Any:
    client: Client = world["client"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = client.monitors.captures("churn-api", limit=5, project=world["project"])
        if found.total >= at_least:  # read again: a flush may have come between the two counts
            return client.monitors.captures("churn-api", limit=5, project=world["project"])
        time.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} captured rows after 30 s")


def test_capture_then_drift_then_performance_then_erasure(
    world: dict[str, Any], tmp_path: Path
) -> None:
    client: Client = world["client"]
    project = world["project"]

    # --- capture ---------------------------------------------------------------------------
    same = make_frame(300, seed=2)
    sent = send(world, same)
    found = wait_captured(world, 300)
    newest = found.records[0]
    assert newest["request_id"] == sent[-1][0]
    assert newest["row"] == sent[-1][1]
    assert newest["model_version"] == "churn:1"
    assert newest["email"] == "***"
    assert isinstance(newest["customer_id"], int)
    assert newest["prediction"] in (0, 1)
    assert "_subject" not in newest
    files = client.monitors.capture_files("churn-api", project=project)
    assert files and files[0].path.startswith("endpoint=churn-api/date=")
    written = client.monitors.download_captures("churn-api", tmp_path / "captures", project=project)
    assert len(written) == len(files)
    table = pq.ParquetDataset(tmp_path / "captures").read()  # one dataset, Hive partitions
    assert table.num_rows == 300
    assert "user" not in " ".join(map(str, table["email"].to_pylist()))

    # --- no drift on the same distribution; drift on shifted traffic ---------------------------
    calm = client.monitors.drift("churn-api", project=project, window_rows=300)
    assert not calm.alarm, calm.report
    names = {f["name"] for f in calm.report["features"]}
    assert names == {*FEATURES, "prediction"}  # not the id, the pii column or the label
    assert calm.reference == "churn:1"
    shifted = make_frame(300, seed=3, shift=1.5, plans=(0.1, 0.2, 0.7))
    send(world, shifted)
    wait_captured(world, 600)
    drifted = client.monitors.drift("churn-api", project=project, window_rows=300)
    assert drifted.alarm
    by_name = {f["name"]: f for f in drifted.report["features"]}
    assert by_name["x1"]["drifted"] and by_name["plan"]["drifted"]
    assert not by_name["x2"]["drifted"]
    assert by_name["x1"]["ks_p_value"] < 1e-6
    html = client.monitors.drift_html("churn-api", project=project, window_rows=300)
    assert html.count("<svg") >= 4

    # --- a scheduled monitor keeps history, serves HTML and gauges ------------------------------
    monitor = client.monitors.apply(
        name="churn-drift",
        endpoint="churn-api",
        window={"rows": 300},
        interval_seconds=5,
        min_rows=100,
        project=project,
    )
    assert monitor.status.state == "pending"
    deadline = time.monotonic() + 30
    while client.monitors.get("churn-drift", project).status.state != "alarm":
        assert time.monotonic() < deadline, client.monitors.get("churn-drift", project).status
        time.sleep(0.3)
    history = client.monitors.results("churn-drift", project=project)
    assert history and history[0].alarm and history[0].rows == 300
    page = client.monitors.report_html("churn-drift", history[0].id, project)
    assert "x1" in page and "<svg" in page
    metrics = httpx.get(
        f"{client.url}/metrics", headers={"authorization": f"Bearer {client.api_key}"}
    ).text
    series = f'endpoint="churn-api",monitor="churn-drift",project="{project}"'
    assert f"stratus_drift_detected{{{series}}} 1.0" in metrics
    assert 'feature="x1"' in metrics

    # --- ground truth, then accuracy per model version ------------------------------------------
    labels = [{"request_id": rid, "row": row, "label": y} for rid, row, y in sent]
    posted = client.monitors.ground_truth("churn-api", labels, project=project)
    assert (posted.received, posted.stored, posted.replaced) == (300, 300, 0)
    csv = tmp_path / "labels.csv"
    csv.write_text("request_id,row,label\n" + "\n".join(f"{r},{i},{y}" for r, i, y in sent[:10]))
    again = client.monitors.ground_truth("churn-api", csv, project=project)
    assert again.replaced == 10
    client.monitors.apply(
        name="churn-accuracy",
        endpoint="churn-api",
        type="performance",
        window={"seconds": 3600},
        min_rows=100,
        bounds={"min": {"accuracy": 0.99}},
        project=project,
    )
    result = client.monitors.run("churn-accuracy", project=project)
    assert result.rows == 300
    accuracy = result.report["metrics"]["accuracy"]
    assert 0.6 < accuracy < 0.99
    assert result.alarm and "accuracy" in result.report["breaches"][0]
    assert set(result.report["versions"]) == {"churn:1"}
    assert result.report["metrics"]["roc_auc"] is not None

    # --- erasure of one data subject -----------------------------------------------------------
    subject = int(same["customer_id"].iloc[0])
    before = client.monitors.captures("churn-api", limit=1000, project=project)
    count = sum(1 for r in before.records if r["customer_id"] == subject)
    assert count >= 1
    erased = client.monitors.erase(str(subject), project=project)
    assert erased.records_removed == count
    assert erased.ground_truth_removed >= 1
    after = client.monitors.captures("churn-api", limit=1000, project=project)
    assert all(r["customer_id"] != subject for r in after.records)
    assert after.total == before.total - count
    trail = client.audit.list(project=project)
    assert any(e.action == "captures.erase" for e in trail)


def test_monitor_errors_are_clear(world: dict[str, Any]) -> None:
    client: Client = world["client"]
    project = world["project"]
    with pytest.raises(NotFound, match="nope"):
        client.monitors.apply(name="m", endpoint="nope", project=project)
    with pytest.raises(InvalidInput, match="bounds"):
        client.monitors.apply(
            name="m", endpoint="churn-api", bounds={"min": {"accurracy": 1}}, project=project
        )
    with pytest.raises(InvalidInput, match="p-values"):
        client.monitors.apply(
            name="m",
            endpoint="churn-api",
            drift={"numeric_method": "ks", "numeric_threshold": 5},
            project=project,
        )
    client.monitors.apply(
        name="tiny", endpoint="churn-api", window={"seconds": 10}, min_rows=100_000, project=project
    )
    with pytest.raises(Conflict, match="min_rows"):
        client.monitors.run("tiny", project=project)
    with pytest.raises(InvalidInput, match="has no column"):
        client.monitors.drift("churn-api", project=project, features=["nope"])
    with pytest.raises(InvalidInput):
        client.monitors.ground_truth(
            "churn-api", [{"request_id": "r", "label": {"a": 1}}], project=project
        )


def test_only_owners_erase(world: dict[str, Any], platform: LocalPlatform) -> None:
    client: Client = world["client"]
    project = world["project"]
    client.service_accounts.create("ed", project=project, role="editor")
    key = client.service_accounts.create_key("ed", project=project)
    with platform.client(key.secret) as editor:
        with pytest.raises(PermissionDenied):
            editor.monitors.erase("1", project=project)
        assert editor.monitors.captures("churn-api", project=project).endpoint == "churn-api"


def test_the_cli_drives_capture_and_drift(
    world: dict[str, Any], platform: LocalPlatform, run_cli: Any, tmp_path: Path
) -> None:
    env = {**platform.cli_env(), "STRATUS_PROJECT": world["project"]}
    send(world, make_frame(150, seed=7, shift=2.0, plans=(0.1, 0.1, 0.8)))
    wait_captured(world, 150)
    shown = run_cli("monitors", "capture", "churn-api", "-n", "2", env=env)
    assert shown.code == 0, shown.stderr
    assert "REQUEST_ID" in shown.stdout and "***" in shown.stdout
    page = tmp_path / "drift.html"
    report = run_cli(
        "monitors", "drift", "churn-api", "--rows", "150", "--html", str(page), env=env
    )
    assert report.code == 1, report.stderr  # drifted
    assert "DRIFT" in report.stdout and "x1" in report.stdout
    assert page.read_text().count("<svg") >= 4
    bad = run_cli("monitors", "drift", "churn-api", "--window", "5x", env=env)
    assert bad.code == 2 and "Traceback" not in bad.stderr
    missing = run_cli("monitors", "capture", "nope", env=env)
    assert missing.code == 1 and "nope" in missing.stderr and "Traceback" not in missing.stderr
