"""Class probabilities on the three protocols: asked for with a request parameter, answered as
an output tensor (v2) or one object per row keyed by class (MLflow, plain), refused with a 400
for a regressor, and captured as `probability.CLASS` columns."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from stratus.core.errors import InvalidInput
from stratus.registry.flavors.sklearn import SklearnModel
from stratus.registry.signatures import Signature, TensorSpec
from stratus.serving import protocols
from stratus.serving.capture import CaptureRecord, to_rows, to_table
from stratus.serving.replica import Replica, ReplicaSpec
from stratus.serving.wire import Kind

SIGNATURE = Signature(inputs=[TensorSpec(name=n, dtype="float64") for n in ("a", "b")])
ROWS = [[0.0, 1.0], [3.0, -1.0], [1.0, 1.0]]
X = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5], [3.0, 3.0], [0.5, 2.0], [2.5, 2.5]])
Y = np.array(["no", "no", "yes", "yes", "no", "yes"])
PROBA = {"method": "predict_proba"}


def bodies(parameters: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The same rows in each protocol, with the protocol's parameters field when given."""
    flat = [v for row in ROWS for v in row]
    found: dict[str, dict[str, Any]] = {
        "plain": {"instances": ROWS},
        "mlflow": {"dataframe_split": {"columns": ["a", "b"], "data": ROWS}},
        "v2": {"inputs": [{"name": "x", "shape": [3, 2], "datatype": "FP64", "data": flat}]},
    }
    if parameters is not None:
        for protocol, body in found.items():
            body[protocols.PARAMETERS_FIELD[protocol]] = parameters  # type: ignore[index]
    return found


@pytest.mark.parametrize("protocol", protocols.PROTOCOLS)
def test_each_protocol_asks_for_probabilities_in_its_parameters(
    protocol: protocols.ProtocolName,
) -> None:
    plain = protocols.parse_request(
        protocol, orjson.dumps(bodies()[protocol]), None, SIGNATURE, max_rows=100
    )
    asked = protocols.parse_request(
        protocol, orjson.dumps(bodies(PROBA)[protocol]), None, SIGNATURE, max_rows=100
    )
    other = protocols.parse_request(  # other parameters are left alone
        protocol,
        orjson.dumps(bodies({"method": "predict", "temperature": 1})[protocol]),
        None,
        SIGNATURE,
        max_rows=100,
    )
    assert (plain.method, asked.method, other.method) == ("predict", "predict_proba", "predict")
    assert asked.batch.n_rows == 3


@pytest.mark.parametrize("protocol", protocols.PROTOCOLS)
@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"method": "proba"}, "parameter 'method' must be 'predict' .* or 'predict_proba'"),
        ({"method": 1}, "got 1"),
        ([1], "must be an object"),
    ],
)
def test_a_bad_method_is_a_clear_400(
    protocol: protocols.ProtocolName, parameters: Any, message: str
) -> None:
    body = orjson.dumps(bodies(parameters)[protocol])
    with pytest.raises(InvalidInput, match=message):
        protocols.parse_request(protocol, body, None, SIGNATURE, max_rows=100)


def test_answers_per_protocol() -> None:
    values = np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32)
    answer = protocols.Probabilities(values, [np.int64(0), np.int64(1)])

    for protocol in ("plain", "mlflow"):
        body = orjson.loads(
            protocols.render(protocol, answer, model_name="m", model_version="1", request_id="r")
        )
        assert body == {"predictions": [{"0": 0.25, "1": 0.75}, {"0": 1.0, "1": 0.0}]}
    v2 = orjson.loads(
        protocols.render("v2", answer, model_name="m", model_version="1", request_id="r")
    )
    assert v2["outputs"] == [
        {
            "name": "probabilities",
            "shape": [2, 2],
            "datatype": "FP32",
            "data": [0.25, 0.75, 1.0, 0.0],
            "parameters": {"classes": [0, 1]},
        }
    ]


def test_v2_model_metadata_lists_the_classes() -> None:
    signature = Signature(
        inputs=SIGNATURE.inputs,
        outputs=[
            TensorSpec(name="label", dtype="string"),
            TensorSpec(name="probabilities", dtype="float64", shape=[-1, 2], classes=["no", "yes"]),
        ],
    )
    meta = protocols.v2_model_metadata("m", "1", signature)
    assert meta["outputs"][1] == {
        "name": "probabilities",
        "datatype": "FP64",
        "shape": [-1, 2],
        "parameters": {"classes": ["no", "yes"]},
    }
    assert "parameters" not in meta["outputs"][0]


