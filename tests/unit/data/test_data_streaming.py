"""A dataset version is profiled and validated a record batch at a time: the push's memory is
bounded by a batch, not by the file, and the exact statistics are those of a whole-file read."""

from __future__ import annotations

import hashlib
import io
import os
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from stratus.core.database import Database
from stratus.core.errors import InvalidInput, NotFound
from stratus.core.events import EventBus
from stratus.data import batches, formats, sketches
from stratus.data import schemas as s
from stratus.data.batches import TableSource, open_file, reopener
from stratus.data.profiling import profile_batches, profile_table
from stratus.data.rules import parse_rules
from stratus.data.service import DataService
from stratus.data.validation import validate_batches, validate_table
from stratus.iam.tables import ProjectRow
from stratus.migrations.runner import upgrade
from stratus.storage.blobs import Blobs
from stratus.storage.blobstore import open_store
from stratus.storage.keyring import Keyring


def sample(rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    amount = rng.normal(100, 15, rows)
    amount[::97] = np.nan
    return pa.table(
        {
            "id": np.arange(rows),
            "amount": amount,
            "city": np.array(["paris", "lyon", "nice", None], dtype=object)[
                rng.integers(0, 4, rows)
            ],
            "member": rng.integers(0, 2, rows).astype(bool),
            "code": [f"c{i % (rows // 3)}" for i in range(rows)],
        }
    )


class CountedSource:
    """Batches of a table, each watched: how many are alive at once, at most."""

    def __init__(self, table: pa.Table, rows: int) -> None:
        self.table, self.rows = table, rows
        self.alive: set[int] = set()
        self.most_alive = 0
        self.passes = 0

    @property
    def schema(self) -> pa.Schema:
        return self.table.schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        self.passes += 1
        for start in range(0, self.table.num_rows, self.rows):
            # a copy, so a batch is its own memory and not a view the table keeps alive
            batch = pa.RecordBatch.from_pylist(
                self.table.slice(start, self.rows).to_pylist(), schema=self.table.schema
            )
            key = id(batch)
            self.alive.add(key)
            weakref.finalize(batch, self.alive.discard, key)
            self.most_alive = max(self.most_alive, len(self.alive))
            yield batch
            del batch


def test_profiling_holds_one_batch_at_a_time_and_matches_the_whole_table() -> None:
    table = sample(6000)
    source = CountedSource(table, rows=500)
    assert profile_batches(source) == profile_table(table)
    assert source.passes == 1  # every column exact: no second pass
    assert source.most_alive <= 2  # the batch read, and at most the one just let go


def test_validation_holds_one_batch_at_a_time_and_matches_the_whole_table() -> None:
    table = sample(6000)
    rules = parse_rules(
        {
            "rows": {"min": 10},
            "columns": {
                "amount": {"finite": True, "min": 60, "max_null_share": 0.001},
                "code": {"unique": True},
                "city": {"allowed": ["paris", "lyon"], "not_null": True},
            },
            "drift": {"max_psi": 0.2},
        }
    )
    reference = profile_table(sample(6000, seed=1)).model_dump(mode="json")
    source = CountedSource(table, rows=500)
    streamed = validate_batches(source, rules, reference, "d:1")
    whole = validate_table(table, rules, reference, "d:1")
    assert streamed.checks == whole.checks
    for mine, theirs in zip(streamed.drift, whole.drift, strict=True):
        # the mean of the values: a running sum here, numpy's pairwise sum there
        if theirs.mean_shift is not None:
            assert mine.mean_shift == pytest.approx(theirs.mean_shift, rel=1e-9)
        assert mine.model_copy(update={"mean_shift": None}) == theirs.model_copy(
            update={"mean_shift": None}
        )
    assert source.most_alive <= 2
    unique = next(c for c in streamed.checks if c.check == "unique")
    assert unique.failing == 6000  # every code comes three times, across batches
    assert [e["row"] for e in unique.examples] == [0, 1, 2, 3, 4]


def test_failing_rows_are_numbered_across_batches() -> None:
    table = pa.table({"x": [1.0] * 1200 + [-1.0] + [1.0] * 10 + [-2.0]})
    report = validate_batches(
        TableSource(table, rows=100), parse_rules({"columns": {"x": {"min": 0}}})
    )
    check = report.checks[0]
    assert check.failing == 2
    assert [e["row"] for e in check.examples] == [1200, 1211]
    assert check.examples[1]["values"] == {"x": -2.0}


def test_past_the_caps_statistics_stay_exact_where_they_can(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sketches, "EXACT_VALUES", 1000)
    monkeypatch.setattr(sketches, "EXACT_DISTINCT", 500)
    table = sample(20_000)
    whole = profile_table(table)  # 64k-row batches: one batch, caps still apply
    streamed = profile_batches(TableSource(table, rows=700))
    for exact, approx in zip(whole.columns, streamed.columns, strict=True):
        assert (exact.count, exact.nulls) == (approx.count, approx.nulls)
    values = table["amount"].to_numpy(zero_copy_only=False)
    good = values[np.isfinite(values)]
    amount = streamed.columns[1].numeric
    assert amount is not None
    assert (amount.min, amount.max, amount.nans) == (good.min(), good.max(), 207)
    assert amount.mean == pytest.approx(good.mean(), rel=1e-12)
    assert amount.std == pytest.approx(good.std(), rel=1e-12)
    assert amount.histogram.counts == np.histogram(good, bins=20)[0].tolist()  # exact
    assert amount.quantiles["p50"] == pytest.approx(np.median(good), rel=0.02)  # sampled
    code = streamed.columns[4].categorical
    assert code is not None
    assert code.distinct == pytest.approx(6666, rel=0.1)  # estimated past the cap


CSV_ROWS = 60_000


@pytest.fixture
def csv_bytes() -> bytes:
    out = io.BytesIO()
    pa_csv.write_csv(sample(CSV_ROWS), out)
    # a decimal far down an integer column: the whole-file reader widens it to double
    return out.getvalue() + b'60000.5,1.5,paris,true,"c,x"\n'


def test_a_csv_source_streams_with_the_whole_file_types(csv_bytes: bytes) -> None:
    source = open_file(reopener(io.BytesIO(csv_bytes)), "csv", "rows.csv", block_bytes=2**16)
    read = list(source.batches())
    assert len(read) > 20
    whole = formats.read_table(io.BytesIO(csv_bytes), "csv")
    assert source.schema.field("id").type == pa.float64() == whole.schema.field("id").type
    assert pa.Table.from_batches(read, source.schema).equals(whole)


def test_a_broken_csv_is_invalid_input() -> None:
    data = b"a,b\n" + b"1,2\n" * 50_000 + b"1,2,3\n"
    with pytest.raises(InvalidInput, match=r"^rows\.csv: cannot be read as csv: "):
        open_file(reopener(io.BytesIO(data)), "csv", "rows.csv", block_bytes=2**14)


def test_json_lines_blocks_unify_their_types() -> None:
    lines = [b'{"a": %d, "b": "x"}\n' % i for i in range(5000)] + [b'{"a": 0.5, "c": true}\n']
    data = b"".join(lines)
    source = open_file(reopener(io.BytesIO(data)), "jsonl", "rows.jsonl", block_bytes=2**12)
    read = pa.Table.from_batches(list(source.batches()), source.schema)
    assert read.equals(formats.read_table(io.BytesIO(data), "jsonl"))


# --- the commit path -----------------------------------------------------------------------


def project_uid(session: Session, name: str) -> str:
    uid = session.scalar(select(ProjectRow.uid).where(ProjectRow.name == name))
    if uid is None:
        raise NotFound(f"project {name!r} not found")
    return uid


@pytest.fixture
def data(tmp_path: Path) -> Iterator[DataService]:
    db = Database(f"sqlite:///{tmp_path / 'stratus.db'}")
    upgrade(db)
    with db.transaction() as session:
        session.add(ProjectRow(name="p"))
    store = open_store(str(tmp_path / "store"))
    store.ensure_ready()
    blobs = Blobs(db, store, Keyring(db, os.urandom(32)), encrypt=True)
    try:
        yield DataService(db, blobs, EventBus(), project_uid)
    finally:
        db.dispose()


def push(data: DataService, content: bytes, path: str = "rows.csv") -> s.VersionRead:
    data.create("p", s.DatasetCreate(name="feed"))
    entry = s.FileEntry(path=path, sha256=hashlib.sha256(content).hexdigest(), size=len(content))
    version, _ = data.create_version("p", "feed", s.VersionCreate(files=[entry]), actor="alice")
    upload = data.begin_upload("p", "feed", version.version, path)
    upload.write(content)
    data.finish_upload(upload)
    return data.commit_version("p", "feed", version.version)


def test_a_commit_never_reads_the_file_whole(
    data: DataService, csv_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = formats.read_table(io.BytesIO(csv_bytes), "csv")

    def refused(*args: object, **kwargs: object) -> pa.Table:
        raise AssertionError("the commit read a file whole")

    monkeypatch.setattr(formats, "read_table", refused)
    monkeypatch.setattr(pa_csv, "read_csv", refused)
    monkeypatch.setattr(batches, "BLOCK_BYTES", 2**16)
    version = push(data, csv_bytes)
    assert version.rows == CSV_ROWS + 1
    profile = data.profile("p", "feed", "1").profile
    assert profile == profile_table(whole).model_dump(mode="json")
    rules = parse_rules({"columns": {"code": {"unique": True}, "amount": {"min": 70}}})
    validation = data.validate("p", "feed", "1", rules, actor="alice")
    assert validation.report == validate_table(whole, rules)
