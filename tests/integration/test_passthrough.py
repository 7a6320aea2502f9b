"""Ids that travel with a request, on the shared platform: an endpoint declares pass-through
columns its model was not trained on; every protocol carries them, the answer echoes them,
capture keeps them (and hashes the subject among them), the model never gets them. A capture
subject that is no column of the requests is refused; ground truth for what was never captured,
or of the wrong kind, is refused; a canary failing its bounds alarms on its own, by version."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.client import Client
from stratus.core.errors import InvalidInput, NotFound
from stratus.testing import LocalPlatform, wait_for

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")

ENDPOINT = "churn-ids"
WAIT = 60.0


def frame(n: int, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame({"x1": rng.normal(0, 1, n), "x2": rng.normal(0, 1, n)})
    data["y"] = (data["x1"] > 0).astype(int)
    return data


@pytest.fixture(scope="module")
def world(platform: LocalPlatform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """churn:1 predicts y well, churn:2 (trained on flipped labels) badly; neither knows
    customer_id. The endpoint serves churn:1 and declares customer_id and ts pass-through."""
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("passthrough-models")
    train = frame(400, seed=1)
    features = train[["x1", "x2"]]
    for name, labels in (("good", train["y"]), ("bad", 1 - train["y"])):
        (root / name).mkdir()
        skops_io.dump(LogisticRegression().fit(features, labels), root / name / "model.skops")
    project = f"ids-{uuid.uuid4().hex[:6]}"
    with platform.client() as client:
        client.projects.create(project)
        for name in ("good", "bad"):
            client.models.push(root / name, "churn", project=project, sample=features.head(20))
        client.endpoints.create(
            ENDPOINT,
            [{"name": "main", "model": "churn:1"}],
            project=project,
            capture={"sample": 1.0, "subject": "customer_id"},
            passthrough=["customer_id", "ts"],
        )
        client.endpoints.wait_ready(ENDPOINT, project=project, timeout=180)
        yield {"client": client, "project": project}
        client.endpoints.delete(ENDPOINT, project)


def http(world: Any) -> httpx.Client:
    client: Client = world["client"]
    return httpx.Client(
        base_url=f"{client.url}/inference/{world['project']}/{ENDPOINT}",
        headers={"authorization": f"Bearer {client.api_key}"},
        timeout=30,
    )


def test_ids_travel_with_requests_on_every_protocol(world: Any) -> None:
    client: Client = world["client"]
    project = world["project"]
    with http(world) as inference:
        plain = inference.post(
            "/predict",
            json={"instances": [{"x1": 2.0, "x2": 0.0, "customer_id": 4711, "ts": "12:00"}]},
        )
        assert plain.status_code == 200, plain.text
        assert plain.json()["passthrough"] == {"customer_id": [4711], "ts": ["12:00"]}
        assert plain.json()["predictions"] == [1]
        split = {"columns": ["customer_id", "x1", "x2"], "data": [[4712, -2.0, 0.0]]}
        mlflow = inference.post("/invocations", json={"dataframe_split": split})
        assert mlflow.status_code == 200, mlflow.text
        assert mlflow.json() == {"predictions": [0], "passthrough": {"customer_id": [4712]}}
        v2 = inference.post(
            f"/v2/models/{ENDPOINT}/infer",
            json={
                "inputs": [
                    {"name": "x1", "shape": [1], "datatype": "FP64", "data": [2.0]},
                    {"name": "x2", "shape": [1], "datatype": "FP64", "data": [0.0]},
                    {"name": "customer_id", "shape": [1], "datatype": "INT64", "data": [4713]},
                ]
            },
        )
        assert v2.status_code == 200, v2.text
        outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
        assert outputs["customer_id"] == [4713]
        # an id not declared is still an unknown input: the model's signature holds
        bad = inference.post("/predict", json={"instances": [{"x1": 1.0, "x2": 0.0, "email": "e"}]})
        assert bad.status_code == 400 and "email" in bad.json()["detail"]
    ids = [r.headers["x-request-id"] for r in (plain, mlflow, v2)]

    # a label posted at once is not refused because its capture still waits to be written
    posted = client.monitors.ground_truth(
        ENDPOINT, [{"request_id": ids[0], "label": 1}], project=project
    )
    assert posted.stored == 1

    captured = wait_for(
        "the captures",
        lambda: [
            r
            for r in client.monitors.captures(ENDPOINT, limit=50, project=project).records
            if r["request_id"] in ids
        ],
    )
    by_id = {r["request_id"]: r for r in captured}
    assert set(by_id) == set(ids)
    assert [by_id[i]["customer_id"] for i in ids] == [4711, 4712, 4713]
    assert by_id[ids[0]]["ts"] == "12:00"
    assert by_id[ids[1]]["prediction"] == 0
    assert by_id[ids[2]]["prediction"] == 1
    assert not any(key.startswith("prediction.") for r in captured for key in r)

    # the subject was hashed from the pass-through column: erasing it finds its records
    erased = client.monitors.erase("4712", endpoint=ENDPOINT, project=project)
    assert erased.records_removed == 1
    with pytest.raises(NotFound, match=ids[1]):  # an erased request takes no more labels
        client.monitors.ground_truth(
            ENDPOINT, [{"request_id": ids[1], "label": 0}], project=project
        )


def test_a_subject_that_no_request_carries_is_refused(
    world: Any, platform: LocalPlatform, run_cli: Any
) -> None:
    client: Client = world["client"]
    project = world["project"]
    with pytest.raises(InvalidInput, match="'email'") as refused:
        client.endpoints.create(
            "churn-other",
            [{"name": "main", "model": "churn:1"}],
            project=project,
            capture={"sample": 1.0, "subject": "email"},
        )
    assert "x1, x2" in refused.value.detail and "passthrough" in refused.value.detail
    assert refused.value.extra["allowed"] == ["x1", "x2"]
    with pytest.raises(InvalidInput, match="'email'"):
        client.endpoints.update(
            ENDPOINT, capture={"sample": 1.0, "subject": "email"}, project=project
        )
    with pytest.raises(InvalidInput, match="'customer_id'"):  # no longer declared
        client.endpoints.update(ENDPOINT, passthrough=["ts"], project=project)
    env = {**platform.cli_env(), "STRATUS_PROJECT": project}
    cli = run_cli("endpoints", "capture", ENDPOINT, "--subject", "email", env=env)
    assert cli.code == 1 and "'email'" in cli.stderr and "Traceback" not in cli.stderr
    # declared and named at once: accepted
    ok = run_cli(
        "endpoints", "capture", ENDPOINT, "--subject", "ts",
        "--passthrough", "customer_id,ts", env=env,
    )  # fmt: skip
    assert ok.code == 0, ok.stderr
    assert "subject: ts" in ok.stdout
    client.endpoints.update(
        ENDPOINT, capture={"sample": 1.0, "subject": "customer_id"}, project=project
    )
    assert client.endpoints.get(ENDPOINT, project).spec.passthrough == ["customer_id", "ts"]


def test_ground_truth_for_what_was_never_captured_or_of_the_wrong_kind_is_refused(
    world: Any,
) -> None:
    client: Client = world["client"]
    project = world["project"]
    with http(world) as inference:
        answer = inference.post("/predict", json={"instances": [[1.0, 0.0]]})
        assert answer.status_code == 200, answer.text
    rid = answer.headers["x-request-id"]
    with pytest.raises(NotFound, match="req-never-sent"):
        client.monitors.ground_truth(
            ENDPOINT, [{"request_id": "req-never-sent", "label": 1}], project=project
        )
    with pytest.raises(NotFound, match="no row 3"):
        client.monitors.ground_truth(
            ENDPOINT, [{"request_id": rid, "row": 3, "label": 1}], project=project
        )
    with pytest.raises(InvalidInput, match="banana"):
        client.monitors.ground_truth(
            ENDPOINT, [{"request_id": rid, "label": "banana"}], project=project
        )
    with pytest.raises(NotFound):  # a batch with one unknown id stores nothing
        client.monitors.ground_truth(
            ENDPOINT,
            [{"request_id": rid, "label": 1}, {"request_id": "req-nope", "label": 0}],
            project=project,
        )
    assert (
        client.monitors.ground_truth(
            ENDPOINT, [{"request_id": rid, "label": True}], project=project
        ).stored
        == 1
    )


def test_a_failing_canary_alarms_by_version_while_the_whole_holds(
    world: Any, tmp_path: Path
) -> None:
    client: Client = world["client"]
    project = world["project"]
    client.endpoints.canary(ENDPOINT, "churn:2", 15, project=project)
    client.endpoints.wait_ready(ENDPOINT, project=project, timeout=180)
    traffic = frame(200, seed=5)
    labels = []
    with http(world) as inference:
        for i, row in traffic.iterrows():
            body = {"instances": [{"x1": row.x1, "x2": row.x2, "customer_id": int(i)}]}
            answer = inference.post("/predict", json=body)
            assert answer.status_code == 200, answer.text
            labels.append({"request_id": answer.headers["x-request-id"], "label": int(row.y)})
    client.monitors.ground_truth(ENDPOINT, labels, project=project)
    common = {
        "endpoint": ENDPOINT,
        "type": "performance",
        "window": {"rows": 200},
        "min_rows": 10,
        "bounds": {"min": {"accuracy": 0.7}},
        "project": project,
    }
    client.monitors.apply(name="whole-only", per_version=False, **common)
    whole = client.monitors.run("whole-only", project=project)
    assert not whole.alarm, whole.report  # the canary's misses hide in the whole
    client.monitors.apply(name="by-version", **common)
    result = client.monitors.run("by-version", project=project)
    assert result.alarm
    assert [b for b in result.report["breaches"] if b.startswith("churn:2: accuracy")]
    assert not [b for b in result.report["breaches"] if "churn:1" in b]
    assert result.report["versions"]["churn:2"]["judged"]

    metrics = httpx.get(
        f"{client.url}/metrics", headers={"authorization": f"Bearer {client.api_key}"}
    ).text
    series = (
        f'endpoint="{ENDPOINT}",model_version="churn:2",monitor="by-version",project="{project}"'
    )
    assert f"stratus_monitor_version_alarm{{{series}}} 1.0" in metrics
    client.alerts.apply(
        project,
        name="canary-accuracy",
        metric="stratus_monitor_version_alarm",
        match={"endpoint": ENDPOINT, "monitor": "by-version"},
        comparison=">",
        threshold=0,
        summary="{labels[model_version]} is out of its accuracy bounds",
    )
    fired = wait_for(
        "the alert", lambda: client.alerts.history(project, rule="canary-accuracy", state="firing")
    )
    assert {e.labels["model_version"] for e in fired} == {"churn:2"}
    assert fired[0].summary == "churn:2 is out of its accuracy bounds"
