#!/usr/bin/env python3
"""Drift benchmark: Stratus's drift statistics beside Evidently 0.7's DataDriftPreset.

The data are ../shared/bench/drift_anchor.py's (make_data, imported, not copied): --rows rows
of 20 numeric and 5 categorical columns a side, with num_0, num_1, num_2, cat_0 and cat_1
shifted in the current side. In one run it measures:
  stratus    Reference.from_columns(reference) + compute_drift(reference, current), every test
             computed (KS, Wasserstein, PSI for numbers; chi-square, Jensen-Shannon, PSI for
             categories), median of --repeats, the process pinned to one CPU
  evidently  drift_anchor.py run with a Python that has Evidently (--evidently-python), which
             times Dataset.from_pandas + Report([DataDriftPreset()]).run + snapshot.dict()
             (median of --repeats; its own threads, not pinned) and writes each column's value,
             method and threshold to a JSON file read back here
and prints both medians and their ratio (target >= 20x), the drifted columns of each, whether
the verdicts agree on the shifted columns, and the largest |KS statistic| and |p-value|
differences from scipy.stats.ks_2samp over the numeric columns (target <= 1e-9); then PASS or
FAIL for each target, and every figure as JSON (--out).

Setup (once; Evidently 0.7 breaks on pandas 3, hence the pin):
    python3 -m venv /tmp/peers/venv-evidently && /tmp/peers/venv-evidently/bin/pip install \
        'evidently>=0.7,<0.8' scipy 'pandas<3'
Run (from the repository root, with the project's venv):
    .venv/bin/python bench/drift.py                       # ~1 min, Evidently's 3 runs most of it
    .venv/bin/python bench/drift.py --skip-evidently --repeats 7     # Stratus and scipy only
Options: --rows 100000  --repeats 3  --evidently-python PATH  --skip-evidently
--out PATH (JSON; default /tmp/stratus-bench/drift-<time>.json).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "bench"
EVIDENTLY_PYTHON = Path("/tmp/peers/venv-evidently/bin/python")
SETUP = (
    "python3 -m venv /tmp/peers/venv-evidently && /tmp/peers/venv-evidently/bin/pip install "
    "'evidently>=0.7,<0.8' scipy 'pandas<3'"
)
SHIFTED = ("num_0", "num_1", "num_2", "cat_0", "cat_1")
RATIO_TARGET = 20.0
TIME_TARGET_S = 0.4
KS_TARGET = 1e-9


def anchor_module() -> ModuleType:
    """../shared/bench/drift_anchor.py (read-only), imported as a module."""
    path = SHARED / "drift_anchor.py"
    spec = importlib.util.spec_from_file_location("drift_anchor", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def one_cpu() -> Iterator[str]:
    """Pin this process to one CPU while timing (Linux), as the target says; restore after."""
    if not hasattr(os, "sched_setaffinity"):
        yield "not pinned (no sched_setaffinity)"
        return
    cpus = os.sched_getaffinity(0)
    cpu = min(cpus)
    os.sched_setaffinity(0, {cpu})
    try:
        yield f"pinned to CPU {cpu}"
    finally:
        os.sched_setaffinity(0, cpus)


def run_stratus(anchor: ModuleType, ref: Any, cur: Any, repeats: int) -> dict[str, Any]:
    from stratus.monitoring.statistics import Reference, compute_drift

    runs: list[float] = []
    report = None
    with one_cpu() as pinning:
        for _ in range(repeats):
            start = time.perf_counter()
            reference = Reference.from_columns(ref)
            report = compute_drift(reference, cur)
            runs.append(time.perf_counter() - start)
    assert report is not None
    features = {f.name: f for f in report.features}
    return {
        "median_s": statistics.median(runs),
        "runs_s": runs,
        "pinning": pinning,
        "drifted": [f.name for f in report.features if f.drifted],
        "columns": {
            name: {"method": f.method, "score": f.score, "drifted": f.drifted}
            for name, f in features.items()
        },
        "scipy": check_scipy(anchor, ref, cur, features),
    }


def check_scipy(anchor: ModuleType, ref: Any, cur: Any, features: dict[str, Any]) -> dict[str, Any]:
    """The largest differences from scipy's own KS test and Wasserstein distance."""
    import numpy as np
    from scipy import stats

    ks_statistic = ks_p = wasserstein = 0.0
    for column in anchor.NUM_COLS:
        f = features[column]
        expected = stats.ks_2samp(ref[column], cur[column])
        ks_statistic = max(ks_statistic, abs(f.ks_statistic - float(expected.statistic)))
        ks_p = max(ks_p, abs(f.ks_p_value - float(expected.pvalue)))
        w1 = stats.wasserstein_distance(ref[column], cur[column])
        normed = w1 / max(float(np.std(ref[column])), 0.001)
        wasserstein = max(wasserstein, abs(f.wasserstein - normed) / normed)
    return {
        "max_ks_statistic_diff": ks_statistic,
        "max_ks_p_value_diff": ks_p,
        "max_wasserstein_rel_diff": wasserstein,
    }


