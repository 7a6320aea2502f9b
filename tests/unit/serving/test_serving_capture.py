"""Captured requests back into rows: every protocol, predictions of every shape, records that
cannot be read, and the bounded buffer."""

from __future__ import annotations

import orjson
import pyarrow as pa

from stratus.registry.signatures import Signature
from stratus.serving.capture import (
    RECORD_OVERHEAD,
    CaptureBuffer,
    CaptureRecord,
    Columns,
    _arrow_table,
    _object_table,
    columns_table,
    to_rows,
    to_table,
)

SIGNATURE = Signature.model_validate(
    {
        "inputs": [
            {"name": "age", "dtype": "float64"},
            {"name": "plan", "dtype": "string"},
        ],
        "outputs": [{"name": "churned", "dtype": "int64"}],
    }
)


#: Two numeric inputs: rows as lists of one type, which Arrow's JSON reader reads.
NUMBERS = Signature.model_validate(
    {
        "inputs": [{"name": "age", "dtype": "float64"}, {"name": "plan", "dtype": "int64"}],
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


def test_the_buffer_is_bounded_by_bytes_whatever_its_record_capacity() -> None:
    big = record("plain", {"instances": [{"text": "x" * 4000}]}, {"predictions": [1]})
    size = len(big.body) + len(big.response) + RECORD_OVERHEAD
    buffer = CaptureBuffer(capacity=200_000, max_bytes=100 * size)
    for _ in range(10_000):
        buffer.add(big)
        assert buffer.bytes <= buffer.max_bytes
    assert (buffer.accepted, buffer.dropped, len(buffer)) == (100, 9_900, 100)
    assert len(buffer.drain()) == 100
    assert (buffer.bytes, len(buffer), buffer.drained_bytes) == (0, 0, 100 * size)
    buffer.add(big)  # drained: room again
    assert (buffer.accepted, len(buffer), buffer.bytes) == (101, 1, size)


def test_the_batch_reader_gives_what_the_careful_one_gives() -> None:
    records = [
        record("plain", {"instances": [{"age": 30, "plan": "pro"}]}, {"predictions": [1]}, "a"),
        record("plain", {"instances": [[41.5, "free"], [7, "pro"]]}, {"predictions": [0, 1]}, "b"),
        record(
            "mlflow",
            {"dataframe_split": {"columns": ["age", "plan"], "data": [[20, "team"]]}},
            {"predictions": [0]},
            "c",
        ),
        record(
            "mlflow", {"dataframe_records": [{"age": 5, "plan": "x"}]}, {"predictions": [1]}, "d"
        ),
    ]
    for batch in (records[:1], records[1:2], records[2:]):
        fast, skipped = to_table(batch, lambda mv: SIGNATURE)
        careful = columns_table(to_rows(batch, lambda mv: SIGNATURE).columns)
        assert skipped == 0 and fast is not None
        assert fast.sort_by("request_id").to_pylist() == careful.sort_by("request_id").to_pylist()
    table, _ = to_table(records, lambda mv: SIGNATURE)
    assert table is not None and table.num_rows == 5
    assert table["age"].type == pa.float64()  # the signature's type, though JSON sent ints
    pairs = zip(table["request_id"].to_pylist(), table["row"].to_pylist(), strict=True)
    assert sorted(pairs) == [
        ("a", 0),
        ("b", 0),
        ("b", 1),
        ("c", 0),
        ("d", 0),
    ]


def test_odd_batches_fall_back_to_the_careful_reader() -> None:
    mixed = [
        record("plain", {"instances": [{"age": 1, "plan": "a"}]}, {"predictions": [0]}, "a"),
        record("plain", {"instances": [[2, "b"]]}, {"predictions": [1]}, "b"),  # rows, not objects
        record("plain", {"instances": [{"age": "x", "plan": "a"}]}, {"predictions": [0]}, "c"),
    ]
    table, skipped = to_table(mixed, lambda mv: SIGNATURE)
    assert skipped == 1  # the careful reader refuses "x" for a float, as the replica would have
    assert table is not None and sorted(table["request_id"].to_pylist()) == ["a", "b"]


def test_the_arrow_reader_gives_what_the_object_reader_gives() -> None:
    """Arrow's JSON reader (a batch of one shape) and orjson (a document at a time) agree."""
    batches = [
        [  # rows as lists, a request of two rows between ones of one row
            record("plain", {"instances": [[30, 1]]}, {"predictions": [1]}, "a", 1.0),
            record("plain", {"instances": [[41.5, 2], [7, 3]]}, {"predictions": [0, 1]}, "b"),
            record("plain", {"instances": [[2, 4]]}, {"predictions": [0]}, "c", 3.0),
        ],
        [  # rows as objects, answers as objects
            record("mlflow", {"dataframe_records": [{"age": 5, "plan": "x"}]},
                   {"predictions": [{"label": 1, "p": 0.75}]}, "d"),
            record("mlflow", {"dataframe_records": [{"age": 6.5, "plan": "y"}]},
                   {"predictions": [{"label": 0, "p": 0.25}]}, "e"),
        ],
        [  # MLflow's split frame, its columns the signature's
            record("mlflow", {"dataframe_split": {"columns": ["age", "plan"], "data": [[20, 5]]}},
                   {"predictions": [0]}, "f"),
            record("mlflow", {"dataframe_split": {"columns": ["age", "plan"],
                   "data": [[21, 6], [22, 7]]}}, {"predictions": [1, 0]}, "g"),
        ],
        [record("mlflow", {"inputs": [[1, 2.5]]}, {"predictions": [True]}, "h")],
    ]  # fmt: skip
    for batch in batches:
        columns = Columns.of(batch)
        signature = SIGNATURE if batch[0].body.startswith(b'{"dataframe_records"') else NUMBERS
        fast, objects = _arrow_table(columns, signature), _object_table(columns, signature)
        assert fast is not None and objects is not None
        assert fast.to_pylist() == objects.to_pylist()
        assert fast.schema == objects.schema
    # without a signature: columns f0, f1, ..., of the rows' one type (ints widened to floats)
    plain = Columns.of(batches[0])
    fast, objects = _arrow_table(plain, None), _object_table(plain, None)
    assert fast is not None and objects is not None
    assert fast.to_pylist() == objects.to_pylist()
    assert (fast["f1"].type, objects["f1"].type) == (pa.float64(), pa.int64())


def test_the_arrow_reader_leaves_other_shapes_to_the_object_reader() -> None:
    rows = {"instances": [[30, "pro"]]}
    answer = {"predictions": [1]}
    others = [
        [record("plain", {**rows, "parameters": {"method": "predict_proba"}}, answer)],
        [record("plain", rows, answer), record("mlflow", {"inputs": [[1, "a"]]}, answer)],
        [record("plain", rows, answer, "a"), record("plain", rows, {"predictions": [1, 0]}, "b")],
        [record("mlflow", {"dataframe_split": {"columns": ["plan", "age"], "data": [["p", 1]]}},
                answer)],
        [record("plain", {"instances": [[30, "pro", 1]]}, answer)],  # a column too many
        [record("plain", {"instances": [[30, "pro"]]}, answer)],  # a number and a string
    ]  # fmt: skip
    for batch in others:
        assert _arrow_table(Columns.of(batch), SIGNATURE) is None
    spread = CaptureRecord(*record("plain", rows, answer)[:7], b'{"instances":\n[[30, "pro"]]}',
                           b'{"predictions": [1]}', 1.5)  # fmt: skip
    assert _arrow_table(Columns.of([spread]), SIGNATURE) is None  # a body over two lines
    table, skipped = to_table([spread], lambda mv: SIGNATURE)  # read all the same
    assert skipped == 0 and table is not None and table["plan"].to_pylist() == ["pro"]
