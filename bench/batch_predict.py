#!/usr/bin/env python3
"""Batch inference benchmark: `stratus batch-predict` over --rows rows (default 1 million)
against a plain in-process predict over the same rows, in the same run.

It writes a Parquet file (an id and --features float columns), fits a model on part of it
(--model lr: StandardScaler + LogisticRegression; gbt: HistGradientBoostingClassifier), starts
a throwaway `stratus up` (stratus.testing.LocalPlatform, local backend), pushes both, and then
for --repeats rounds, interleaved:

  plain   a fresh process that reads the whole file with pyarrow, predicts every row with the
          model in one call, and writes the rows with their predictions to a Parquet file:
          what a user's script does with enough memory. Rows per second, and its peak RSS.
  job     `client.batch.predict` on a cpu.medium job (batches of --batch-rows rows): the rows
          per second of its scoring loop (reading, predicting, writing each batch, as the
          job's log says) and of the whole job (submit -> succeeded: queueing, start, pulling
          the data and the model, the loop, pushing and committing the new version, which
          profiles it); its peak memory as its log says.

Goal: the job's scoring rate is at least 0.8x the plain rate; its peak memory is bounded by
the batch, not the rows (compare with the plain process, which holds them all). Every
process it starts is stopped by PID at the end; loopback only. Run from the repository root:

    .venv/bin/python bench/batch_predict.py                    # 1M rows, ~2 min
    .venv/bin/python bench/batch_predict.py --rows 200000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = "default"

PLAIN = r"""
import json, sys, time
import numpy as np, pyarrow as pa, pyarrow.parquet as pq, skops.io

