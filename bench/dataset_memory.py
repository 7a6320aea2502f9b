#!/usr/bin/env python3
"""Dataset memory benchmark: the peak RSS of profiling and validating a pushed CSV.

For each size (default 1M and 10M rows) it writes a CSV to a temporary folder (an id, three
numeric columns, a category, a plan and an e-mail-like unique string; ~70 bytes a row, so 10M
rows is ~700 MB: check `df -h` first) and measures, each in a fresh child process that reports
its own peak RSS (VmHWM of /proc/self/status):

  baseline   the imports only (pyarrow, numpy, stratus.data): what any child starts from
  streaming  the commit path as the data service runs it: the file spooled to a temporary
             file, read a batch at a time (`stratus.data.batches`), profiled
             (`profile_batches`) and validated (`validate_batches`) against a few rules
  whole      the reference, the old way: `pyarrow.csv.read_csv` of the whole file, then the
             same profile and validation over the table in memory

and prints each peak, its increase over the baseline and the file's size. The rules here have
no `unique` (which keeps every distinct value by design; `--unique` adds one on `email`).

Run (from the repository root, with the project's venv; once is enough, on a quiet machine):
    .venv/bin/python bench/dataset_memory.py                    # 1M and 10M rows, ~4 min
    .venv/bin/python bench/dataset_memory.py --rows 200000      # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHUNK_ROWS = 1_000_000
CITIES = [f"city-{i:02d}" for i in range(50)]
PLANS = ["basic", "plus", "pro", "team", "enterprise"]
RULES = {
    "rows": {"min": 1},
    "columns": {
        "id": {"type": "integer", "not_null": True, "min": 0},
        "amount": {"type": "number", "finite": True, "min": -1000},
        "count": {"min": 0, "max": 50},
        "plan": {"allowed": PLANS, "max_null_share": 0.05},
        "city": {"not_null": True},
    },
}


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Write `rows` rows in chunks of a million (numpy + pyarrow: ~2 s per million)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(seed)
    writer: pa_csv.CSVWriter | None = None
    try:
        for start in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - start)
            ids = pa.array(np.arange(start, start + n, dtype=np.int64))
            plan_index = pa.array(rng.integers(0, len(PLANS), n), mask=rng.random(n) < 0.01)
            plan = pa.DictionaryArray.from_arrays(plan_index, pa.array(PLANS)).cast(pa.string())
            city_index = pa.array(rng.integers(0, len(CITIES), n))
            city = pa.DictionaryArray.from_arrays(city_index, pa.array(CITIES)).cast(pa.string())
            table = pa.table(
                {
                    "id": ids,
                    "amount": rng.normal(100, 15, n),
                    "score": rng.random(n),
                    "count": rng.poisson(4, n),
                    "city": city,
                    "plan": plan,
                    "email": pc.binary_join_element_wise(
                        "user", pc.cast(ids, pa.string()), "@example.org", ""
                    ),
                }
            )
            if writer is None:
                writer = pa_csv.CSVWriter(str(path), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


CHILD = r"""
import json, sys, tempfile, time
import numpy, pyarrow, pyarrow.csv
from stratus.data.batches import FileSource, open_file, reopener
from stratus.data.profiling import profile_batches, profile_table
from stratus.data.rules import parse_rules
from stratus.data.validation import validate_batches, validate_table

mode, path, rules = sys.argv[1], sys.argv[2], parse_rules(json.loads(sys.argv[3]))
started = time.perf_counter()
rows = None
if mode == "streaming":  # as DataService._open_rows and commit_version / validate do
    with tempfile.SpooledTemporaryFile(max_size=32 * 2**20) as spooled:
        with open(path, "rb") as raw:
            while chunk := raw.read(2**20):
                spooled.write(chunk)
        source = FileSource([(path, open_file(reopener(spooled), "csv", path))])
        rows = profile_batches(source).rows
        report = validate_batches(source, rules)
elif mode == "whole":
    table = pyarrow.csv.read_csv(
        path,
        parse_options=pyarrow.csv.ParseOptions(newlines_in_values=True),
        convert_options=pyarrow.csv.ConvertOptions(
            strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    rows = profile_table(table).rows
    report = validate_table(table, rules)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over an exec from the parent (which wrote
# the CSV), VmHWM starts again with the new program
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status")
                if line.startswith("VmHWM:"))
print(json.dumps({"peak_mib": peak_kib / 1024, "rows": rows,
                  "seconds": time.perf_counter() - started}))
"""


def measure(mode: str, path: Path, rules: dict[str, object]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), json.dumps(rules)],
        check=True,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated sizes")
    parser.add_argument("--dir", help="where to write the CSVs (default: a temporary folder)")
    parser.add_argument("--unique", action="store_true", help="also check email is unique")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--generate", help=argparse.SUPPRESS)  # write one CSV and stop
    args = parser.parse_args()
    if args.generate:
        generate(Path(args.generate), int(args.rows))
        return
    rules: dict[str, object] = json.loads(json.dumps(RULES))
    if args.unique:
        rules["columns"]["email"] = {"unique": True}  # type: ignore[index]
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="stratus-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    figures = []
    try:
        for rows in (int(r) for r in args.rows.split(",")):
            path = folder / f"rows-{rows}.csv"
            started = time.perf_counter()
            # in a child: the CSV's chunks must not count in this process's memory
            subprocess.run(
                [sys.executable, __file__, "--generate", str(path), "--rows", str(rows)],
                check=True,
                timeout=3600,
            )
            size_mib = path.stat().st_size / 2**20
            print(
                f"{rows:>11,} rows: {size_mib:,.0f} MiB CSV, written in "
                f"{time.perf_counter() - started:.1f} s",
                flush=True,
            )
            base = measure("baseline", path, rules)["peak_mib"]
            line = {"rows": rows, "file_mib": size_mib, "baseline_mib": base}
            for mode in ("streaming", "whole"):
                result = measure(mode, path, rules)
                assert result["rows"] == rows, result
                line[f"{mode}_mib"] = result["peak_mib"]
                line[f"{mode}_s"] = result["seconds"]
                print(
                    f"    {mode:<9} peak {result['peak_mib']:7,.0f} MiB "
                    f"(+{result['peak_mib'] - base:,.0f} over the {base:,.0f} MiB baseline) "
                    f"in {result['seconds']:.1f} s",
                    flush=True,
                )
            figures.append(line)
            path.unlink()
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
