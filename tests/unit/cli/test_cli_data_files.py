"""`stratus predict --file`'s rows: read CSV, Parquet and JSON lines in batches; write rows
with their predictions back, atomically."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from stratus.cli.data_files import (
    chunked,
    columns_of,
    kind_of,
    open_rows,
    with_predictions,
    write_rows,
)
from stratus.core.errors import InvalidInput

ROWS = [{"a": float(i), "b": i % 3, "c": f"s{i}"} for i in range(7)]


@pytest.mark.parametrize(
    ("name", "kind"),
    [("x.csv", "csv"), ("x.CSV", "csv"), ("x.parquet", "parquet"), ("x.pq", "parquet"),
     ("x.jsonl", "jsonl"), ("x.ndjson", "jsonl")],
)  # fmt: skip
def test_kind_by_extension(name: str, kind: str) -> None:
    assert kind_of(Path(name)) == kind


def test_other_extensions_are_refused() -> None:
    with pytest.raises(ValueError, match="expected a .csv, .parquet or .jsonl file"):
        kind_of(Path("data.xlsx"))


def test_chunked() -> None:
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked([], 3)) == []
    assert list(chunked(range(3), 3)) == [[0, 1, 2]]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_rows_written_read_back_in_batches(tmp_path: Path, suffix: str) -> None:
    if suffix != ".jsonl":
        pytest.importorskip("pyarrow")
    path = tmp_path / f"rows{suffix}"
    write_rows(path, ROWS)
    source = open_rows(path)
    assert source.total == 7
    batches = list(source.batches(3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [row for batch in batches for row in batch] == ROWS
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_csv_cells_hold_json_for_lists_and_objects(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write_rows(path, [{"a": 1, "p": [0.1, 0.9]}, {"a": 2, "p": {"k": 1}, "extra": None}])
    assert path.read_text().splitlines() == [
        "a,p,extra",
        '1,"[0.1, 0.9]",',
        '2,"{""k"": 1}",',
    ]


def test_a_bad_json_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": \n')
    source = open_rows(path)
    assert source.total == 2
    with pytest.raises(InvalidInput, match="rows.jsonl line 3 is not JSON"):
        list(source.batches(10))


def test_a_bad_csv_is_one_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "rows.csv"
    path.write_text("a,b\n1,2\n3\n")
    with pytest.raises(InvalidInput, match="cannot read rows.csv"):
        open_rows(path)


def test_without_pyarrow_csv_and_parquet_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    path = tmp_path / "rows.csv"
    path.write_text("a\n1\n")
    with pytest.raises(InvalidInput, match=r"needs pyarrow: pip install 'stratus\[pandas\]'"):
        open_rows(path)
    with pytest.raises(InvalidInput, match="needs pyarrow"):
        write_rows(tmp_path / "out.parquet", [{"a": 1}])
    write_rows(tmp_path / "out.jsonl", [{"a": 1}])  # JSON lines need nothing
    assert json.loads((tmp_path / "out.jsonl").read_text()) == {"a": 1}


@pytest.mark.parametrize(
    ("rows", "predictions", "merged"),
    [
        ([{"a": 1}], [0], [{"a": 1, "prediction": 0}]),
        ([{"a": 1}], [[0.2, 0.8]], [{"a": 1, "prediction": [0.2, 0.8]}]),
        ([{"a": 1}], [{"label": 1, "a": 2}], [{"a": 1, "label": 1, "prediction_a": 2}]),
        ([{"prediction": 1}], [0], [{"prediction": 1, "prediction_1": 0}]),
        ([[1, 2]], [1], [{"instance": [1, 2], "prediction": 1}]),
    ],
)
def test_with_predictions(rows: list[Any], predictions: list[Any], merged: list[Any]) -> None:
    assert with_predictions(rows, predictions) == merged


def test_with_predictions_wants_one_per_row() -> None:
    with pytest.raises(InvalidInput, match="2 predictions for 1 rows"):
        with_predictions([{"a": 1}], [0, 1])


def test_columns_in_the_order_first_seen() -> None:
    assert columns_of([{"b": 1, "a": 2}, {"c": 3, "a": 4}]) == ["b", "a", "c"]
