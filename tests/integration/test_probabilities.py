"""Class probabilities end to end: a classifier deployed with capture answers its class
probabilities when asked (the CLI's `--proba`, the SDK's `proba=True`, in all three protocols),
and a performance monitor takes the probability of a class as its prediction."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from stratus.client import Client
from stratus.core.errors import Conflict, InvalidInput, NotFound
from stratus.registry.signatures import infer_signature
from stratus.testing import LocalPlatform

np = pytest.importorskip("numpy")
pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")

ENDPOINT = "cancer-proba"


@pytest.fixture(scope="module")
def served(platform: LocalPlatform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    root = tmp_path_factory.mktemp("proba-model")
    skops_io.dump(model, root / "model.skops")
    project = f"proba-{uuid.uuid4().hex[:6]}"
    signature = infer_signature(x[:5], classes=model.classes_).model_dump(mode="json")
    with platform.client() as client:
        client.projects.create(project)
        client.models.push(root / "model.skops", "cancer", project=project, signature=signature)
        client.endpoints.create(
            ENDPOINT,
            [{"name": "main", "model": "cancer:1"}],
            project=project,
            capture={"sample": 1.0},
        )
        client.endpoints.wait_ready(ENDPOINT, project=project, timeout=180)
    return {"project": project, "model": model, "x": x, "y": y}


def test_the_cli_asks_for_probabilities_with_proba(
    served: dict[str, Any], cli: Callable[..., Any]
) -> None:
    rows = served["x"][:3].tolist()
    expected = served["model"].predict_proba(served["x"][:3])
    body = json.dumps({"instances": rows})

    answered = cli("predict", ENDPOINT, "--json", body, "--proba", "-p", served["project"],
                   "-o", "json")  # fmt: skip
    table = cli("predict", ENDPOINT, "--json", body, "--proba", "-p", served["project"])
    labels = cli("predict", ENDPOINT, "--json", body, "-p", served["project"], "-o", "json")

    assert answered.code == 0, answered.stderr
    got = [[p["0"], p["1"]] for p in json.loads(answered.stdout)["predictions"]]
    np.testing.assert_allclose(got, expected)
    assert "PROBABILITY.0" in table.stdout and "PROBABILITY.1" in table.stdout
    assert (
        json.loads(labels.stdout)["predictions"]
        == served["model"].predict(served["x"][:3]).tolist()
    )


@pytest.mark.parametrize("protocol", ["plain", "mlflow", "v2"])
def test_the_sdk_asks_for_probabilities_in_every_protocol(
    served: dict[str, Any], admin: Client, protocol: str
) -> None:
    x = served["x"][10:14]

    answer = admin.endpoints.predict(
        ENDPOINT,
        x,
        project=served["project"],
        protocol=protocol,
        proba=True,  # type: ignore[arg-type]
    )

    got = [[p["0"], p["1"]] for p in answer.predictions]
    np.testing.assert_allclose(got, served["model"].predict_proba(x), rtol=1e-6)


def test_a_monitor_takes_the_probability_of_a_class_as_the_prediction(
    served: dict[str, Any], admin: Client
) -> None:
    project, x, y = served["project"], served["x"], served["y"]
    sent = []
    for start in range(100, 160, 6):
        answer = admin.endpoints.predict(
            ENDPOINT, x[start : start + 6], project=project, proba=True
        )
        sent += [(answer.request_id, i, int(y[start + i])) for i in range(6)]
    labels = [{"request_id": r, "row": i, "label": t} for r, i, t in sent]
    deadline = time.monotonic() + 60
    while True:  # ground truth is taken once its requests are captured (written every 2 s)
        try:
            admin.monitors.ground_truth(ENDPOINT, labels, project=project)
            break
        except NotFound:
            assert time.monotonic() < deadline, "the answers were not captured within 60 s"
            time.sleep(0.2)
    with pytest.raises(InvalidInput, match="is not 'label' or 'probability:CLASS'"):
        admin.monitors.apply(
            name="bad", endpoint=ENDPOINT, type="performance", prediction_source="proba:1",
            project=project,
        )  # fmt: skip
    with pytest.raises(InvalidInput, match="has no class '7' \\(its classes: 0, 1\\)"):
        admin.monitors.apply(
            name="bad", endpoint=ENDPOINT, type="performance", prediction_source="probability:7",
            project=project,
        )  # fmt: skip
    admin.monitors.apply(
        name="cancer-auc",
        endpoint=ENDPOINT,
        type="performance",
        prediction_source="probability:1",
        min_rows=30,
        bounds={"min": {"roc_auc": 0.9}},
        project=project,
    )

    deadline = time.monotonic() + 60
    while True:  # until every labelled answer is captured (written every 2 s)
        try:
            result = admin.monitors.run("cancer-auc", project=project)
            if result.rows == 60:
                break
        except Conflict:  # nothing captured yet
            pass
        assert time.monotonic() < deadline, "the labelled answers were not captured in 60 s"
        time.sleep(0.2)

    truth = [t for _, _, t in sent]
    scores = served["model"].predict_proba(x[100:160])[:, 1]
    from sklearn.metrics import accuracy_score, roc_auc_score

    assert result.rows == 60 and not result.alarm
    metrics = result.report["metrics"]
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(truth, scores))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(truth, scores > 0.5))


def test_an_onnx_version_gets_its_signature_from_its_graph(
    served: dict[str, Any], admin: Client, tmp_path: Any
) -> None:
    skl2onnx = pytest.importorskip("skl2onnx")
    onx = skl2onnx.to_onnx(served["model"], served["x"][:1].astype(np.float32))
    (tmp_path / "model.onnx").write_bytes(onx.SerializeToString())

    version = admin.models.push(tmp_path / "model.onnx", "cancer-onnx", project=served["project"])

    assert version.signature == {
        "inputs": [{"name": "X", "dtype": "float32", "shape": [-1, 30]}],
        "outputs": [
            {"name": "label", "dtype": "int64", "shape": [-1]},
            {"name": "probabilities", "dtype": "float32", "shape": [-1, 2], "classes": [0, 1]},
        ],
        "description": "",
    }
