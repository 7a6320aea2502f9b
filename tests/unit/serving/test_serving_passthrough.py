"""Pass-through columns: a request carries ids and timestamps beside the model's inputs, on
every protocol; the model never sees them, the answer echoes them, capture keeps them."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pytest

from stratus.core.errors import InvalidInput
from stratus.registry.signatures import Signature
from stratus.serving.capture import CaptureRecord, label_kind, request_counts, to_rows, to_table
from stratus.serving.passthrough import carried_by
from stratus.serving.protocols import ProtocolName, Request, parse_request, render

SIGNATURE = Signature.model_validate(
    {
        "inputs": [{"name": "age", "dtype": "float64"}, {"name": "plan", "dtype": "string"}],
        "outputs": [{"name": "churned", "dtype": "int64"}],
    }
)
IDS = frozenset({"customer_id", "ts"})
ROWS = [[31.0, "pro"], [45.0, "free"]]
RECORDS = [
    {"age": 31.0, "plan": "pro", "customer_id": 4711, "ts": "2026-12-01"},
    {"age": 45.0, "plan": "free", "customer_id": 4712, "ts": "2026-12-02"},
]
CARRIED = {"customer_id": [4711, 4712], "ts": ["2026-12-01", "2026-12-02"]}


def parse(protocol: ProtocolName, document: Any, content_type: str | None = None) -> Request:
    raw = document if isinstance(document, bytes) else orjson.dumps(document)
    return parse_request(protocol, raw, content_type, SIGNATURE, max_rows=100, passthrough=IDS)


def v2_tensor(name: str, datatype: str, data: list[Any]) -> dict[str, Any]:
    return {"name": name, "shape": [len(data)], "datatype": datatype, "data": data}


def model_sees_only_inputs(request: Request) -> None:
    assert request.batch.names == ("age", "plan")
    assert request.batch["age"].tolist() == [31.0, 45.0]
    assert request.batch["plan"].tolist() == ["pro", "free"]


# --- every protocol carries them ----------------------------------------------------------------

CARRYING: list[tuple[str, ProtocolName, Any, str | None]] = [
    ("plain objects", "plain", {"instances": RECORDS}, None),
    ("plain rows + field", "plain", {"instances": ROWS, "passthrough": CARRIED}, None),
    ("mlflow records", "mlflow", {"dataframe_records": RECORDS}, None),
    ("mlflow instances", "mlflow", {"instances": RECORDS}, None),
    (
        "mlflow split",
        "mlflow",
        {
            "dataframe_split": {
                "columns": ["customer_id", "age", "ts", "plan"],
                "data": [[4711, 31.0, "2026-12-01", "pro"], [4712, 45.0, "2026-12-02", "free"]],
            }
        },
        None,
    ),
    (
        "mlflow columns",
        "mlflow",
        {"inputs": {"age": [31.0, 45.0], "plan": ["pro", "free"], **CARRIED}},
        None,
    ),
    (
        "mlflow csv",
        "mlflow",
        b"age,customer_id,plan,ts\n31.0,4711,pro,2026-12-01\n45.0,4712,free,2026-12-02\n",
        "text/csv",
    ),
    (
        "v2 tensors",
        "v2",
        {
            "inputs": [
                v2_tensor("age", "FP64", [31.0, 45.0]),
                v2_tensor("customer_id", "INT64", [4711, 4712]),
                v2_tensor("plan", "BYTES", ["pro", "free"]),
                {**v2_tensor("ts", "BYTES", ["2026-12-01", "2026-12-02"]), "shape": [2, 1]},
            ]
        },
        None,
    ),
]


@pytest.mark.parametrize(
    ("protocol", "document", "content_type"),
    [case[1:] for case in CARRYING],
    ids=[case[0] for case in CARRYING],
)
def test_pass_through_columns_never_reach_the_model_and_come_back(
    protocol: ProtocolName, document: Any, content_type: str | None
) -> None:
    request = parse(protocol, document, content_type)
    model_sees_only_inputs(request)
    assert request.passthrough == CARRIED
    answer = orjson.loads(
        render(
            protocol,
            [0, 1],
            model_name="churn",
            model_version="3",
            request_id="r1",
            signature=SIGNATURE,
            request=request,
        )
    )
    if protocol == "v2":
        outputs = {o["name"]: o for o in answer["outputs"]}
        assert outputs["churned"]["data"] == [0, 1]
        assert outputs["customer_id"] == v2_tensor("customer_id", "INT64", [4711, 4712])
        assert outputs["ts"]["datatype"] == "BYTES"
        assert outputs["ts"]["data"] == CARRIED["ts"]
    else:
        assert answer == {"predictions": [0, 1], "passthrough": CARRIED}


def test_without_the_declaration_an_id_is_an_unknown_input() -> None:
    raw = orjson.dumps({"instances": RECORDS})
    with pytest.raises(InvalidInput, match="customer_id"):
        parse_request("plain", raw, None, SIGNATURE, max_rows=100)


def test_a_request_without_them_is_answered_as_before() -> None:
    request = parse("plain", {"instances": ROWS})
    assert request.passthrough is None
    body = render(
        "plain", [0, 1], model_name="m", model_version="1", request_id="r", request=request
    )
    assert orjson.loads(body) == {"predictions": [0, 1]}


def test_rows_missing_a_column_carry_null() -> None:
    records = [dict(RECORDS[0]), {"age": 45.0, "plan": "free"}]
    request = parse("plain", {"instances": records})
    assert request.passthrough == {"customer_id": [4711, None], "ts": ["2026-12-01", None]}


def test_v2_outputs_asked_for_may_name_a_pass_through_column() -> None:
    document = {
        "inputs": [
            v2_tensor("age", "FP64", [31.0]),
            v2_tensor("plan", "BYTES", ["pro"]),
            v2_tensor("customer_id", "BYTES", ["c-1"]),
        ],
        "outputs": [{"name": "churned"}, {"name": "customer_id"}],
    }
    request = parse("v2", document)
    answer = orjson.loads(
        render(
            "v2",
            [1],
            model_name="churn",
            model_version="3",
            request_id="r",
            signature=SIGNATURE,
            request=request,
        )
    )
    assert [o["name"] for o in answer["outputs"]] == ["churned", "customer_id"]


@pytest.mark.parametrize(
    ("protocol", "document", "problem"),
    [
        ("plain", {"instances": ROWS, "passthrough": {"customer_id": [1]}}, "has 1 values"),
        ("plain", {"instances": ROWS, "passthrough": {"email": ["a", "b"]}}, "'email'"),
        ("plain", {"instances": ROWS, "passthrough": [1, 2]}, "must be an object"),
        ("mlflow", {"inputs": {"age": [1.0], "plan": ["x"], "ts": "now"}}, "list of one value"),
        (
            "mlflow",
            {"dataframe_split": {"columns": ["age", "plan", "ts"], "data": [[1.0, "x"]]}},
            "row 0 has 2 values",
        ),
        (
            "v2",
            {"inputs": [v2_tensor("ts", "BYTES", ["a"])]},
            "only pass-through columns",
        ),
        (
            "v2",
            {
                "inputs": [
                    v2_tensor("age", "FP64", [1.0]),
                    v2_tensor("plan", "BYTES", ["x"]),
                    {"name": "ts", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]},
                ]
            },
            "does not fit one value per row",
        ),
    ],
)
def test_a_malformed_pass_through_column_is_a_clear_400(
    protocol: ProtocolName, document: Any, problem: str
) -> None:
    with pytest.raises(InvalidInput, match=problem):
        parse(protocol, document)


def test_a_column_that_is_an_input_of_the_version_stays_an_input() -> None:
    with_id = Signature.model_validate(
        {"inputs": [{"name": "age", "dtype": "float64"}, {"name": "customer_id", "dtype": "int64"}]}
    )
    names = carried_by(["customer_id", "ts"], with_id)
    assert names == {"ts"}
    raw = orjson.dumps({"instances": [{"age": 1.0, "customer_id": 7, "ts": "t"}]})
    request = parse_request("plain", raw, None, with_id, max_rows=10, passthrough=names)
    assert request.batch.names == ("age", "customer_id")
    assert request.passthrough == {"ts": ["t"]}


# --- capture keeps them ---------------------------------------------------------------------


def record(protocol: ProtocolName, body: Any, answer: Any, rid: str = "r1") -> CaptureRecord:
    return CaptureRecord(
        time=1.0,
        request_id=rid,
        endpoint_uid="e1",
        variant="main",
        model_version="churn:3",
        protocol=protocol,
        content_type="application/json",
        body=orjson.dumps(body),
        response=orjson.dumps(answer),
        latency_ms=1.0,
    )


def test_capture_keeps_the_columns_and_not_the_echo_as_a_prediction() -> None:
    v2_body = dict(CARRYING[-1][2])
    v2_answer = {
        "model_name": "churn",
        "outputs": [
            v2_tensor("churned", "INT64", [0, 1]),
            v2_tensor("customer_id", "INT64", [4711, 4712]),
            v2_tensor("ts", "BYTES", CARRIED["ts"]),
        ],
    }
    plain = record("plain", {"instances": ROWS, "passthrough": CARRIED}, {"predictions": [0, 1]})
    rows = to_rows(
        [record("v2", v2_body, v2_answer), plain], lambda _: SIGNATURE, ["customer_id", "ts"]
    )
    assert rows.columns["customer_id"] == [4711, 4712, 4711, 4712]
    assert rows.columns["ts"] == CARRIED["ts"] * 2
    assert rows.columns["prediction"] == [0, 1, 0, 1]
    assert "prediction.customer_id" not in rows.columns
    # the batched path reads row objects with their ids, and sends the `passthrough` field the
    # careful way
    records = [
        record("plain", {"instances": RECORDS}, {"predictions": [0, 1]}, rid="a"),
        record("plain", {"instances": ROWS, "passthrough": CARRIED}, {"predictions": [1, 0]}, "b"),
    ]
    table, skipped = to_table(records, lambda _: SIGNATURE, ["customer_id", "ts"])
    assert skipped == 0 and table is not None
    assert table["customer_id"].to_pylist() == [4711, 4712, 4711, 4712]
    assert table["request_id"].to_pylist() == ["a", "a", "b", "b"]


def test_capture_files_list_their_requests_and_prediction_kind() -> None:
    table = pa.table(
        {
            "request_id": ["a", "a", "b", "a"],
            "row": [0, 1, 0, 2],
            "prediction": pa.array([1, 0, 1, 1], pa.int64()),
        }
    )
    ids, counts = request_counts(table)
    assert dict(zip(ids, counts, strict=True)) == {"a": 3, "b": 1}
    assert label_kind(table) == "integer"
    assert label_kind(table.set_column(2, "prediction", pa.array([0.5] * 4))) == "number"
    assert label_kind(table.set_column(2, "prediction", pa.array(["y"] * 4))) == "string"
    assert label_kind(table.drop_columns(["prediction"])) == ""