# --- a replica ---------------------------------------------------------------------------------


def replica(fitted: Any) -> Replica:
    spec = ReplicaSpec(
        model_dir=Path("/nonexistent"),
        flavor="sklearn",
        signature=SIGNATURE.model_dump(mode="json"),
        model_name="churn",
        model_version=3,
        secret="s" * 32,
    )
    return Replica(spec, SklearnModel(fitted, SIGNATURE))


def classifier() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(X, Y)


KINDS = {"plain": Kind.PLAIN_PREDICT, "mlflow": Kind.MLFLOW_INVOCATIONS, "v2": Kind.V2_INFER}


def ask(r: Replica, protocol: str, parameters: dict[str, Any] | None) -> tuple[int, Any]:
    body = orjson.dumps(bodies(parameters)[protocol])

    async def go() -> tuple[int, bytes]:
        try:
            return await r.answer(KINDS[protocol], "application/json", body)
        finally:
            await r.close()

    status, payload = asyncio.run(go())
    return status, orjson.loads(payload)


@pytest.mark.parametrize("protocol", protocols.PROTOCOLS)
def test_a_classifier_answers_probabilities_when_asked(protocol: str) -> None:
    fitted = classifier()
    expected = fitted.predict_proba(np.array(ROWS))

    status, body = ask(replica(fitted), protocol, PROBA)
    _, labels = ask(replica(fitted), protocol, None)

    assert status == 200, body
    if protocol == "v2":
        (output,) = body["outputs"]
        assert output["name"] == "probabilities" and output["datatype"] == "FP64"
        assert output["shape"] == [3, 2] and output["parameters"] == {"classes": ["no", "yes"]}
        np.testing.assert_allclose(np.reshape(output["data"], (3, 2)), expected)
        assert labels["outputs"][0]["data"] == fitted.predict(np.array(ROWS)).tolist()
    else:
        got = [[row["no"], row["yes"]] for row in body["predictions"]]
        np.testing.assert_allclose(got, expected)
        assert labels["predictions"] == fitted.predict(np.array(ROWS)).tolist()


@pytest.mark.parametrize("protocol", protocols.PROTOCOLS)
def test_a_regressor_asked_for_probabilities_is_a_400_saying_why(protocol: str) -> None:
    from sklearn.linear_model import LinearRegression

    status, body = ask(replica(LinearRegression().fit(X, (Y == "yes") * 1.0)), protocol, PROBA)

    assert status == 400
    detail = body.get("error") or body["detail"]  # v2 errors: {"error": ...}
    assert detail.startswith("churn:3 gives no class probabilities: it is a regressor")
    assert "LinearRegression" in detail


def test_v2_metadata_of_a_classifier_without_declared_outputs_names_its_classes() -> None:
    r = replica(classifier())
    status, payload = asyncio.run(r.answer(Kind.METADATA, "", b""))
    outputs = orjson.loads(payload)["outputs"]
    assert [o["name"] for o in outputs] == ["predict", "probabilities"]
    assert outputs[1]["parameters"] == {"classes": ["no", "yes"]}


# --- capture -----------------------------------------------------------------------------------


def record(protocol: str, body: dict[str, Any], answer: bytes, rid: str) -> CaptureRecord:
    return CaptureRecord(
        1.7e9, rid, "ep", "main", "churn:3", protocol, "", orjson.dumps(body), answer, 1.0
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", protocols.PROTOCOLS)
def test_capture_keeps_probabilities_as_a_column_per_class(protocol: str) -> None:
    answer = protocols.Probabilities(np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]), [0, 1])
    rendered = protocols.render(protocol, answer, model_name="m", model_version="3", request_id="r")
    asked = record(protocol, bodies(PROBA)[protocol], rendered, "r1")
    labels = protocols.render(protocol, np.array([1, 0, 1]), model_name="m", model_version="3",
                              request_id="r")  # fmt: skip
    plain = record(protocol, bodies()[protocol], labels, "r2")

    table, skipped = to_table([asked, plain], lambda _: SIGNATURE)

    assert skipped == 0 and table is not None
    columns = table.to_pydict()
    assert columns["request_id"] == ["r1"] * 3 + ["r2"] * 3
    assert columns["probability.1"] == [0.8, 0.4, 0.5, None, None, None]
    assert columns["probability.0"][:3] == [0.2, 0.6, 0.5]
    assert columns["prediction"] == [None, None, None, 1, 0, 1]
    assert to_rows([asked], lambda _: SIGNATURE).columns["probability.1"] == [0.8, 0.4, 0.5]
