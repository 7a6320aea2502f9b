"""Captured requests back into rows: every protocol, predictions of every shape, records that
cannot be read, and the bounded buffer."""

from __future__ import annotations

import orjson

from stratus.registry.signatures import Signature
from stratus.serving.capture import CaptureBuffer, CaptureRecord, to_rows

SIGNATURE = Signature.model_validate(
    {
        "inputs": [
            {"name": "age", "dtype": "float64"},
            {"name": "plan", "dtype": "string"},
        ],
        "outputs": [{"name": "churned", "dtype": "int64"}],
    }
)


def record(
    protocol: str, body: object, answer: object, rid: str = "r1", t: float = 1.0
) -> CaptureRecord:
    return CaptureRecord(
        time=t,
        request_id=rid,
        endpoint_uid="e1",
        variant="main",
        model_version="churn:3",
        protocol=protocol,  # type: ignore[arg-type]
        content_type="application/json",
        body=orjson.dumps(body),
        response=orjson.dumps(answer),
        latency_ms=1.5,
    )


def test_plain_records_become_one_row_per_instance() -> None:
    rows = to_rows(
        [
            record(
                "plain",
                {"instances": [{"age": 30, "plan": "pro"}, {"age": 41.5, "plan": "free"}]},
                {"predictions": [1, 0]},
            )
        ],
        lambda mv: SIGNATURE,
    )
    assert rows.skipped == 0
    assert rows.columns["age"] == [30.0, 41.5]
    assert rows.columns["plan"] == ["pro", "free"]
    assert rows.columns["prediction"] == [1, 0]
    assert rows.columns["row"] == [0, 1]
    assert rows.columns["request_id"] == ["r1", "r1"]
    assert rows.columns["model_version"] == ["churn:3", "churn:3"]


def test_v2_and_mlflow_requests_and_dict_predictions() -> None:
    v2 = record(
        "v2",
        {
            "inputs": [
                {"name": "age", "shape": [1], "datatype": "FP64", "data": [50]},
                {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["pro"]},
            ]
        },
        {"outputs": [{"name": "churned", "shape": [1], "datatype": "INT64", "data": [1]}]},
        rid="r2",
    )
    mlflow = record(
        "mlflow",
        {"dataframe_split": {"columns": ["age", "plan"], "data": [[20, "free"]]}},
        {"predictions": [{"label": 0, "probability": 0.2}]},
        rid="r3",
    )
    rows = to_rows([v2, mlflow], lambda mv: SIGNATURE)
    assert rows.columns["request_id"] == ["r2", "r3"]
    assert rows.columns["prediction"] == [1, None]
    assert rows.columns["prediction.label"] == [None, 0]
    assert rows.columns["prediction.probability"] == [None, 0.2]


def test_unreadable_records_are_skipped_and_counted() -> None:
    good = record("plain", {"instances": [{"age": 1, "plan": "a"}]}, {"predictions": [0]})
    bad = record("plain", {"instances": [{"age": "x", "plan": "a"}]}, {"predictions": [0]})
    short = record("plain", {"instances": [{"age": 1, "plan": "a"}]}, {"predictions": []})
    rows = to_rows([good, bad, short], lambda mv: SIGNATURE)
    assert rows.skipped == 2
    assert rows.n_rows == 1


def test_an_input_named_like_a_record_column_is_kept_apart() -> None:
    rows = to_rows(
        [record("plain", {"instances": [{"time": 5, "x": 1}]}, {"predictions": [2]})],
        lambda mv: None,
    )
    assert rows.columns["input.time"] == [5]
    assert rows.columns["time"] == [1.0]


def test_the_buffer_drops_beyond_its_capacity_and_drains_in_order() -> None:
    buffer = CaptureBuffer(capacity=3)
    for i in range(5):
        buffer.add(record("plain", {}, {}, rid=f"r{i}"))
    assert (buffer.accepted, buffer.dropped, len(buffer)) == (3, 2, 3)
    assert [r.request_id for r in buffer.drain()] == ["r0", "r1", "r2"]
    assert len(buffer) == 0