source, model_path, out, features = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
model = skops.io.load(model_path, trusted=skops.io.get_untrusted_types(file=model_path))
started = time.perf_counter()
table = pq.read_table(source)
matrix = np.column_stack([table.column(c).to_numpy() for c in features])
table = table.append_column("prediction", pa.array(model.predict(matrix)))
pq.write_table(table, out)
seconds = time.perf_counter() - started
peak = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
print(json.dumps({"seconds": seconds, "rows": table.num_rows, "peak_mib": int(peak) / 1024}))
"""


def make_data(folder: Path, rows: int, features: int) -> tuple[Path, list[str]]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    names = [f"f{i}" for i in range(features)]
    columns: dict[str, Any] = {"id": pa.array(np.arange(rows, dtype=np.int64))}
    for name in names:
        columns[name] = pa.array(rng.normal(size=rows))
    path = folder / "rows.parquet"
    pq.write_table(pa.table(columns), path)
    return path, names


def fit(folder: Path, data: Path, names: list[str], kind: str) -> Path:
    import numpy as np
    import pyarrow.parquet as pq
    import skops.io

    head = pq.read_table(data, columns=names).slice(0, 20_000)
    x = np.column_stack([head.column(c).to_numpy() for c in names])
    y = (x @ np.linspace(-1, 1, len(names)) + 0.1 * x[:, 0] ** 2 > 0).astype(int)
    if kind == "gbt":
        from sklearn.ensemble import HistGradientBoostingClassifier

        model: Any = HistGradientBoostingClassifier(max_iter=100).fit(x, y)
    else:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    path = folder / "model.skops"
    skops.io.dump(model, path)
    return path


def plain(data: Path, model: Path, folder: Path, names: list[str]) -> dict[str, float]:
    out = folder / "plain-out.parquet"
    done = subprocess.run(
        [sys.executable, "-c", PLAIN, str(data), str(model), str(out), json.dumps(names)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out.unlink(missing_ok=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def job(client: Any, batch_rows: int, rows: int, round_: int) -> dict[str, float]:
    started = time.monotonic()
    read = client.batch.predict(
        "bench-model",
        dataset="bench-rows:1",
        output_dataset="bench-scores",
        batch_rows=batch_rows,
        instance_type="cpu.medium",
        name=f"bench-predict-{round_}",
        project=PROJECT,
        timeout=900,
    )
    seconds = time.monotonic() - started
    log = b"".join(client.jobs.logs(read.metadata.name, PROJECT)).decode()
    if read.status.phase.value != "succeeded":
        raise SystemExit(f"the job {read.status.phase.value}: {read.status.message}\n{log}")
    scoring = re.search(r"predicted ([\d,]+) rows in ([\d.]+) s \(([\d,]+) rows/s", log)
    peak = re.search(r"exit 0 after .*, peak memory (\d+) MiB", log)
    loop_peak = re.search(r"peak memory so far (\d+) MiB", log)
    assert scoring is not None and peak is not None and loop_peak is not None, log
    return {
        "loop_rows_per_second": float(scoring.group(3).replace(",", "")),
        "job_seconds": seconds,
        "job_rows_per_second": rows / seconds,
        "peak_mib": float(peak.group(1)),
        "loop_peak_mib": float(loop_peak.group(1)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--model", choices=("lr", "gbt"), default="lr")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from stratus.testing import LocalPlatform

    work = Path(tempfile.mkdtemp(prefix="stratus-bench-batch-"))
    platform = LocalPlatform(work / "home")
    try:
        data, names = make_data(work, args.rows, args.features)
        model = fit(work, data, names, args.model)
        size = data.stat().st_size / 2**20
        print(f"{args.rows:,} rows x {args.features} features ({size:.0f} MiB Parquet), "
              f"model {args.model}, batches of {args.batch_rows:,} rows")  # fmt: skip
        platform.start(timeout=120)
        client = platform.client()
        started = time.monotonic()
        client.datasets.push(data, "bench-rows", project=PROJECT)
        print(f"pushed the dataset in {time.monotonic() - started:.1f} s")
        import pyarrow.parquet as pq

        sample = pq.read_table(data, columns=names).slice(0, 50).to_pandas()
        client.models.push(model, "bench-model", project=PROJECT, sample=sample)

        plains, jobs = [], []
        for round_ in range(args.repeats):
            plains.append(plain(data, model, work, names))
            jobs.append(job(client, args.batch_rows, args.rows, round_))
            p, j = plains[-1], jobs[-1]
            print(
                f"round {round_ + 1}: plain {args.rows / p['seconds']:,.0f} rows/s "
                f"(peak {p['peak_mib']:.0f} MiB) | job loop {j['loop_rows_per_second']:,.0f} "
                f"rows/s = {j['loop_rows_per_second'] / (args.rows / p['seconds']):.2f}x, "
                f"whole job {j['job_seconds']:.1f} s = "
                f"{j['job_rows_per_second'] / (args.rows / p['seconds']):.2f}x "
                f"(peak {j['loop_peak_mib']:.0f} MiB after the loop, {j['peak_mib']:.0f} MiB "
                "at the end)"
            )

        plain_rate = statistics.median(args.rows / p["seconds"] for p in plains)
        loop_rate = statistics.median(j["loop_rows_per_second"] for j in jobs)
        job_rate = statistics.median(j["job_rows_per_second"] for j in jobs)
        print()
        print(f"median of {args.repeats} rounds ({args.rows:,} rows, model {args.model}):")
        print(f"  plain in-process predict   {plain_rate:>12,.0f} rows/s   peak "
              f"{statistics.median(p['peak_mib'] for p in plains):.0f} MiB")  # fmt: skip
        print(f"  batch-predict job loop     {loop_rate:>12,.0f} rows/s   "
              f"{loop_rate / plain_rate:.2f}x plain (goal >= 0.8x)   peak "
              f"{statistics.median(j['loop_peak_mib'] for j in jobs):.0f} MiB")  # fmt: skip
        print(f"  batch-predict whole job    {job_rate:>12,.0f} rows/s   "
              f"{job_rate / plain_rate:.2f}x plain   peak "
              f"{statistics.median(j['peak_mib'] for j in jobs):.0f} MiB")  # fmt: skip
    finally:
        platform.stop(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
