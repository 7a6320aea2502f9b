"""Dataset files: the format by extension, parsing CSV, Parquet and JSON lines into Arrow, and
joining a folder's files into one table."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stratus.core.errors import InvalidInput
from stratus.data.formats import FORMATS, combine, format_of, read_table

ROWS = [
    {"id": 1, "score": 0.5, "city": "Oslo", "member": True},
    {"id": 2, "score": None, "city": "Lima", "member": False},
    {"id": 3, "score": 2.25, "city": None, "member": True},
]


@pytest.mark.parametrize(
    ("path", "fmt"),
    [("a.csv", "csv"), ("dir/A.CSV", "csv"), ("a.parquet", "parquet"), ("a.PQ", "parquet"),
     ("a.jsonl", "jsonl"), ("a.NDJson", "jsonl"), ("/x/y.tar/part-0.csv", "csv")],
)  # fmt: skip
def test_format_by_extension(path: str, fmt: str) -> None:
    assert format_of(path) == fmt
    assert fmt in FORMATS


def test_json_is_refused_with_a_hint_to_rename() -> None:
    with pytest.raises(InvalidInput, match=r"^data/rows\.json: .*rename it to \.jsonl"):
        format_of("data/rows.json")


@pytest.mark.parametrize("path", ["sheet.xlsx", "README", "in/archive.csv.gz", "x.tsv"])
def test_other_extensions_are_refused(path: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        format_of(path)
    assert caught.value.detail.startswith(f"{path}: unsupported file type")
    assert ".csv, .parquet, .pq, .jsonl, .ndjson" in caught.value.detail


def write_csv(path: Path) -> None:
    pd.DataFrame(ROWS).to_csv(path, index=False)


def write_parquet(path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(ROWS), path)


def write_jsonl(path: Path) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))


WRITERS: dict[str, Callable[[Path], None]] = {
    "csv": write_csv,
    "parquet": write_parquet,
    "jsonl": write_jsonl,
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_from_a_path_and_from_a_stream(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"rows.{fmt}"
    WRITERS[fmt](path)
    from_path = read_table(path, fmt)
    with path.open("rb") as stream:
        from_stream = read_table(stream, fmt, name=path.name)
    for table in (from_path, from_stream):
        assert table.to_pylist() == ROWS
        assert table.schema.field("id").type == pa.int64()
        assert table.schema.field("score").type == pa.float64()
        assert table.schema.field("member").type == pa.bool_()


def test_a_header_only_csv_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("a,b\n")
    table = read_table(path, "csv")
    assert table.num_rows == 0
    assert table.column_names == ["a", "b"]


def test_empty_csv_cells_are_null_but_quoted_empty_strings_are_not(tmp_path: Path) -> None:
    path = tmp_path / "cells.csv"
    path.write_text('s,n\n"",1\n,\nNA,3\n"NA",\n')
    table = read_table(path, "csv")
    assert table.column("s").to_pylist() == ["", None, None, "NA"]
    assert table.column("n").to_pylist() == [1, None, 3, None]


def test_quoted_values_may_span_lines_in_a_big_csv(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text("note,n\n" + "".join(f'"line {i}\nmore",{i}\n' for i in range(100_000)))
    table = read_table(path, "csv")
    assert table.num_rows == 100_000
    assert table.column("note")[7].as_py() == "line 7\nmore"


def truncated_parquet(path: Path) -> None:
    write_parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_FILES: list[tuple[str, str, Callable[[Path], object]]] = [
    ("part.parquet", "parquet", truncated_parquet),
    ("ragged.csv", "csv", lambda p: p.write_text("a,b,c\n1,2,3\n4,5\n")),
    ("empty.csv", "csv", lambda p: p.write_text("")),
    ("notes.jsonl", "jsonl", lambda p: p.write_text('{"a": 1}\nnot json at all\n')),
    ("list.jsonl", "jsonl", lambda p: p.write_text("[1, 2]\n")),
    ("rows.parquet", "parquet", write_csv),
]


@pytest.mark.parametrize(("name", "fmt", "write"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_unreadable_files_name_the_file(
    tmp_path: Path, name: str, fmt: str, write: Callable[[Path], object]
) -> None:
    path = tmp_path / name
    write(path)
    with pytest.raises(InvalidInput) as caught:
        read_table(path, fmt)
    assert caught.value.detail.startswith(f"{name}: cannot be read as {fmt}: ")
    assert "\n" not in caught.value.detail
    with path.open("rb") as stream, pytest.raises(InvalidInput, match=f"^upload/{name}: "):
        read_table(stream, fmt, name=f"upload/{name}")


def test_a_stream_without_a_name_is_called_data() -> None:
    with pytest.raises(InvalidInput, match=r"^data: cannot be read as csv: CSV parse error"):
        read_table(io.BytesIO(b"a,b\n1\n"), "csv")


def test_duplicate_column_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.csv"
    path.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(InvalidInput, match=r"^twice\.csv: column 'a' appears more than once"):
        read_table(path, "csv")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"^x\.bin: unknown format 'xlsx'"):
        read_table(io.BytesIO(b""), "xlsx", name="x.bin")


def test_the_format_needs_no_pyarrow() -> None:
    script = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "from stratus.data.formats import format_of\n"
        "assert format_of('a.pq') == 'parquet'"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_a_missing_file_is_not_a_parse_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / "gone.csv", "csv")


def test_combine_widens_compatible_types() -> None:
    tables = [
        ("a.csv", pa.table({"n": pa.array([1, 2], pa.int32()), "x": [1, 2], "s": ["p", "q"]})),
        ("b.csv", pa.table({"n": pa.array([3], pa.int64()), "x": [0.5], "s": [None]})),
        ("c.csv", pa.table({"n": pa.array([None], pa.null()), "x": [7], "extra": [True]})),
    ]
    combined = combine(tables)
    assert combined.schema.field("n").type == pa.int64()
    assert combined.schema.field("x").type == pa.float64()
    assert combined.column_names == ["n", "x", "s", "extra"]
    assert combined.column("n").to_pylist() == [1, 2, 3, None]
    assert combined.column("x").to_pylist() == [1.0, 2.0, 0.5, 7.0]
    assert combined.column("s").to_pylist() == ["p", "q", None, None]
    assert combined.column("extra").to_pylist() == [None, None, None, True]


def test_combine_decodes_dictionaries() -> None:
    encoded = pa.table({"city": pa.array(["Oslo", "Lima"]).dictionary_encode()})
    plain = pa.table({"city": pa.array(["Rome"], pa.large_string())})
    combined = combine([("a.parquet", encoded), ("b.parquet", plain)])
    assert combined.schema.field("city").type == pa.large_string()
    assert combined.column("city").to_pylist() == ["Oslo", "Lima", "Rome"]


def test_a_single_table_is_returned_as_is() -> None:
    table = pa.table({"city": pa.array(["Oslo"]).dictionary_encode()})
    assert combine([("a.parquet", table)]) is table


CONFLICTS = [
    (pa.array([1], pa.int64()), pa.array(["x"], pa.string())),
    (pa.array([True]), pa.array([1], pa.int64())),
    (pa.array([0], pa.timestamp("s")), pa.array([0], pa.timestamp("s", tz="UTC"))),
]


@pytest.mark.parametrize(("first", "second"), CONFLICTS, ids=lambda a: str(a.type))
def test_combine_names_the_files_and_column_of_a_conflict(
    first: pa.Array, second: pa.Array
) -> None:
    tables = [
        ("part-0.csv", pa.table({"a": [1], "v": pa.array([None], pa.null())})),
        ("part-1.csv", pa.table({"a": [2], "v": first})),
        ("part-2.csv", pa.table({"a": [3], "v": first})),
        ("part-3.csv", pa.table({"a": [4], "v": second})),
    ]
    with pytest.raises(InvalidInput) as caught:
        combine(tables)
    assert caught.value.detail == (
        f"part-1.csv and part-3.csv disagree on column 'v': {first.type} in one, "
        f"{second.type} in the other"
    )


def test_combining_nothing_is_refused() -> None:
    with pytest.raises(InvalidInput, match="no files to combine"):
        combine([])