def run_evidently(python: Path, rows: int, repeats: int) -> dict[str, Any]:
    """drift_anchor.py in Evidently's venv; its figures from the JSON file it writes."""
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as work:
        out = Path(work) / "anchor.json"
        command = [
            str(python),
            str(SHARED / "drift_anchor.py"),
            f"--rows={rows}",
            f"--repeats={repeats}",
            f"--out={out}",
        ]
        print(f"=== evidently: {' '.join(command)}", flush=True)
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        for line in done.stdout.splitlines():
            print(f"  | {line}")
        if done.returncode != 0:
            raise RuntimeError(f"drift_anchor.py failed ({done.returncode}): {done.stderr[-2000:]}")
        data = json.loads(out.read_text())
    columns = data.get("evidently_columns", {})
    return {
        "version": data.get("evidently_version"),
        "median_s": data["evidently_e2e_s"]["median"],
        "runs_s": data["evidently_e2e_s"]["runs"],
        "columns": columns,
        "drifted": [c for c, v in columns.items() if evidently_drifted(v)],
    }


def evidently_drifted(column: dict[str, Any]) -> bool:
    """Evidently's verdict from a column's value: p-values drift below the threshold,
    distances (its defaults at this size) at or above it."""
    value, threshold = column.get("value"), column.get("threshold")
    if value is None or threshold is None:
        return False
    if "p_value" in str(column.get("method", "")).lower().replace("-", "_"):
        return float(value) < float(threshold)
    return float(value) >= float(threshold)


