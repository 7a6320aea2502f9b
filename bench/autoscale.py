#!/usr/bin/env python3
"""Autoscaling benchmark: a throwaway `stratus up` (stratus.testing.LocalPlatform, local
backend, fork server pre-warmed as `stratus up` does), the demo model (StandardScaler +
LogisticRegression on scikit-learn's breast-cancer data) behind two autoscaled endpoints:

  from zero   min 0, scale to zero after 1 s: --trials times, wait until the endpoint has no
              replica, then time one request (first byte sent -> answer). p50, p99; every
              answer must be 200 with X-Stratus-Cold-Start: true. Goal: p99 <= 0.5 s.
  burst       min 1, max --max-replicas, target --target: --steady s at 1 connection, then
              --burst s at 64 connections, then 1 connection again until the endpoint is back
              at one replica (scale-down included). Reports the time from the burst's start
              until the desired count reaches its peak (goal <= 2 s; the peak is checked
              against ceil(64 / target), at most max: the gateway sees a little under 64 in
              flight, some are in wrk or the kernel), the time until the p99 of one-second
              windows is back within 2x of the burst's settled p99 (its last 5 s), and the
              failed requests of the whole run (goal 0).

The load is wrk's, in one-second runs (so each second has its own p99 and failure count), on
loopback only; every loop is bounded in count and time. The platform and everything it started
are stopped by PID at the end. Run from the repository root:

    .venv/bin/python bench/autoscale.py                 # ~2 min
    .venv/bin/python bench/autoscale.py --trials 5 --burst 10
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from serving import shared_module, write_lua  # bench/serving.py: the shared peers' wrk script

PROJECT = "default"
PEERS = shared_module("peers_serving")


def train(folder: Path) -> tuple[Path, list[list[float]]]:
    import skops.io
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(data.data, data.target)
    path = folder / "model.skops"
    skops.io.dump(model, path)
    return path, data.data[:50].tolist()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


class Bench:
    def __init__(self, url: str, api_key: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.api = httpx.Client(base_url=url, headers=self.headers, timeout=30)

    def endpoint(self, name: str) -> dict[str, Any]:
        answer = self.api.get(f"/api/v1/projects/{PROJECT}/endpoints/{name}")
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data

    def live(self, name: str) -> int:
        replicas = self.endpoint(name)["status"]["replicas"]
        return sum(1 for r in replicas if r["phase"] in ("starting", "ready", "draining"))

    def ready(self, name: str) -> int:
        replicas = self.endpoint(name)["status"]["replicas"]
        return sum(1 for r in replicas if r["phase"] == "ready")

    def wait(self, what: str, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not within {timeout:g} s")
            time.sleep(0.05)

    def deploy(self, name: str, model: str, autoscaling: dict[str, Any]) -> None:
        variant = {"name": "main", "model": model, "autoscaling": autoscaling}
        answer = self.api.post(
            f"/api/v1/projects/{PROJECT}/endpoints", json={"name": name, "variants": [variant]}
        )
        if answer.status_code >= 300:
            raise RuntimeError(f"deploy {name}: {answer.status_code} {answer.text[:300]}")

    def from_zero(self, name: str, body: bytes, trials: int) -> dict[str, Any]:
        url = f"{self.url}/inference/{PROJECT}/{name}/predict"
        seconds: list[float] = []
        bad: list[str] = []
        with httpx.Client(headers=self.headers, timeout=60) as http:
            for trial in range(trials):
                self.wait("the endpoint at zero replicas", lambda: self.live(name) == 0, 120)
                started = time.perf_counter()
                answer = http.post(url, content=body, headers={"Content-Type": "application/json"})
                seconds.append(time.perf_counter() - started)
                cold = answer.headers.get("x-stratus-cold-start") == "true"
                if answer.status_code != 200 or not cold:
                    bad.append(f"trial {trial}: {answer.status_code} cold={cold}")
                print(f"  trial {trial + 1:2d}: {seconds[-1] * 1000:6.0f} ms", flush=True)
        return {
            "trials": trials,
            "p50_s": statistics.median(seconds),
            "p99_s": percentile(seconds, 99),
            "max_s": max(seconds),
            "seconds": seconds,
            "bad": bad,
        }

    def burst(
        self, name: str, body: bytes, steady: int, burst: int, goal: int, settle: float
    ) -> dict[str, Any]:
        """wrk in one-second slices (1 connection, then 64, then 1 until the endpoint is back
        at one replica), while a thread watches the endpoint's desired and ready counts."""
        url = f"{self.url}/inference/{PROJECT}/{name}/predict"
        lua = Path(tempfile.mkdtemp(prefix="sautoscale-lua-", dir="/tmp")) / "post.lua"
        write_lua(PEERS, lua, body, self.headers)
        seen: list[tuple[float, int, int]] = []  # time, desired, ready
        stop = threading.Event()
        began = time.perf_counter()

        def watch() -> None:
            with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as api:
                while not stop.is_set():
                    answer = api.get(f"/api/v1/projects/{PROJECT}/endpoints/{name}")
                    status = answer.json()["status"]
                    want = status["variants"][0]["desired"] if status["variants"] else 0
                    ready = sum(1 for r in status["replicas"] if r["phase"] == "ready")
                    seen.append((time.perf_counter() - began, want, ready))
                    stop.wait(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        slices: list[dict[str, Any]] = []
        try:
            for connections, count in ((1, steady), (64, burst)):
                for _ in range(count):
                    slices.append(wrk_slice(url, lua, connections, began))
            settle_until = time.perf_counter() + settle
            while time.perf_counter() < settle_until:
                slices.append(wrk_slice(url, lua, 1, began))
                last = seen[-1] if seen else (0.0, 0, 0)
                if last[1] == 1 and last[2] == 1:
                    break
        finally:
            stop.set()
            watcher.join(10)
            lua.unlink()
            lua.parent.rmdir()
        start = slices[steady]["at"]
        end_of_burst = slices[steady + burst - 1]["at"] + 1.0
        # what the gateway sees in flight is a little under 64 (some requests are in wrk or
        # the kernel): the burst's goal is the most the autoscaler asked for during it
        during = [(t, want, ready) for t, want, ready in seen if start <= t <= end_of_burst]
        peak = max((want for _, want, _ in during), default=0)
        reached = next((t - start for t, want, _ in during if want >= peak), None)
        ready_at = next((t - start for t, _, ready in during if ready >= peak), None)
        in_burst = slices[steady : steady + burst]
        settled_p99 = statistics.median(s["p99_ms"] for s in in_burst[-5:])
        recovered = next(
            (s["at"] + 1.0 - start for s in in_burst if s["p99_ms"] <= 2 * settled_p99), None
        )
        back = next(
            (
                t - end_of_burst
                for t, want, ready in seen
                if t > end_of_burst and want == ready == 1
            ),
            None,
        )
        return {
            "requests": sum(s["requests"] for s in slices),
            "failed": sum(s["failed"] for s in slices),
            "nominal_replicas": goal,
            "peak_desired": peak,
            "desired_reached_s": reached,
            "ready_reached_s": ready_at,
            "max_desired": max((w for _, w, _ in seen), default=0),
            "steady_p99_ms": statistics.median(s["p99_ms"] for s in slices[:steady]),
            "settled_p99_ms": settled_p99,
            "p99_back_within_2x_s": recovered,
            "back_to_one_after_burst_s": back,
            "slices": slices,
            "desired_changes": [
                (round(t - start, 2), want, ready)
                for i, (t, want, ready) in enumerate(seen)
                if i == 0 or seen[i - 1][1:] != (want, ready)
            ],
        }


def wrk_slice(url: str, lua: Path, connections: int, began: float) -> dict[str, Any]:
    """One second of wrk (peers_serving's runner): requests, failures (non-2xx and socket
    errors), p99."""
    at = time.perf_counter() - began
    figures = PEERS.wrk(url, str(lua), connections, 1)
    return {"at": at, "connections": connections, "requests": figures["requests"],
            "failed": figures["errors"], "p99_ms": figures["p99_us"] / 1000}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--trials", type=int, default=20, help="from-zero trials")
    ap.add_argument("--steady", type=int, default=5, help="seconds at 1 connection first")
    ap.add_argument("--burst", type=int, default=15, help="seconds at 64 connections")
    ap.add_argument("--settle", type=float, default=90.0, help="seconds at most, back to one")
    ap.add_argument("--target", type=float, default=8.0, help="target in flight per replica")
    ap.add_argument("--max-replicas", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None, help="JSON of all figures")
    args = ap.parse_args(argv)
    if args.trials < 1 or args.burst < 6 or args.steady < 1:
        ap.error("--trials >= 1, --burst >= 6 and --steady >= 1")
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install -y --no-install-recommends wrk", file=sys.stderr)
        return 2

    from stratus.testing import LocalPlatform

    work = Path(tempfile.mkdtemp(prefix="sautoscale-", dir="/tmp"))
    platform = LocalPlatform(work / "home", env={"STRATUS_SERVING_PREWARM": "true"})
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    try:
        print("=== starting a platform", flush=True)
        platform.start(timeout=120)
        model, rows = train(work)
        with platform.client() as client:
            client.models.push(model, "demo-lr", project=PROJECT, sample=rows)
        bench = Bench(platform.url, platform.api_key)
        body = json.dumps({"instances": [rows[0]]}).encode()

        print(f"=== from zero: {args.trials} trials", flush=True)
        bench.deploy(
            "from-zero", "demo-lr:1",
            {"min_replicas": 0, "max_replicas": 1, "scale_to_zero_after_seconds": 1,
             "stable_window_seconds": 2, "panic_window_seconds": 1,
             "scale_down_delay_seconds": 0},
        )  # fmt: skip
        results["from_zero"] = bench.from_zero("from-zero", body, args.trials)

        goal = min(args.max_replicas, math.ceil(64 / args.target))
        print(f"=== burst: 1 -> 64 connections, goal {goal} replicas", flush=True)
        settings = {"min_replicas": 1, "max_replicas": args.max_replicas,
                    "target_concurrency": args.target, "stable_window_seconds": 20,
                    "panic_window_seconds": 6, "scale_down_delay_seconds": 5}  # fmt: skip
        bench.deploy("burst", "demo-lr:1", settings)
        bench.wait("one ready replica", lambda: bench.ready("burst") == 1, 60)
        results["burst_settings"] = settings
        results["burst"] = bench.burst("burst", body, args.steady, args.burst, goal, args.settle)
    finally:
        platform.stop()

    zero, burst = results["from_zero"], results["burst"]
    print("\n## Figures")
    print(
        f"from zero ({zero['trials']} trials): p50 {zero['p50_s'] * 1000:.0f} ms, "
        f"p99 {zero['p99_s'] * 1000:.0f} ms, max {zero['max_s'] * 1000:.0f} ms"
        + (f"; NOT cold or not 200: {zero['bad']}" if zero["bad"] else "")
    )
    print(
        f"burst: {burst['requests']} requests, {burst['failed']} failed; desired "
        f"{burst['peak_desired']} (nominal {goal}) after {_s(burst['desired_reached_s'])}, "
        f"ready after {_s(burst['ready_reached_s'])}; "
        f"p99 within 2x of settled ({_ms(burst['settled_p99_ms'])}) after "
        f"{_s(burst['p99_back_within_2x_s'])}; back to 1 replica "
        f"{_s(burst['back_to_one_after_burst_s'])} after the burst"
    )
    checks = [
        ("from zero p99 <= 0.5 s", zero["p99_s"] <= 0.5 and not zero["bad"]),
        ("burst: desired count within 2 s", (burst["desired_reached_s"] or 99) <= 2.0),
        ("burst: desired >= 0.8x nominal", burst["peak_desired"] >= 0.8 * goal),
        ("burst: zero failed requests", burst["failed"] == 0),
        ("burst: back to one replica", burst["back_to_one_after_burst_s"] is not None),
    ]
    print("\n## Goals")
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL':>6}  {text}")
    out = (
        args.out or Path("/tmp/stratus-bench") / f"autoscale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nJSON: {out}")
    return 0 if all(ok for _, ok in checks) else 1


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


if __name__ == "__main__":
    sys.exit(main())
