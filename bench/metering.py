#!/usr/bin/env python3
"""Metering benchmark: what metering costs the inference path. Two throwaway platforms
(stratus.testing.LocalPlatform, local backend, fork server pre-warmed) serve the demo LR (a
StandardScaler + LogisticRegression on scikit-learn's breast-cancer data) on one replica each:

  on    metering every second (15 times the default rate: a pass asks every replica for its
        counters and writes the usage), with the price catalog, budgets and all
  off   metering every hour (so never within the run)

wrk drives --repeats pairs of --duration s runs at --conc connections, off then on and on then
off in turn, so that a machine whose speed drifts weighs on both sides alike; the cost is the
median of the pairs' throughput ratios. Goal: at most 2 %. Loopback only; every loop bounded;
both platforms and everything they started are stopped by PID at the end. Run from the
repository root:

    .venv/bin/python bench/metering.py                  # ~3 min
    .venv/bin/python bench/metering.py --repeats 9 --duration 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from serving_config import shared_module  # noqa: E402
from serving_load import write_lua  # noqa: E402

from stratus.testing import LocalPlatform  # noqa: E402

GOAL = 0.02


def model_folder(work: Path) -> tuple[Path, Any, list[float]]:
    import pandas as pd
    import skops.io
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer(as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(data.data, data.target)
    folder = work / "lr"
    folder.mkdir(parents=True)
    skops.io.dump(model, folder / "model.skops")
    sample: pd.DataFrame = data.data.head(20)
    return folder, sample, [float(v) for v in data.data.iloc[0]]


def serve(home: Path, interval: str, folder: Path, sample: Any, row: list[float]) -> LocalPlatform:
    platform = LocalPlatform(
        home,
        env={"STRATUS_BILLING_METER_INTERVAL_SECONDS": interval, "STRATUS_SERVING_PREWARM": "true"},
    )
    platform.start()
    with platform.client() as client:
        client.models.push(folder, "lr", sample=sample)
        client.endpoints.deploy("lr", "lr", replicas=1, wait=True, timeout=180)
    answer = httpx.post(
        f"{platform.url}/inference/default/lr/predict",
        json={"instances": [row]},
        headers={"Authorization": f"Bearer {platform.api_key}"},
        timeout=30,
    )
    answer.raise_for_status()
    return platform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--conc", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y --no-install-recommends wrk")
    ps = shared_module("peers_serving")
    with tempfile.TemporaryDirectory(prefix="stratus-metering-bench-") as scratch:
        work = Path(scratch)
        folder, sample, row = model_folder(work)
        body = json.dumps({"instances": [row]}).encode()
        platforms: dict[str, LocalPlatform] = {}
        try:
            for side, interval in (("off", "3600"), ("on", "1")):
                platforms[side] = serve(work / side, interval, folder, sample, row)
            luas = {
                side: write_lua(
                    ps,
                    work / f"{side}.lua",
                    body,
                    {"Authorization": f"Bearer {p.api_key}"},
                )
                for side, p in platforms.items()
            }
            urls = {s: f"{p.url}/inference/default/lr/predict" for s, p in platforms.items()}
            for side in platforms:  # warm-up
                ps.wrk(urls[side], str(luas[side]), args.conc, 2)
            ratios, runs = [], {"off": [], "on": []}
            print(f"metering off / every second, interleaved, c={args.conc}:", flush=True)
            for rep in range(args.repeats):
                order = ("off", "on") if rep % 2 == 0 else ("on", "off")
                got = {}
                for side in order:
                    w = ps.wrk(urls[side], str(luas[side]), args.conc, args.duration)
                    got[side] = w["rps_ok"]
                    runs[side].append(w["rps_ok"])
                    print(
                        f"  {side:3s} run{rep}: {w['rps_ok']:8.1f} req/s  "
                        f"p50 {w['p50_us'] / 1000:6.2f} ms  p99 {w['p99_us'] / 1000:6.2f} ms  "
                        f"errors {w['errors']}",
                        flush=True,
                    )
                ratios.append(1.0 - got["on"] / got["off"])
            with platforms["on"].client() as client:
                report = client.cost.report(by="endpoint", granularity="total")
            cost = statistics.median(ratios)
            verdict = "PASS" if cost <= GOAL else "FAIL"
            print(
                f"median off {statistics.median(runs['off']):.1f} req/s, on "
                f"{statistics.median(runs['on']):.1f} req/s; pair costs "
                + ", ".join(f"{r:+.1%}" for r in ratios)
                + f"\nmetering cost (median of pairs): {cost:+.1%}  goal <= {GOAL:.0%}: {verdict}"
                f"\n(the metered platform's report: {report.lines[0].requests:,} requests, "
                f"{report.lines[0].instance_hours * 3600:.0f} replica-seconds)",
                flush=True,
            )
        finally:
            for platform in platforms.values():
                platform.stop(timeout=60)
            time.sleep(0.5)


if __name__ == "__main__":
    main()