def evaluate(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(verdict, target, figures) for each target."""
    ours, theirs = results["stratus"], results.get("evidently")
    rows: list[tuple[str, str, str]] = []
    median = ours["median_s"]
    rows.append(
        (
            "PASS" if median < TIME_TARGET_S else "FAIL",
            f"Stratus full report < {TIME_TARGET_S} s on one core",
            f"{median * 1000:.0f} ms",
        )
    )
    if theirs is None:
        rows.append(("not measured", f"ratio >= {RATIO_TARGET:g}x Evidently", "--skip-evidently"))
        rows.append(("not measured", "verdicts agree with Evidently", "--skip-evidently"))
    else:
        ratio = theirs["median_s"] / median
        rows.append(
            (
                "PASS" if ratio >= RATIO_TARGET else "FAIL",
                f"ratio >= {RATIO_TARGET:g}x Evidently",
                f"{ratio:.1f}x",
            )
        )
        differ = [c for c in SHIFTED if (c in ours["drifted"]) != (c in theirs["drifted"])]
        rows.append(
            (
                "PASS" if not differ else "FAIL",
                f"verdicts agree with Evidently on {', '.join(SHIFTED)}",
                f"differ on {', '.join(differ)}" if differ else "all agree",
            )
        )
    scipy = ours["scipy"]
    worst = max(scipy["max_ks_statistic_diff"], scipy["max_ks_p_value_diff"])
    rows.append(
        (
            "PASS" if worst <= KS_TARGET else "FAIL",
            f"KS statistic and p-value within {KS_TARGET:g} of scipy.stats.ks_2samp",
            f"max |stat diff| {scipy['max_ks_statistic_diff']:.2g}, "
            f"max |p diff| {scipy['max_ks_p_value_diff']:.2g}",
        )
    )
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--rows", type=int, default=100_000, help="rows a side")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each (medians)")
    ap.add_argument("--evidently-python", type=Path, default=EVIDENTLY_PYTHON)
    ap.add_argument("--skip-evidently", action="store_true", help="Stratus and scipy only")
    ap.add_argument("--out", type=Path, default=None, help="JSON of all figures")
    args = ap.parse_args(argv)
    if args.rows < 1 or args.repeats < 1:
        ap.error("--rows and --repeats are at least 1")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out = args.out or Path("/tmp/stratus-bench") / f"drift-{stamp}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (SHARED / "drift_anchor.py").exists():
        print(f"Missing {SHARED / 'drift_anchor.py'} (shared/bench)", file=sys.stderr)
        return 2
    if not args.skip_evidently and not args.evidently_python.exists():
        print(
            f"No Evidently Python at {args.evidently_python}; run:\n    {SETUP}\n"
            "(or run with --skip-evidently)",
            file=sys.stderr,
        )
        return 2
    anchor = anchor_module()
    start = time.perf_counter()
    ref, cur = anchor.make_data(args.rows)
    print(
        f"data: {args.rows} rows x {len(ref.columns)} columns a side, "
        f"made in {time.perf_counter() - start:.2f} s",
        flush=True,
    )
    results: dict[str, Any] = {
        "meta": {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "args": {k: str(v) for k, v in vars(args).items()},
        }
    }
    results["stratus"] = ours = run_stratus(anchor, ref, cur, args.repeats)
    print(
        f"=== stratus: median {ours['median_s'] * 1000:.1f} ms ({ours['pinning']}), runs "
        f"{[round(t * 1000, 1) for t in ours['runs_s']]}"
    )
    if not args.skip_evidently:
        results["evidently"] = run_evidently(args.evidently_python, args.rows, args.repeats)
    theirs = results.get("evidently")

    print("\n## Figures")
    print(f"Stratus full report (reference + drift, all tests): {ours['median_s'] * 1000:.1f} ms")
    if theirs:
        ratio = theirs["median_s"] / ours["median_s"]
        print(f"Evidently {theirs['version']} DataDriftPreset e2e: {theirs['median_s']:.2f} s")
        print(f"ratio Evidently / Stratus: {ratio:.1f}x (target >= {RATIO_TARGET:g}x)")
    print(f"drifted, Stratus   : {ours['drifted']}")
    if theirs:
        print(f"drifted, Evidently : {theirs['drifted']}")
        print("| column | Stratus method | score | Evidently method | value | agree |")
        print("|---|---|---|---|---|---|")
        for column in SHIFTED:
            mine, other = ours["columns"][column], theirs["columns"].get(column, {})
            agree = mine["drifted"] == (column in theirs["drifted"])
            value = other.get("value")
            print(
                f"| {column} | {mine['method']} | {mine['score']:.4g} | {other.get('method')} | "
                f"{'-' if value is None else f'{float(value):.4g}'} | {'yes' if agree else 'NO'} |"
            )
    scipy = ours["scipy"]
    print(
        "vs scipy over the numeric columns: "
        f"max |KS statistic diff| {scipy['max_ks_statistic_diff']:.3g}, "
        f"max |KS p diff| {scipy['max_ks_p_value_diff']:.3g}, "
        f"max Wasserstein relative diff {scipy['max_wasserstein_rel_diff']:.3g}"
    )
    results["targets"] = [
        {"verdict": v, "target": t, "figures": f} for v, t, f in evaluate(results)
    ]
    print("\n## Targets")
    for row in results["targets"]:
        print(f"{row['verdict']:>12}  {row['target']}: {row['figures']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
