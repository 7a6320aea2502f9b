"""A batch prediction's work on its own: exact batches however the input is split, parts with
the kept columns and the predictions, a manifest that survives a stop, and a resume that
writes the same parts as a run that never stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stratus.core.errors import InvalidInput
from stratus.data.batches import TableSource
from stratus.registry.batches import Batch
from stratus.training.batch_predict import (
    MANIFEST,
    BatchPrediction,
    Manifest,
    Plan,
    choose_features,
    part_name,
    prediction_columns,
    rebatch,
    resume_folder,
)

KEY = {"model": "m:1", "dataset": "d:1", "batch_rows": 4}


class Doubler:
    """A model: twice the sum of each row's features; counts its calls."""

    supports_batching = True

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, batch: Batch) -> Any:
        self.calls += 1
        return batch.matrix().sum(axis=1) * 2


def table(rows: int) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([f"r{i}" for i in range(rows)]),
            "a": pa.array(np.arange(rows, dtype=np.float64)),
            "b": pa.array(np.ones(rows)),
        }
    )


def plan(folder: Path, model: Any, batch_rows: int = 4, keep: list[str] | None = None) -> Plan:
    folder.mkdir(parents=True, exist_ok=True)
    return Plan(model, None, ["a", "b"], keep or ["id"], "prediction", batch_rows, folder)


def read_parts(folder: Path) -> pa.Table:
    manifest = Manifest.load(folder, KEY)
    return pa.concat_tables(pq.read_table(folder / part_name(p["index"])) for p in manifest.parts)


def test_rebatch_cuts_exact_batches_however_the_input_is_split() -> None:
    whole = table(23)
    for sizes in ([23], [1] * 23, [5, 7, 11], [10, 0, 13]):
        batches, start = [], 0
        for n in sizes:
            batches.append(
                whole.slice(start, n).to_batches()[0]
                if n
                else pa.RecordBatch.from_pylist([], schema=whole.schema)
            )
            start += n
        cut = list(rebatch(batches, 4))
        assert [t.num_rows for t in cut] == [4, 4, 4, 4, 4, 3]
        assert pa.concat_tables(cut).column("id").to_pylist() == whole.column("id").to_pylist()


def test_a_run_writes_parts_with_the_kept_columns_and_one_prediction_per_row(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    model = Doubler()
    job = BatchPrediction(plan(out, model), Manifest(KEY))
    assert job.run(TableSource(table(10), rows=3))
    assert model.calls == 3 and job.manifest.rows == 10
    result = read_parts(out)
    assert result.column_names == ["id", "prediction"]
    assert result.column("id").to_pylist() == [f"r{i}" for i in range(10)]
    assert result.column("prediction").to_pylist() == [2.0 * (i + 1) for i in range(10)]
    assert Manifest.load(out, KEY).parts == job.manifest.parts


def test_a_stopped_run_resumes_after_its_last_part_and_writes_the_same_rows(
    tmp_path: Path,
) -> None:
    whole = tmp_path / "whole"
    BatchPrediction(plan(whole, Doubler()), Manifest(KEY)).run(TableSource(table(18), rows=5))

    out = tmp_path / "out"
    parts_seen: list[int] = []
    first = BatchPrediction(plan(out, Doubler()), Manifest(KEY))
    stopped = first.run(
        TableSource(table(18), rows=5),
        on_part=lambda m: parts_seen.append(len(m.parts)),
        should_stop=lambda: len(parts_seen) >= 2,
    )
    assert not stopped and first.manifest.rows == 8
    (out / ".part-000002.parquet.tmp").write_bytes(b"half a part")  # the crash's leftovers

    model = Doubler()
    manifest = resume_folder(out, None, KEY)
    assert len(manifest.parts) == 2 and not (out / ".part-000002.parquet.tmp").exists()
    assert BatchPrediction(plan(out, model), manifest).run(TableSource(table(18), rows=7))
    assert model.calls == 3  # batches 3, 4 and 5 only
    assert read_parts(out).equals(read_parts(whole))


def test_a_part_that_is_not_whole_ends_the_finished_list(tmp_path: Path) -> None:
    out = tmp_path / "out"
    BatchPrediction(plan(out, Doubler()), Manifest(KEY)).run(TableSource(table(12)))
    (out / part_name(1)).write_bytes(b"truncated")
    assert [p["index"] for p in Manifest.load(out, KEY).parts] == [0]
    assert Manifest.load(out, {**KEY, "batch_rows": 5}).parts == []  # another prediction's
    (out / MANIFEST).write_text("{not json")
    assert Manifest.load(out, KEY).parts == []


def test_resume_takes_the_checkpoint_when_it_has_more_parts(tmp_path: Path) -> None:
    restored = tmp_path / "checkpoint"
    BatchPrediction(plan(restored, Doubler()), Manifest(KEY)).run(TableSource(table(12)))
    out = tmp_path / "out"
    out.mkdir()
    (out / "stray.parquet").write_bytes(b"x")
    manifest = resume_folder(out, restored, KEY)
    assert len(manifest.parts) == 3
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, *(part_name(i) for i in range(3))]


def test_several_values_per_row_or_named_outputs_become_several_columns() -> None:
    matrix = prediction_columns(np.array([[0.1, 0.9], [0.8, 0.2]]), "p", 2)
    assert list(matrix) == ["p_0", "p_1"] and matrix["p_1"].to_pylist() == [0.9, 0.2]
    named = prediction_columns({"label": np.array([1, 0]), "score": np.array([0.9, 0.2])}, "p", 2)
    assert list(named) == ["p_label", "p_score"]
    with pytest.raises(InvalidInput, match="3 predictions for 2 rows"):
        prediction_columns(np.array([1, 2, 3]), "p", 2)


def test_a_prediction_column_that_is_an_input_column_is_refused(tmp_path: Path) -> None:
    job = BatchPrediction(plan(tmp_path / "out", Doubler(), keep=["id", "a"]), Manifest(KEY))
    job.plan.column = "a"
    with pytest.raises(InvalidInput, match="already has a column 'a'"):
        job.run(TableSource(table(4)))


def test_features_default_to_the_untagged_columns() -> None:
    columns = ["id", "email", "a", "b", "churned"]
    tags = {"id": ["id"], "email": ["pii"], "churned": ["label"]}
    assert choose_features(columns, tags, None, None) == ["a", "b"]
    assert choose_features(columns, tags, None, ["b"]) == ["b"]
    with pytest.raises(InvalidInput, match="not in the dataset: c"):
        choose_features(columns, tags, None, ["c"])
