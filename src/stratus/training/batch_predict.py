"""A batch prediction job's work: a model version's predictions for every row of a dataset
version, written as Parquet parts that become a new dataset version.

The input is read as a stream of Arrow record batches (`stratus.data.batches`) cut to exactly
`batch_rows` rows, so memory is bounded by a batch, not by the dataset. Each batch is fed to
the model through the same `Batch` a serving replica builds (signature-checked columns), and
its predictions are written beside the kept input columns as `part-NNNNNN.parquet`. Each part
is written to a temporary name, then renamed, so the parts present are the finished ones (and
`.manifest.json` says what they were computed from): a job that stops — a preemption, a
crash — starts again after the last finished batch, from the parts of the job's folder if it
runs on the same node again, else from those of its last uploaded checkpoint. Batch k always
holds the same input rows, so a resumed job writes the same parts. Memory is bounded by a
batch and the input's read unit (a Parquet row group, a CSV block), not by the dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stratus.core.errors import InvalidInput
from stratus.data.batches import BatchSource, FileSource, open_file
from stratus.data.formats import format_of
from stratus.registry.batches import Batch
from stratus.registry.flavors import LoadedModel
from stratus.registry.signatures import Signature, infer_signature
from stratus.training.evaluation import signature_columns

MANIFEST = ".manifest.json"
DATA_SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson")
#: Tags of columns that are not features by default.
NOT_FEATURES = {"label", "id", "pii", "timestamp"}


def part_name(index: int) -> str:
    return f"part-{index:06d}.parquet"


@dataclass
class Manifest:
    """The finished parts of one batch prediction. `key` names what they are computed from;
    `.manifest.json` holds it, and a part is finished when its file exists (it is written to a
    temporary name, then renamed), so finishing a part writes nothing else."""

    key: dict[str, Any]
    parts: list[dict[str, int]] = field(default_factory=list)  # {index, rows}

    @property
    def rows(self) -> int:
        return sum(p["rows"] for p in self.parts)

    def save(self, folder: Path) -> None:
        temp = folder / f"{MANIFEST}.tmp"
        temp.write_text(json.dumps({"key": self.key}), encoding="utf-8")
        os.replace(temp, folder / MANIFEST)

    @classmethod
    def load(cls, folder: Path, key: dict[str, Any]) -> Manifest:
        """The finished parts in `folder` for `key`: part 0, 1, ... up to the first missing or
        unreadable one (nothing when the folder holds another prediction's parts)."""
        try:
            document = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls(key)
        if not isinstance(document, dict) or document.get("key") != key:
            return cls(key)
        parts: list[dict[str, int]] = []
        while True:
            try:
                rows = pq.read_metadata(folder / part_name(len(parts))).num_rows
            except (OSError, pa.ArrowException):
                return cls(key, parts)
            parts.append({"index": len(parts), "rows": rows})


def resume_folder(out_dir: Path, restored: Path | None, key: dict[str, Any]) -> Manifest:
    """Make `out_dir` hold the most finished parts for `key`: its own, or those of a restored
    checkpoint folder if it has more; files no manifest lists are removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    mine = Manifest.load(out_dir, key)
    if restored is not None and restored.is_dir():
        theirs = Manifest.load(restored, key)
        if len(theirs.parts) > len(mine.parts):
            shutil.rmtree(out_dir)
            shutil.copytree(restored, out_dir)
            mine = theirs
    listed = {part_name(p["index"]) for p in mine.parts}  # later parts: after a missing one
    for path in out_dir.iterdir():
        if path.name not in listed and path.name != MANIFEST:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    return mine  # its manifest is written when it runs


def open_input(folder: Path) -> BatchSource:
    """The data files under `folder` (a pulled dataset version), joined in path order."""
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in DATA_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise InvalidInput("the input dataset version holds no data files")
    sources = []
    for path in files:
        rel = path.relative_to(folder).as_posix()

        def opener(path: Path = path) -> Any:
            return open(path, "rb")

        sources.append((rel, open_file(opener, format_of(rel), rel)))
    return FileSource(sources)


def rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """The rows of `batches` again, cut into tables of exactly `rows` rows (the last may have
    fewer): batch k holds the same rows however the input was split."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        held += batch.num_rows
        if held < rows:
            continue
        table = pa.Table.from_batches(pending)
        start = 0
        while held - start >= rows:
            yield table.slice(start, rows)
            start += rows
        rest = table.slice(start)
        pending = rest.to_batches() if rest.num_rows else []
        held = rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def choose_features(
    columns: list[str],
    column_tags: dict[str, list[str]],
    signature: Signature | None,
    features: list[str] | None,
) -> list[str]:
    """`features` if given, else the signature's inputs, else every column not tagged label,
    id, pii or timestamp."""
    if features is None and signature is not None:
        features = signature_columns(signature, "a batch prediction")
    if features is None:
        skipped = {c for c, tags in column_tags.items() if NOT_FEATURES & set(tags)}
        features = [c for c in columns if c not in skipped]
    missing = [c for c in features if c not in columns]
    if missing:
        raise InvalidInput(f"feature columns not in the dataset: {', '.join(missing)}")
    if not features:
        raise InvalidInput("no feature columns are left to feed the model")
    return features


def prediction_columns(predictions: Any, column: str, rows: int) -> dict[str, pa.Array]:
    """A model's predictions for `rows` rows as output columns: `column` for one output of one
    value per row; `column_j` for each of several values; `column_OUTPUT` for named outputs."""
    if isinstance(predictions, dict):
        out: dict[str, pa.Array] = {}
        for name, values in predictions.items():
            out.update(prediction_columns(values, f"{column}_{name}", rows))
        return out
    array = np.asarray(predictions)
    if array.ndim == 0 or len(array) != rows:
        raise InvalidInput(
            f"the model returned {array.size} predictions for {rows} rows: a batch "
            "prediction needs one per row"
        )
    if array.ndim == 1:
        return {column: pa.array(array)}
    flat = array.reshape(rows, -1)
    return {f"{column}_{j}": pa.array(flat[:, j]) for j in range(flat.shape[1])}


@dataclass
class Plan:
    """What to compute: the model, the features fed to it, the input columns kept beside the
    predictions, the batch size, and where the parts go."""

    model: LoadedModel
    signature: Signature | None
    features: list[str]
    keep: list[str]
    column: str
    batch_rows: int
    out_dir: Path


class BatchPrediction:
    """Runs a `Plan` over an input source, after the parts `manifest` lists as finished."""

    def __init__(self, plan: Plan, manifest: Manifest) -> None:
        self.plan = plan
        self.manifest = manifest
        self.signature = plan.signature
        self.seconds = 0.0  # reading, predicting and writing (not reporting)

    def run(
        self,
        source: BatchSource,
        *,
        on_part: Callable[[Manifest], None] = lambda m: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> bool:
        """Predict every batch not finished yet; True when all are, False when `should_stop`
        said to stop first (the parts finished so far are kept)."""
        done = len(self.manifest.parts)
        self.manifest.save(self.plan.out_dir)
        started = time.perf_counter()
        for index, table in enumerate(rebatch(source.batches(), self.plan.batch_rows)):
            if index < done:
                started = time.perf_counter()  # skipping finished rows is not predicting
                continue
            if should_stop():
                return False
            self._write(index, table)
            self.seconds += time.perf_counter() - started
            on_part(self.manifest)
            started = time.perf_counter()
        return True

    def _write(self, index: int, table: pa.Table) -> None:
        plan = self.plan
        columns = {c: table.column(c).to_numpy() for c in plan.features}
        if self.signature is None:
            self.signature = infer_signature({c: v[:100] for c, v in columns.items()})
        batch = Batch.from_columns(columns, self.signature)
        predicted = prediction_columns(plan.model.predict(batch), plan.column, table.num_rows)
        clash = sorted(set(predicted) & set(plan.keep))
        if clash:
            raise InvalidInput(
                f"the input already has a column {clash[0]!r}: name the predictions' column "
                "another way (prediction_column / --prediction-column)"
            )
        output = table.select(plan.keep)
        for name, values in predicted.items():
            output = output.append_column(name, values)
        path = plan.out_dir / part_name(index)
        temp = path.with_name(f".{path.name}.tmp")
        # dictionary encoding pays for text (few distinct values), not for numbers (mostly
        # distinct: it costs ~7x the write time for nothing)
        text = [
            f.name
            for f in output.schema
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        ]
        pq.write_table(output, temp, use_dictionary=text)
        os.replace(temp, path)
        self.manifest.parts.append({"index": index, "rows": table.num_rows})
