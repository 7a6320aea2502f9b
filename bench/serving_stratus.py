"""The serving benchmark's Stratus measurement, on a `StratusRun`: a platform started and
settled, one model pushed and deployed (cold starts, idle memory at 1 and 2 replicas,
scaled to the replicas under load) as a `Prepared` server, and at its finish the cost of
data capture at 100 % and of rate limiting in interleaved off/on pairs before the endpoint is
deleted; `rate_limit_check_ns` times the gateway's limit checks alone, in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from serving_load import Prepared, load_matrix, med, summarize_runs, write_lua
from serving_models import BenchModel
from serving_platform import StratusRun
from serving_procs import Cleanup


def start_platform(
    args: argparse.Namespace,
    cleanup: Cleanup,
    results: dict[str, Any],
    server: str,
    cluster: Any = None,
) -> StratusRun:
    """A throwaway platform (on the Ray cluster when given), settled, for `server`."""
    print(f"=== {server}: starting a platform", flush=True)
    run = StratusRun(args, cleanup, cluster)
    meta = results["meta"].setdefault("platforms", {}).setdefault(server, {})
    meta.update(up_s=run.start_s, settle_s=run.settle_s, home=str(run.home))
    warm = "not pre-warmed (--no-prewarm)" if args.no_prewarm else "pre-warmed"
    print(
        f"  up in {run.start_s:.2f} s, idle {run.settle_s:.2f} s later (fork server {warm})",
        flush=True,
    )
    return run


def delete_endpoints(run: StratusRun) -> None:
    for name in list(run.replicas):
        with contextlib.suppress(Exception):
            run.delete(name)


def run_stratus_model(
    run: StratusRun, ps: ModuleType, m: BenchModel, X: Any, row: list[float]
) -> dict[str, Any]:
    """One model on its own (the Ray path): prepare, the load matrix, finish."""
    prepared = prepare_stratus_model(run, ps, m, X, row)
    prepared.res["wrk"] = load_matrix(ps, prepared.url, prepared.lua, run.args)
    prepared.finish()
    return prepared.res


def prepare_stratus_model(
    run: StratusRun, ps: ModuleType, m: BenchModel, X: Any, row: list[float]
) -> Prepared:
    """Push the model, deploy it (cold starts), idle memory at 1 and 2 replicas, then scale to
    the replicas under load; `finish` measures capture, records the replicas and deletes it."""
    args = run.args
    body = json.dumps({"instances": [row]}).encode()
    load_replicas = args.replicas.get(m.name, 2)
    where = "Ray backend, 3 nodes on loopback" if run.cluster else "local fork server"
    res: dict[str, Any] = {
        "setting": f"gateway, API key, {load_replicas} replica(s) under load ({where})"
    }
    t0 = time.perf_counter()
    ref = run.push(m, X)
    res["push_s"] = time.perf_counter() - t0
    res["model_ref"] = ref
    name = f"bench-{m.name}"
    d = run.deploy(name, ref, body)
    res["cold_starts"] = [d]
    res["first_response"] = d["first"]
    expected = m.estimator.predict(X[0:1]).tolist()
    got = json.loads(d["first"]).get("predictions")
    res["prediction_matches"] = got == expected
    print(
        f"  deploy -> first 200: {d['cold_s']:.2f} s (POST answered in {d['post_s'] * 1000:.0f} ms)"
        f"  first={d['first'][:60]!r}"
        + ("" if got == expected else f"  WARNING: expected predictions {expected}"),
        flush=True,
    )
    run.wait_ready(name, 1)
    time.sleep(args.idle_wait)
    mem1 = run.memory(run.wait_ready(name, 1))
    res["memory_1_replica"] = mem1
    res["scale_to_2_s"] = run.scale(name, ref, 2)
    time.sleep(args.idle_wait)
    mem2 = run.memory(run.wait_ready(name, 2))
    res["memory_2_replicas"] = mem2
    res["extra_replica_pss_mb"] = mem2["total_pss_mb"] - mem1["total_pss_mb"]
    res["idle_pss_mb"] = mem1["total_pss_mb"]
    print(
        f"  idle PSS, 1 replica: replica {mem1['replicas_pss_mb']:.0f} MB, fork server "
        f"{mem1['fork_server_pss_mb']:.0f} MB, control plane {mem1['control_plane_pss_mb']:.0f} MB"
        f" ({mem1['control_plane_procs']} procs)"
        + (
            f", Ray actors {' + '.join(f'{x:.0f}' for x in mem1['actor_pss_mb'])} MB"
            if "actor_pss_mb" in mem1
            else ""
        )
        + "; 2 replicas: "
        + " + ".join(f"{x:.0f}" for x in mem2["replica_pss_mb"])
        + f" MB; extra replica +{res['extra_replica_pss_mb']:.0f} MB (total PSS);"
        f" scale-up {res['scale_to_2_s']:.2f} s",
        flush=True,
    )
    # more cold starts (the fork server is warm by now), each endpoint deleted right after
    for rep in range(1, args.repeats):
        extra = f"{name}-cold{rep}"
        d = run.deploy(extra, ref, body)
        res["cold_starts"].append(d)
        print(f"  deploy {extra} -> first 200: {d['cold_s']:.2f} s", flush=True)
        run.wait_ready(extra, 1)
        run.delete(extra)
    colds = [c["cold_s"] for c in res["cold_starts"]]
    res["cold_s"] = max(colds)
    res["cold_s_median"] = med(colds)
    if load_replicas != 2:
        run.scale(name, ref, load_replicas)
        run.wait_ready(name, load_replicas)
    res["load_replicas"] = load_replicas
    headers = {"Authorization": f"Bearer {run.platform.api_key}"}
    server = "stratus-ray" if run.cluster else "stratus"
    lua = write_lua(ps, args.work / f"post-{server}-{m.name}.lua", body, headers)

    def finish() -> None:
        try:
            if args.capture:
                res["capture"] = measure_capture(run, ps, name, lua, args)
            if args.rate_limits:
                res["rate_limit"] = measure_rate_limits(run, ps, name, lua, args)
            res["replicas_after_load"] = [
                {k: r.get(k) for k in ("id", "phase", "pid", "in_flight", "detail")}
                for r in run.get(name)["status"]["replicas"]
            ]
        finally:
            run.delete(name)

    return Prepared(server, run.platform.url + run.predict_path(name), lua, res, finish)


def interleaved_pairs(
    ps: ModuleType,
    url: str,
    lua: Path,
    conc: int,
    args: argparse.Namespace,
    switch: Callable[[bool], None],
    after: Callable[[], None] = lambda: None,
) -> dict[str, list[dict[str, Any]]]:
    """--repeats pairs of wrk runs with a setting off and on (`switch`), off first in even
    pairs and on first in odd ones, so that a machine whose speed drifts weighs on neither
    side; `after` runs after each run."""
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for rep in range(args.repeats):
        order = (("off", False), ("on", True)) if rep % 2 == 0 else (("on", True), ("off", False))
        for side, on in order:
            switch(on)
            w = ps.wrk(url, str(lua), conc, args.duration)
            runs[side].append(w)
            print(
                f"    {side:3s} run{rep}: {w['rps_ok']:8.1f} req/s"
                f"  p50 {w['p50_us'] / 1000:7.2f} ms  p99 {w['p99_us'] / 1000:7.2f} ms"
                f"  errors {w['errors']}",
                flush=True,
            )
            after()
    return runs


def measure_capture(
    run: StratusRun, ps: ModuleType, name: str, lua: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Throughput with data capture at 100 % against without, at the highest concurrency:
    after a warm-up with capture on, --repeats pairs of runs, off then on and on then off in
    turn, so that a machine whose speed drifts during the run weighs on both sides alike; each
    run starts once the writer has written all that was captured before it; the platform's
    capture counters show that every captured request was written (none dropped)."""
    url = run.platform.url + run.predict_path(name)
    conc = max(args.concs)

    def set_sample(sample: float) -> None:
        r = run.api.patch(f"{run.base}/{name}", json={"capture": {"sample": sample}})
        if r.status_code >= 300:
            raise RuntimeError(f"PATCH capture -> {r.status_code}: {r.text[:300]}")
        time.sleep(1.5)  # the controller rebuilds the route at its next pass

    def caught_up(deadline: float = 60.0) -> None:
        """Wait until the writer has written everything captured (bounded): the next run
        must not pay for the last one's capture."""
        ends = time.monotonic() + deadline
        while capture_counters(run).get("stratus_capture_pending", 0) > 0:
            if time.monotonic() > ends:
                print("    (the capture writer had not caught up after 60 s)", flush=True)
                return
            time.sleep(0.25)

    # warm-up: the first captured requests start the encoder process (a one-off second of
    # CPU that is no part of capture's cost in the steady state)
    set_sample(1.0)
    ps.wrk(url, str(lua), conc, max(2, args.duration // 2))
    caught_up()
    print(f"  data capture off / at 100%, interleaved, c={conc}:", flush=True)
    runs = interleaved_pairs(
        ps, url, lua, conc, args, lambda on: set_sample(1.0 if on else 0.0), after=caught_up
    )
    set_sample(0.0)
    time.sleep(3)  # let the writer catch up
    counters = capture_counters(run)
    print(
        f"  capture: {counters.get('stratus_capture_records_total', 0):.0f} records captured, "
        f"{counters.get('stratus_capture_rows_written_total', 0):.0f} rows written, "
        f"{counters.get('stratus_capture_dropped_total', 0):.0f} dropped",
        flush=True,
    )
    return {
        "conc": conc,
        "off": {"runs": runs["off"], **summarize_runs(runs["off"])},
        "on": {"runs": runs["on"], **summarize_runs(runs["on"])},
        "counters": counters,
    }


def rate_limit_check_ns(iterations: int = 200_000) -> dict[str, float]:
    """What the gateway's limit checks cost one request, in this process: nanoseconds per
    request with a key, a project and an endpoint limit (none ever reached), against the same
    calls with no limit set (what every request pays today)."""
    from stratus.core.token_buckets import Limit
    from stratus.iam.principals import Principal
    from stratus.iam.throttling import Throttle

    huge = Limit(1e9, 1_000_000_000)
    limited = Principal(kind="user", uid="u", name="bench", key_id="k1", rate_limit=huge)
    plain = Principal(kind="user", uid="u", name="bench", key_id="k1")
    on, off = Throttle(), Throttle()
    on.set_project_limits({"default": huge})

    def with_limits() -> None:
        on.endpoint("default", "bench", huge)
        on.caller(limited, "default", "bench")

    def without() -> None:
        off.caller(plain, "default", "bench")

    figures: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(5):
        for side, call in (("off", without), ("on", with_limits)):
            started = time.perf_counter_ns()
            for _ in range(iterations):
                call()
            figures[side].append((time.perf_counter_ns() - started) / iterations)
    return {"on_ns": min(figures["on"]), "off_ns": min(figures["off"])}


def measure_rate_limits(
    run: StratusRun, ps: ModuleType, name: str, lua: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Throughput with every rate limit set (the key's, the project's and the endpoint's, all
    far above the load, so none refuses) against none, at the highest concurrency, in
    --repeats interleaved off/on pairs as for capture."""
    url = run.platform.url + run.predict_path(name)
    conc = max(args.concs)
    key_id = run.platform.api_key.split("_")[1]
    huge = {"requests_per_second": 1e6, "burst": 1_000_000}
    base = run.platform.url + "/api/v1"

    def set_limits(on: bool) -> None:
        calls = [
            ("PATCH", f"{run.base}/{name}", {"access": {"rate_limit": huge} if on else {}}),
            ("PUT" if on else "DELETE", f"{base}/keys/{key_id}/rate-limit", huge if on else None),
            (
                "PUT" if on else "DELETE",
                f"{base}/projects/default/rate-limit",
                huge if on else None,
            ),
        ]
        for method, where, body in calls:
            r = run.api.request(method, where, json=body)
            if r.status_code >= 300:
                raise RuntimeError(f"{method} {where} -> {r.status_code}: {r.text[:300]}")
        time.sleep(1.5)  # the controller rebuilds the route at its next pass

    print(f"  rate limits off / on (none reached), interleaved, c={conc}:", flush=True)
    runs = interleaved_pairs(ps, url, lua, conc, args, set_limits)
    set_limits(False)
    held = measure_held_limit(run, ps, name, lua, conc)
    return {
        "conc": conc,
        "off": {"runs": runs["off"], **summarize_runs(runs["off"])},
        "on": {"runs": runs["on"], **summarize_runs(runs["on"])},
        "held": held,
    }


HELD_RATE = 200.0  # requests per second the endpoint is limited to
HELD_BURST = 20
HELD_SECONDS = 10


def measure_held_limit(
    run: StratusRun, ps: ModuleType, name: str, lua: Path, conc: int
) -> dict[str, Any]:
    """An endpoint limited to HELD_RATE requests/s (burst HELD_BURST) under far more for
    HELD_SECONDS: the answers that passed (200) against what the limit allows, rate x the
    measured duration + the burst (issue 16: within 5 %); the rest must all be 429s."""
    limit = {"requests_per_second": HELD_RATE, "burst": HELD_BURST}
    r = run.api.patch(f"{run.base}/{name}", json={"access": {"rate_limit": limit}})
    if r.status_code >= 300:
        raise RuntimeError(f"PATCH access -> {r.status_code}: {r.text[:300]}")
    time.sleep(1.5)  # the controller rebuilds the route at its next pass
    try:
        w = ps.wrk(run.platform.url + run.predict_path(name), str(lua), conc, HELD_SECONDS)
    finally:
        run.api.patch(f"{run.base}/{name}", json={"access": {}})
    passed = w["requests"] - w["err_status"]
    allowed = HELD_RATE * w["duration_us"] / 1e6 + HELD_BURST
    print(
        f"  a limit of {HELD_RATE:g}/s (burst {HELD_BURST}) for {HELD_SECONDS} s at c={conc}: "
        f"{passed} answered of {w['requests']} ({w['err_status']} refused with 429), "
        f"{passed / allowed - 1:+.1%} against the {allowed:.0f} it allows",
        flush=True,
    )
    return {"passed": passed, "allowed": allowed, "wrk": w}


def capture_counters(run: StratusRun) -> dict[str, float]:
    text = run.api.get(f"{run.platform.url}/metrics").text
    out = {}
    for line in text.splitlines():
        if line.startswith("stratus_capture_") and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key.split("{")[0]] = float(value)
    return out
