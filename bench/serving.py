#!/usr/bin/env python3
"""Serving benchmark: Stratus (gateway, auth on) beside the references of shared/bench/TARGETS.md.

In one run, for each model (`lr`: StandardScaler + LogisticRegression, `rf`: 100-tree
RandomForest, both on scikit-learn's breast-cancer data, as ../shared/bench/train_models.py
trains them) it measures single-row JSON requests with wrk (loopback, bounded runs) at each
concurrency, req/s and p50/p99, for:
  stratus           a throwaway `stratus up` (stratus.testing.LocalPlatform), up for the whole
                    run: the model pushed as skops, an endpoint (under load: --replicas, lr=1
                    and rf=2), requests through the gateway with an API key
                    (`POST /inference/default/bench-<m>/predict {"instances": [row]}`)
  in-process        model.predict in this process (1 row, 64 rows, json+predict+dump), as
                    ../shared/bench/inprocess_limit.py does
  thin-w2           ../shared/bench/servers/thin_app.py on uvicorn --workers 2
  echo-w2           bench/echo_app.py on the same uvicorn with the same flags: answers every
                    POST with {"predictions": [0]} without a model, the HTTP limit of the
                    machine (model-independent; started again beside each model's servers)
  mlflow-w2         `mlflow models serve --workers 2` on the same model
  bentoml-w2-batch  only when /tmp/peers/venv-bento exists (else "not measured")
plus, for every server, cold start (Stratus: the POST that creates the endpoint -> first 200
from predict; the references: launch -> first 200) and idle PSS; for Stratus the PSS of an
idle 1-replica endpoint (replica, fork server and control plane apart), the extra PSS of a
second replica (PATCH to 2 replicas) and the cost of data capture at 100 %.
Interleaved: serving figures moved by 3x between runs that start servers one after another
(TARGETS.md), so for each model every server is first prepared and kept running (references:
start, cold start, idle memory; Stratus: push, deploy and cold starts, memory, scale to the
load replicas), then the load runs in rounds: for each concurrency, --repeats rounds, each
running wrk once against every server in turn, the order rotated by one each round so that no
server is always first. Figures are medians over the rounds; a ratio to a reference is the
median of the per-round pairs. Then each server finishes (references stopped; Stratus: its
--repeats interleaved capture off/on pairs, alone on the machine, then the endpoint deleted).
With --backend ray, stratus-ray runs afterwards on its own, model after model, not interleaved.
It prints every figure, each round, the ratios and PASS/FAIL/not measured for each target of
TARGETS.md (the first ones and, as their own lines, the raised ones of 2026-12-02), and writes
all figures as JSON (--out; each wrk run carries its round and position, meta.interleaved the
rounds' order). The references use the peers' commands from ../shared/bench/peers_serving.py
(imported, not copied), so their figures are comparable with TARGETS.md; Stratus serves the
same model bytes (the references' joblib file, loaded here and saved with skops).

Setup (once; the references' venv and model files, as peers_serving.py's header says):
    apt-get update && apt-get install -y --no-install-recommends wrk
    python3 -m venv /tmp/peers/venv && /tmp/peers/venv/bin/pip install scikit-learn numpy \
        pandas scipy "mlflow>=3" starlette "uvicorn[standard]" joblib
    # "uvicorn[standard]" (uvloop, httptools; ray[serve] brings them into peers_serving.py's
    # venv): without them `uvicorn --workers 2` leaves Nagle on (asyncio sets TCP_NODELAY only
    # when the inherited socket says IPPROTO_TCP) and thin-w2/MLflow show ~44 ms at c=1.
    /tmp/peers/venv/bin/python ../shared/bench/train_models.py --out /tmp/peers/models
    # optional, for the BentoML-batch reference (see peers_serving.py / train_models.py):
    python3 -m venv /tmp/peers/venv-bento && /tmp/peers/venv-bento/bin/pip install bentoml \
        scikit-learn numpy pandas joblib
    BENTOML_HOME=/tmp/peers/bentoml_home /tmp/peers/venv-bento/bin/python \
        ../shared/bench/train_models.py --out /tmp/peers/models --bentoml-only
Run (from the repository root, with the project's venv; nothing else heavy meanwhile):
    .venv/bin/python bench/serving.py                      # everything, ~8 min
    .venv/bin/python bench/serving.py --models lr --conc 64 --duration 3 --repeats 2
                                                           # a quick look, ~3 min
    .venv/bin/python bench/serving.py --skip-peers         # Stratus, in-process, thin, echo
    .venv/bin/python bench/serving.py --skip-stratus       # the references only
Options: --models lr,rf  --conc 1,8,64  --duration 10 (s per wrk run)  --repeats 1 (rounds per
concurrency, and deploys for the cold start; medians; 3 or more for pairs worth quoting)
--warmup 3 (s of discarded wrk at c=8 per server, before the rounds)  --idle-wait 3
--no-capture (skip the warm-up with capture on and the --repeats pairs of interleaved runs at the
highest concurrency with data capture off and at 100 %, each once the writer has caught up: the
ratio of their medians gives the capture's cost for the first target, the median of the pairs'
costs for the raised one)  --backend ray (then stratus-ray)
--out PATH (JSON; default /tmp/stratus-bench/serving-<time>.json)  --keep (keep the temp dir:
the platform's home, the servers' logs)  --skip-peers  --skip-stratus  --no-prewarm (the
platform starts its replica fork server at the first deploy instead of at `stratus up`;
by default it is pre-warmed, as `stratus up` does, and deploys wait until it is idle).
Only 127.0.0.1 is used; every wrk run is bounded by --duration, every start by --start-timeout.
Every process it starts (servers, the platform, its fork server and replicas) is stopped by PID
at the end, also on Ctrl-C or SIGTERM. PEERS_DIR moves /tmp/peers (as for peers_serving.py).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from serving_config import (
    MODEL_NAMES,
    MODELS,
    PEERS,
    ROOT,
    SHARED,
    VENV,
    VENV_BENTO,
    shared_module,
)
from serving_load import write_lua
from serving_models import load_models, peer_sklearn_version, run_inprocess
from serving_platform import NotLanded, StratusRun
from serving_procs import Cleanup, no_interrupts, on_sigterm
from serving_refs import bentoml_ready
from serving_schedule import run_model_interleaved, run_stratus, save
from serving_stratus import rate_limit_check_ns, start_platform
from serving_targets import evaluate, print_tables, print_targets

__all__ = ["main", "parse_args", "shared_module", "write_lua"]  # autoscale.py imports the last two


def missing_prerequisites(args: argparse.Namespace) -> list[str]:
    """What to run before this script can (each line a command or a note)."""
    out: list[str] = []
    if shutil.which("wrk") is None:
        out.append("apt-get update && apt-get install -y --no-install-recommends wrk")
    if not (SHARED / "peers_serving.py").exists():
        out.append(f"# {SHARED} (shared/bench) is missing; set STRATUS_BENCH_SHARED to its path")
    if not args.skip_peers:
        if not (VENV / "mlflow").exists() or not (VENV / "uvicorn").exists():
            out.append(
                f"python3 -m venv {PEERS}/venv && {VENV}/pip install scikit-learn numpy pandas "
                'scipy "mlflow>=3" starlette "uvicorn[standard]" joblib'
            )
        elif not any(VENV.parent.glob("lib/python*/site-packages/uvloop")):
            out.append(
                f'{VENV}/pip install "uvicorn[standard]"   # else Nagle stalls '
                "uvicorn --workers 2 at c=1 (~44 ms per request)"
            )
        need = [MODELS / "payload_1row.json"]
        for m in args.model_list:
            need += [MODELS / f"{m}.joblib", MODELS / f"mlflow_{m}" / "MLmodel"]
        if not all(p.exists() for p in need):
            out.append(f"{VENV}/python {SHARED}/train_models.py --out {MODELS}")
        if out:
            out.append(
                "# (or run with --skip-peers: Stratus, in-process, thin-w2 and echo-w2 only)"
            )
    if not args.skip_stratus:
        if importlib.util.find_spec("stratus") is None:
            out.append(f"# run with the project's venv: {ROOT}/.venv/bin/python {__file__}")
        elif importlib.util.find_spec("stratus.endpoints.routes") is None:
            out.append(
                "# the endpoints server has not landed (no stratus.endpoints.routes); "
                "run with --skip-stratus for the references only"
            )
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--models", default="lr,rf", help="lr,rf")
    ap.add_argument(
        "--replicas",
        default="lr=1,rf=2",
        type=lambda text: {k: int(v) for k, v in (kv.split("=") for kv in text.split(","))},
        help="Stratus replicas under load per model (LR: the gateway and one replica already "
        "fill 2 cores; a second replica only adds contention)",
    )
    ap.add_argument("--conc", default="1,8,64", help="wrk connections, comma-separated")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="interleaved rounds per concurrency (one wrk run per server each); deploys",
    )
    ap.add_argument(
        "--warmup", type=int, default=3, help="seconds of discarded wrk at c=8, per server"
    )
    ap.add_argument("--idle-wait", type=float, default=3.0, help="idle seconds before PSS reads")
    ap.add_argument("--start-timeout", type=float, default=120.0)
    ap.add_argument("--inproc-repeats", type=int, default=5, help="timeit repeats in-process")
    ap.add_argument("--out", type=Path, default=None, help="JSON of all figures")
    ap.add_argument(
        "--skip-peers", action="store_true", help="no MLflow/BentoML; thin, echo from .venv"
    )
    ap.add_argument("--skip-stratus", action="store_true", help="the references only")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (home, logs)")
    ap.add_argument(
        "--no-rate-limits",
        dest="rate_limits",
        action="store_false",
        help="Stratus: skip the interleaved pairs of runs with rate limits off and on",
    )
    ap.add_argument(
        "--no-capture",
        dest="capture",
        action="store_false",
        help="Stratus: skip the interleaved pairs of runs with data capture off and at 100%%",
    )
    ap.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="ray: after the interleaved rounds, Stratus on a 3-node Ray cluster on loopback "
        "(127.0.0.2-4, as the tests start it), model after model, not interleaved; compared "
        "with the local backend of the same run",
    )
    ap.add_argument(
        "--no-prewarm",
        action="store_true",
        help="Stratus: start the fork server at the first deploy (LocalPlatform's default)",
    )
    args = ap.parse_args(argv)
    args.model_list = [m for m in args.models.split(",") if m]
    if not args.model_list or any(m not in MODEL_NAMES for m in args.model_list):
        ap.error(f"--models takes a comma-separated subset of {','.join(MODEL_NAMES)}")
    args.concs = [int(c) for c in args.conc.split(",") if c]
    if not args.concs or any(c < 1 for c in args.concs) or args.duration < 1:
        ap.error("--conc takes positive integers and --duration at least 1")
    if args.repeats < 1:
        ap.error("--repeats is at least 1")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out = args.out or Path("/tmp/stratus-bench") / f"serving-{stamp}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    todo = missing_prerequisites(args)
    if todo:
        print("Missing prerequisites; run:\n    " + "\n    ".join(todo), file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, on_sigterm)
    args.work = Path(tempfile.mkdtemp(prefix="sbench-", dir="/tmp"))
    cleanup = Cleanup()
    ps = shared_module("peers_serving")
    results: dict[str, Any] = {
        "meta": {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "args": {k: v for k, v in vars(args).items() if k != "work"},
            "work_dir": str(args.work),
            "interleaved": {
                "how": "per model, every server up at once; for each concurrency --repeats "
                "rounds, each one wrk run against every server, the order rotated by one "
                "each round; figures are medians over the rounds, ratios medians of the "
                "per-round pairs",
                "ray": "stratus-ray (--backend ray) runs after, on its own, not interleaved",
                "rounds": {},
            },
        },
        "models": {},
        "inprocess": {},
        "servers": {},
        "skipped": {},
        "targets": [],
    }
    code = 0
    try:
        import sklearn

        results["meta"]["sklearn"] = sklearn.__version__
        results["meta"]["peers_sklearn"] = peer_sklearn_version()
        if results["meta"]["peers_sklearn"] not in (None, sklearn.__version__):
            print(
                f"WARNING: scikit-learn {sklearn.__version__} here, "
                f"{results['meta']['peers_sklearn']} in {PEERS}/venv",
                flush=True,
            )
        models, X = load_models(args.model_list, args.work)
        payload = MODELS / "payload_1row.json"
        if payload.exists():
            row: list[float] = json.loads(payload.read_text())["inputs"][0]
        else:
            row = X[0].tolist()
        ref_body = json.dumps({"inputs": [row]}).encode()
        for m in models.values():
            results["models"][m.name] = {"source": m.source, "joblib": str(m.joblib_path)}
            print(f"== {m.name}: {m.source}", flush=True)
        if args.skip_peers:
            results["skipped"]["mlflow-w2"] = "--skip-peers"
            results["skipped"]["bentoml-w2-batch"] = "--skip-peers"
        elif not all(bentoml_ready(m) for m in args.model_list):
            results["skipped"]["bentoml-w2-batch"] = (
                f"no {VENV_BENTO}/bentoml or no bc_<model> in its BentoML store"
            )

        run: StratusRun | None = None
        if args.skip_stratus:
            results["skipped"]["stratus"] = "--skip-stratus"
        else:
            try:
                run = start_platform(args, cleanup, results, "stratus")
            except NotLanded as exc:  # the references are still measured
                print(f"ERROR: {exc}; measuring the references only", flush=True)
                results["skipped"]["stratus"] = str(exc)
                code = 1
        if run is not None:
            checks = rate_limit_check_ns()
            results["rate_limit_check"] = checks
            print(
                f"=== rate-limit checks in-process: {checks['on_ns']:.0f} ns per request with "
                f"key, project and endpoint limits; {checks['off_ns']:.0f} ns with none set",
                flush=True,
            )
        for m in models.values():
            print(f"=== in-process {m.name}", flush=True)
            results["inprocess"][m.name] = run_inprocess(m, X, ref_body, args.inproc_repeats)
            save(results, args.out)
            run_model_interleaved(args, cleanup, ps, m, X, row, results, run)
        if run is not None:
            with no_interrupts():
                run.stop_now()

        if run is not None and args.backend == "ray":
            print("=== a 3-node Ray cluster on loopback (tests/ray_cluster.py)", flush=True)
            sys.path.insert(0, str(ROOT / "tests"))
            from ray_cluster import ray_cluster_running

            stack = contextlib.ExitStack()
            stop_cluster = cleanup.push("the Ray cluster", stack.close)
            t0 = time.perf_counter()
            cluster = stack.enter_context(ray_cluster_running(args.start_timeout))
            print(f"  up in {time.perf_counter() - t0:.1f} s: {cluster.address}", flush=True)
            try:
                run_stratus(args, cleanup, ps, models, X, row, results, "stratus-ray", cluster)
            finally:
                with no_interrupts():
                    stop_cluster()
    except NotLanded as exc:
        print(f"ERROR: {exc}; run with --skip-stratus for the references only", flush=True)
        results["skipped"]["stratus"] = str(exc)
        code = 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything this run started", flush=True)
        code = 130
    finally:
        with no_interrupts():
            cleanup.run()
            results["targets"] = evaluate(results)
            save(results, args.out)
            if code != 130:
                print_tables(results, args.concs)
                print_targets(results["targets"])
            print(f"\nJSON: {args.out}")
            if args.keep:
                print(f"kept: {args.work}")
            else:
                shutil.rmtree(args.work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
