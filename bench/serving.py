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
--no-capture (skip the --repeats pairs of interleaved runs at the highest concurrency with
data capture off and at 100 %: the ratio of their medians gives the capture's cost for the first
target, the median of the pairs' costs for the raised one)  --backend ray (then stratus-ray)
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
import dataclasses
import importlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STRATUS_BENCH_SHARED", str(ROOT.parent / "shared" / "bench")))
PEERS = Path(os.environ.get("PEERS_DIR", "/tmp/peers"))
VENV = PEERS / "venv" / "bin"
VENV_BENTO = PEERS / "venv-bento" / "bin"
MODELS = PEERS / "models"
PROJECT = "default"
MODEL_NAMES = ("lr", "rf")
POLL_S = 0.02  # cold start: predict is polled this often
REFERENCES = ("thin-w2", "echo-w2", "mlflow-w2", "bentoml-w2-batch")


# ---------------------------------------------------------------- shared bench modules


def shared_module(name: str) -> ModuleType:
    """A script of ../shared/bench (read-only), imported as a module."""
    if str(SHARED) not in sys.path:
        sys.path.insert(0, str(SHARED))
    return importlib.import_module(name)


# ---------------------------------------------------------------- processes (/proc, by PID)


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time): tells a reused pid from the process we saw."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        rest = raw[raw.rindex(")") + 2 :].split()
        return None if rest[0] in ("Z", "X") else int(rest[19])
    except (OSError, ValueError, IndexError):
        return None


def parent_pid(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        return int(raw[raw.rindex(")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int, ticks: int | None) -> bool:
    now = start_ticks(pid)
    return now is not None and (ticks is None or now == ticks)


def kill_pids(pids: dict[int, int | None], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace`, each pid only while it is the process we saw."""
    live = {p: t for p, t in pids.items() if p != os.getpid() and alive(p, t)}
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in list(live):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while live and time.monotonic() < deadline:
            live = {p: t for p, t in live.items() if alive(p, t)}
            time.sleep(0.05)
        if not live:
            return
    print(f"  WARNING: could not stop pids {sorted(live)}", flush=True)


def pss_mb(pids: set[int] | list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total / 1024


def rss_mb(pids: set[int] | list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    total += int(line.split()[1])
    return total / 1024


def cpu_seconds(pids: set[int]) -> float:
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = Path(f"/proc/{pid}/stat").read_text()
            rest = raw[raw.rindex(")") + 2 :].split()
            ticks += int(rest[11]) + int(rest[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_idle(pids: Callable[[], set[int]], limit: float, busy: float = 0.1) -> float:
    """Seconds until the processes use less than `busy` of a core over 0.5 s (or `limit`)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        before, at = cpu_seconds(pids()), time.monotonic()
        time.sleep(0.5)
        if cpu_seconds(pids()) - before < busy * (time.monotonic() - at):
            break
    return time.monotonic() - t0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cleanup:
    """What this run started, stopped in reverse order at the end (by PID, never by name)."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, step: Callable[[], None]) -> Callable[[], None]:
        entry = (what, step)
        self._steps.append(entry)

        def run_now() -> None:
            if entry in self._steps:
                step()  # removed only once done: an interrupted step is retried by run()
                self._steps.remove(entry)

        return run_now

    def run(self) -> None:
        while self._steps:
            what, step = self._steps.pop()
            try:
                step()
            except Exception as exc:  # keep stopping the others
                print(f"  WARNING: cleanup of {what} failed: {exc!r}", flush=True)


def on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def no_interrupts() -> Iterator[None]:
    """Cleanup is bounded; a second Ctrl-C must not leave servers behind."""
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


# ---------------------------------------------------------------- figures


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rps": med([r["rps_ok"] for r in runs]),
        "p50_ms": med([r["p50_us"] / 1000 for r in runs]),
        "p99_ms": med([r["p99_us"] / 1000 for r in runs]),
        "errors": sum(int(r["errors"]) for r in runs),
        "requests": sum(int(r["requests"]) for r in runs),
    }


def load_matrix(
    ps: ModuleType, url: str, lua: Path, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """wrk at each concurrency (after a discarded warm-up), `--repeats` runs per point."""
    if args.warmup > 0:
        ps.wrk(url, str(lua), 8, args.warmup)
    out: dict[str, dict[str, Any]] = {}
    for conc in args.concs:
        runs = []
        for rep in range(args.repeats):
            w = ps.wrk(url, str(lua), conc, args.duration)
            runs.append(w)
            print(
                f"    c={conc:3d} run{rep}: {w['rps_ok']:8.1f} req/s"
                f"  p50 {w['p50_us'] / 1000:7.2f} ms  p99 {w['p99_us'] / 1000:7.2f} ms"
                f"  errors {w['errors']}",
                flush=True,
            )
        out[str(conc)] = {"runs": runs, **summarize_runs(runs)}
    return out


def load_rounds(
    ps: ModuleType, servers: list[Prepared], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Every server in every round: after a discarded warm-up of each, for each concurrency
    `--repeats` rounds, each running wrk once against every server in turn, the order rotated
    by one each round (no server always first); then medians per server into res["wrk"].
    Each run records its round and its position in it. Returns the rounds (conc, order)."""
    for s in servers:
        if args.warmup > 0:
            try:
                ps.wrk(s.url, str(s.lua), 8, args.warmup)
            except Exception as exc:  # left out of the rounds; the others still run
                s.error = s.res["load_error"] = f"warm-up: {exc!r}"
                print(f"  ERROR {s.name} warm-up: {exc}", flush=True)
    rounds: list[dict[str, Any]] = []
    for conc in args.concs:
        runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
        for _ in range(args.repeats):
            live = [s for s in servers if s.error is None]
            if not live:
                break
            first = len(rounds) % len(live)
            order = live[first:] + live[:first]
            rounds.append({"round": len(rounds), "conc": conc, "order": [s.name for s in order]})
            for pos, s in enumerate(order):
                try:
                    w = ps.wrk(s.url, str(s.lua), conc, args.duration)
                except Exception as exc:
                    s.error = s.res["load_error"] = f"c={conc} round {len(rounds) - 1}: {exc!r}"
                    print(f"  ERROR {s.name}: {exc}", flush=True)
                    continue
                w.update(round=len(rounds) - 1, position=pos)
                runs[s.name].append(w)
                print(
                    f"    c={conc:3d} round{len(rounds) - 1} {pos + 1}/{len(order)} {s.name:<17}"
                    f" {w['rps_ok']:8.1f} req/s  p50 {w['p50_us'] / 1000:7.2f} ms"
                    f"  p99 {w['p99_us'] / 1000:7.2f} ms  errors {w['errors']}",
                    flush=True,
                )
        for s in servers:
            if runs[s.name]:
                point = {"runs": runs[s.name], **summarize_runs(runs[s.name])}
                s.res.setdefault("wrk", {})[str(conc)] = point
    return rounds


def write_lua(ps: ModuleType, path: Path, body: bytes, headers: dict[str, str]) -> Path:
    """peers_serving.py's wrk script (same `done` report), plus our headers."""
    text: str = ps.LUA % body.decode()
    extra = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    marker = 'wrk.headers["Content-Type"] = "application/json"\n'
    assert marker in text, "peers_serving.LUA changed shape"
    path.write_text(text.replace(marker, marker + extra))
    return path


# ---------------------------------------------------------------- models


class BenchModel:
    """One model: the estimator (loaded here), its joblib file (the references') and the
    request bodies for the references and for Stratus."""

    def __init__(self, name: str, estimator: Any, joblib_path: Path, source: str) -> None:
        self.name = name
        self.estimator = estimator
        self.joblib_path = joblib_path
        self.source = source


def load_models(names: list[str], work: Path) -> tuple[dict[str, BenchModel], Any]:
    """The references' joblib files when they exist (same bytes everywhere), else trained here
    with train_models.py's recipe. Returns the models and the feature matrix X."""
    import joblib
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    X = np.asarray(load_breast_cancer(return_X_y=True)[0], dtype=np.float64)
    out: dict[str, BenchModel] = {}
    trained: dict[str, Any] | None = None
    for name in names:
        path = MODELS / f"{name}.joblib"
        if path.exists():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                estimator = joblib.load(path)
            source = f"{path} (the references' file)"
            if caught:
                source += "; warnings when loading: " + "; ".join(str(w.message) for w in caught)
        else:
            if trained is None:
                trained = shared_module("train_models").train()[2]
            estimator = trained[name]
            path = work / "models" / f"{name}.joblib"
            path.parent.mkdir(parents=True, exist_ok=True)
            joblib.dump(estimator, path)
            source = f"trained here with train_models.train(), saved as {path}"
        out[name] = BenchModel(name, estimator, path, source)
    return out, X


def peer_sklearn_version() -> str | None:
    found = sorted(VENV.parent.glob("lib/python*/site-packages/scikit_learn-*.dist-info"))
    return found[0].name.removesuffix(".dist-info").split("-")[1] if found else None


# ---------------------------------------------------------------- in-process reference


def run_inprocess(m: BenchModel, X: Any, body: bytes, repeats: int) -> dict[str, float]:
    import numpy as np

    bench = shared_module("inprocess_limit").bench
    model = m.estimator
    x1, x64 = X[0:1].copy(), X[0:64].copy()
    model.predict(x1)
    t1 = bench(lambda: model.predict(x1), repeats=repeats)
    t64 = bench(lambda: model.predict(x64), repeats=repeats)

    def handler() -> str:
        d = json.loads(body)
        y = model.predict(np.asarray(d["inputs"], dtype=np.float64))
        return json.dumps({"predictions": y.tolist()})

    th = bench(handler, repeats=repeats)
    r = {
        "predict_1row_us": t1 * 1e6,
        "predict_1row_calls_s": 1 / t1,
        "predict_64rows_us": t64 * 1e6,
        "predict_64rows_rows_s": 64 / t64,
        "handler_1row_us": th * 1e6,
        "handler_1row_calls_s": 1 / th,
    }
    print(
        f"  predict 1 row {r['predict_1row_us']:.1f} us ({r['predict_1row_calls_s']:.0f} calls/s)"
        f" | 64 rows {r['predict_64rows_us']:.1f} us ({r['predict_64rows_rows_s']:.0f} rows/s)"
        f" | json+predict handler {r['handler_1row_us']:.1f} us",
        flush=True,
    )
    return r


# ---------------------------------------------------------------- reference servers


def reference_configs(
    ps: ModuleType, m: BenchModel, port: int, args: argparse.Namespace
) -> dict[str, tuple[list[str], str | None, dict[str, str], str, str]]:
    """name -> (cmd, cwd, extra env, url path, setting), from peers_serving.configs(); echo-w2
    is thin-w2's command (same uvicorn, same flags) on bench/echo_app.py, which has no model."""
    allc = ps.configs(m.name, port)
    out: dict[str, tuple[list[str], str | None, dict[str, str], str, str]] = {}
    cmd, cwd, env, path, setting = allc["thin-w2"]
    env = {**env, "MODEL_PATH": str(m.joblib_path)}
    if args.skip_peers or not (VENV / "uvicorn").exists():
        cmd = [str(Path(sys.executable).parent / "uvicorn"), *cmd[1:]]
        setting += " (the project's .venv)"
    out["thin-w2"] = (cmd, cwd, env, path, setting)
    app_dir, app = cmd.index("--app-dir"), cmd.index("thin_app:app")
    echo = list(cmd)
    echo[app_dir + 1], echo[app] = str(Path(__file__).resolve().parent), "echo_app:app"
    out["echo-w2"] = (echo, cwd, {}, path, setting.replace("uvicorn", "echo_app.py on uvicorn", 1))
    if not args.skip_peers:
        out["mlflow-w2"] = allc["mlflow-w2"]
        if bentoml_ready(m.name):
            out["bentoml-w2-batch"] = allc["bentoml-w2-batch"]
    return out


def bentoml_ready(model: str) -> bool:
    home = Path(os.environ.get("BENTOML_HOME", str(PEERS / "bentoml_home")))
    return (VENV_BENTO / "bentoml").exists() and (home / "models" / f"bc_{model}").is_dir()


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float = 2.0) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@dataclasses.dataclass
class Prepared:
    """A server up, measured at idle, and waiting for its share of the load rounds."""

    name: str
    url: str
    lua: Path
    res: dict[str, Any]  # results["servers"][name][model]
    finish: Callable[[], None]  # after the rounds: stop it (or Stratus: capture, delete)
    error: str | None = None  # a wrk run failed: left out of the later rounds


def start_reference(
    ps: ModuleType,
    name: str,
    config: tuple[list[str], str | None, dict[str, str], str, str],
    port: int,
    body: bytes,
    args: argparse.Namespace,
    cleanup: Cleanup,
) -> Prepared:
    """Start a reference server: cold start (launch -> first 200) and idle memory; it keeps
    running until its `finish` (or the end of the run) stops it."""
    cmd, cwd, extra, path, setting = config
    url = f"http://127.0.0.1:{port}{path}"
    res: dict[str, Any] = {"setting": setting, "cmd": " ".join(cmd), "env": extra}
    env = {**os.environ, **ps.BASE_ENV, **extra}
    env["PATH"] = os.path.dirname(cmd[0]) + os.pathsep + env.get("PATH", "")
    log_path = args.work / "logs" / f"{name}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    lua = write_lua(ps, args.work / f"post-{name}.lua", body, {})
    with open(log_path, "w") as logf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop() -> None:
        kill_pids({p: start_ticks(p) for p in ps.tree(proc.pid)})
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    stop_now = cleanup.push(name, stop)

    def finish() -> None:
        with no_interrupts():
            stop_now()

    try:
        cold = None
        while time.perf_counter() - t0 < args.start_timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"exited rc={proc.returncode}:\n{tail(log_path)}")
            with contextlib.suppress(OSError):
                if http_post(url, body, {"Content-Type": "application/json"}) == 200:
                    cold = time.perf_counter() - t0
                    break
            time.sleep(POLL_S)
        if cold is None:
            raise RuntimeError(f"no 200 within {args.start_timeout}s:\n{tail(log_path)}")
        time.sleep(args.idle_wait)
        pids = ps.tree(proc.pid)
        res.update(cold_s=cold, idle_pss_mb=pss_mb(pids), idle_rss_mb=rss_mb(pids))
        res["procs"] = len(pids)
        print(
            f"  cold start {cold:.2f} s  idle PSS {res['idle_pss_mb']:.0f} MB ({len(pids)} procs)",
            flush=True,
        )
    except BaseException:
        finish()
        raise
    return Prepared(name, url, lua, res, finish)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------- Stratus


class NotLanded(RuntimeError):
    pass


class StratusRun:
    """A throwaway platform: push, deploy, measure, delete; everything stopped by PID."""

    def __init__(self, args: argparse.Namespace, cleanup: Cleanup, cluster: Any = None) -> None:
        import httpx

        from stratus.testing import LocalPlatform

        self.args = args
        self.cluster = cluster  # a RayCluster (tests/ray_cluster.py): the Ray backend on it
        self.home = args.work / ("stratus-home-ray" if cluster else "stratus-home")
        # `stratus up` warms its replica fork server at start; LocalPlatform turns that off
        # (tests) unless told: measure the platform as users run it, unless --no-prewarm
        prewarm = "false" if args.no_prewarm else "true"
        env = {"STRATUS_SERVING_PREWARM": prewarm}
        self.namespace = f"bench-{os.getpid()}"
        if cluster is not None:
            # replicas on the two workers (the custom resource only they have), not the head
            ray = {"address": cluster.address, "namespace": self.namespace,
                   "resources": {"worker_node": 0.01}}  # fmt: skip
            env.update(cluster.env)
            env.update(STRATUS_COMPUTE_BACKEND="ray", STRATUS_COMPUTE_RAY=json.dumps(ray))
        self.replica_ids: dict[str, set[str]] = {}  # endpoint -> ids of its replicas (Ray)
        self.platform = LocalPlatform(self.home, env=env)
        self.base = f"/api/v1/projects/{PROJECT}/endpoints"
        self.seen: dict[int, int | None] = {}  # every pid of the platform's processes we saw
        self.replicas: dict[str, dict[int, int | None]] = {}  # endpoint -> its replicas' pids
        self.http: httpx.Client | None = None
        self.stop_now = cleanup.push("stratus platform", self.stop)
        t0 = time.perf_counter()
        self.platform.start(timeout=args.start_timeout)
        self.start_s = time.perf_counter() - t0
        self.watch_tree()
        # the control plane pre-warms its fork server (imports numpy, sklearn...) in the
        # background: deploys are timed against a settled platform, as users meet it
        # (with --no-prewarm the first deploy starts the fork server and pays for it)
        ps = shared_module("peers_serving")
        self.settle_s = wait_idle(lambda: ps.tree(self.platform.pid), args.start_timeout)
        self.http = httpx.Client(
            base_url=self.platform.url,
            headers={"Authorization": f"Bearer {self.platform.api_key}"},
            timeout=30.0,
        )
        probe = self.http.get(self.base)
        if probe.status_code == 404:
            with no_interrupts():
                self.stop_now()
            raise NotLanded(f"GET {self.base} -> 404: the endpoints API is not served yet")

    @property
    def api(self) -> Any:
        assert self.http is not None
        return self.http

    # -- processes

    def watch(self, pids: dict[int, int | None] | list[int] | set[int]) -> None:
        for pid in pids:
            if pid not in self.seen:
                given = pids.get(pid) if isinstance(pids, dict) else None
                self.seen[pid] = given if given is not None else start_ticks(pid)

    def watch_tree(self) -> None:
        """The platform's process tree, and the replicas its local backend recorded."""
        if self.platform.process is not None:
            self.watch(shared_module("peers_serving").tree(self.platform.process.pid))
        for record in self.home.rglob("replicas/*.json"):
            if record.name.endswith(".spec.json"):
                continue
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                data = json.loads(record.read_text())
                ticks = data.get("process_start_ticks")
                self.watch({int(data["pid"]): int(ticks) if ticks is not None else None})

    def wait_gone(self, pids: dict[int, int | None], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while any(alive(p, t) for p, t in pids.items()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        """Delete our endpoints, stop the platform, then stop whatever of it is left (the
        replicas and their fork server outlive the control plane by design)."""
        with contextlib.suppress(Exception):
            self.watch_tree()
        if self.http is not None:
            if self.platform.process is not None:
                for name in list(self.replicas):
                    with contextlib.suppress(Exception):
                        self.http.delete(f"{self.base}/{name}", timeout=5.0)
                every = {p: t for reps in self.replicas.values() for p, t in reps.items()}
                self.wait_gone(every, 10.0)
            self.http.close()
        with contextlib.suppress(Exception):
            self.watch_tree()
        self.platform.stop()
        kill_pids(self.seen)

    # -- API

    def push(self, m: BenchModel, X: Any) -> str:
        import pandas as pd
        import skops.io
        from sklearn.datasets import load_breast_cancer

        folder = self.args.work / "stratus-models" / m.name
        folder.mkdir(parents=True, exist_ok=True)
        skops.io.dump(m.estimator, folder / "model.skops")
        columns = [str(c) for c in load_breast_cancer().feature_names]
        sample = pd.DataFrame(X[:20], columns=columns)
        with self.platform.client() as client:
            version = client.models.push(folder, f"bench-{m.name}", project=PROJECT, sample=sample)
        return f"bench-{m.name}:{version.version}"

    @staticmethod
    def spec(model_ref: str, replicas: int) -> list[dict[str, Any]]:
        return [{"name": "main", "model": model_ref, "replicas": replicas, "traffic": 100}]

    def get(self, name: str) -> dict[str, Any]:
        r = self.api.get(f"{self.base}/{name}")
        if r.status_code != 200:
            raise RuntimeError(f"GET {self.base}/{name} -> {r.status_code}: {r.text[:500]}")
        data: dict[str, Any] = r.json()
        return data

    def wait_ready(self, name: str, replicas: int) -> dict[str, Any]:
        """Until the endpoint is `ready` with exactly `replicas` ready replicas and no others."""
        deadline = time.monotonic() + self.args.start_timeout
        data: dict[str, Any] = {}
        while time.monotonic() < deadline:
            data = self.get(name)
            status = data.get("status", {})
            reps = [r for r in status.get("replicas", []) if r.get("phase") != "exited"]
            pids = {int(r["pid"]): start_ticks(int(r["pid"])) for r in reps if r.get("pid")}
            self.watch(pids)
            known = self.replicas.setdefault(name, {})
            known.update({p: t for p, t in pids.items() if p not in known})
            self.replica_ids.setdefault(name, set()).update(r["id"] for r in reps)
            if (
                status.get("phase") == "ready"
                and len(reps) == replicas
                and all(r.get("phase") == "ready" and (r.get("pid") or self.cluster) for r in reps)
            ):
                return data
            time.sleep(0.05)
        raise TimeoutError(
            f"{name} not ready with {replicas} replicas in {self.args.start_timeout}s: "
            f"{json.dumps(data.get('status', {}))[:1500]}\n{self.platform.log_tail(15)}"
        )

    @staticmethod
    def predict_path(name: str) -> str:
        return f"/inference/{PROJECT}/{name}/predict"

    def deploy(self, name: str, model_ref: str, body: bytes) -> dict[str, Any]:
        """Create a 1-replica endpoint; the time from that POST to the first 200 of predict."""
        import httpx

        payload = {"name": name, "variants": self.spec(model_ref, 1)}
        self.replicas.setdefault(name, {})
        t0 = time.perf_counter()
        r = self.api.post(self.base, json=payload)
        post_s = time.perf_counter() - t0
        if r.status_code >= 300:
            raise RuntimeError(f"POST {self.base} -> {r.status_code}: {r.text[:500]}")
        last = ""
        first: bytes | None = None
        headers = {"Content-Type": "application/json"}
        while time.perf_counter() - t0 < self.args.start_timeout:
            try:
                resp = self.api.post(
                    self.predict_path(name), content=body, headers=headers, timeout=2.0
                )
                if resp.status_code == 200:
                    first = resp.content
                    break
                last = f"{resp.status_code} {resp.text[:200]}"
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(POLL_S)
        cold = time.perf_counter() - t0
        if first is None:
            raise TimeoutError(f"{name}: no 200 from predict in {cold:.0f}s (last: {last})")
        return {"cold_s": cold, "post_s": post_s, "first": first.decode(errors="replace")[:200]}

    def scale(self, name: str, model_ref: str, replicas: int) -> float:
        """PATCH the variant's replicas; seconds until the endpoint is ready with them."""
        t0 = time.perf_counter()
        body = {"variants": self.spec(model_ref, replicas)}
        r = self.api.patch(f"{self.base}/{name}", json=body)
        if r.status_code >= 300:
            raise RuntimeError(f"PATCH {self.base}/{name} -> {r.status_code}: {r.text[:500]}")
        self.wait_ready(name, replicas)
        return time.perf_counter() - t0

    def delete(self, name: str) -> None:
        """DELETE the endpoint and wait (15 s at most) until its replicas have exited."""
        r = self.api.delete(f"{self.base}/{name}")
        if r.status_code >= 300 and r.status_code != 404:
            raise RuntimeError(f"DELETE {self.base}/{name} -> {r.status_code}: {r.text[:300]}")
        if self.cluster is not None:
            folders = {self.replica_folder(i) for i in self.replica_ids.get(name, set())}
            deadline = time.monotonic() + 15.0
            while set(self.ray_replica_pids()) & folders and time.monotonic() < deadline:
                time.sleep(0.05)
            gone = not set(self.ray_replica_pids()) & folders
        else:
            gone = self.wait_gone(self.replicas.get(name, {}), 15.0)
        if not gone:
            print(f"  WARNING: replicas of {name} still running 15 s after DELETE", flush=True)
        self.replicas.pop(name, None)
        self.replica_ids.pop(name, None)

    # -- the Ray backend's processes (its nodes are processes of this machine)

    def replica_folder(self, replica_id: str) -> Path:
        nodes = Path(tempfile.gettempdir()) / "stratus-ray"  # the Ray backend's default
        return nodes / self.namespace / "replicas" / replica_id

    def ray_replica_pids(self) -> dict[Path, list[int]]:
        """Replica folder -> the processes working in it (a replica and its log writer)."""
        found: dict[Path, list[int]] = {}
        for pid in self.cluster_pids():
            with contextlib.suppress(OSError):
                cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
                if cwd.parent.name == "replicas" and cwd.parent.parent.name == self.namespace:
                    found.setdefault(cwd, []).append(pid)
        return found

    def cluster_pids(self) -> set[int]:
        assert self.cluster is not None
        return {p for node in self.cluster.nodes.values() for p in node.pids()}

    def ray_memory(self) -> dict[str, Any]:
        """PSS of the replicas (with their log writers), of the actors that hold them, of the
        nodes' fork servers, of the rest of the cluster and of the control plane, apart."""
        every = self.cluster_pids()
        replicas = self.ray_replica_pids()
        in_replicas = {p for pids in replicas.values() for p in pids}

        def cmdline(pid: int) -> str:
            with contextlib.suppress(OSError):
                return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            return ""

        actors = {p for p in every - in_replicas if "_OnRayNode" in cmdline(p)}
        forks = {p for p in every - in_replicas if "node_forker" in cmdline(p)}
        control = shared_module("peers_serving").tree(self.platform.pid)
        self.watch(control)
        per_replica = [pss_mb(pids) for pids in replicas.values()]
        out: dict[str, Any] = {
            "replica_pids": sorted(in_replicas),
            "replica_pss_mb": per_replica,
            "replicas_pss_mb": sum(per_replica),
            "actor_pss_mb": [pss_mb([p]) for p in sorted(actors)],
            "fork_server_pids": sorted(forks),
            "fork_server_pss_mb": pss_mb(forks),
            "ray_rest_pss_mb": pss_mb(every - in_replicas - actors - forks),
            "control_plane_procs": len(control),
            "control_plane_pss_mb": pss_mb(control),
        }
        out["total_pss_mb"] = pss_mb(every | control)
        return out

    def memory(self, data: dict[str, Any]) -> dict[str, Any]:
        """PSS of the replicas, of their fork server and of the control plane, apart."""
        if self.cluster is not None:
            return self.ray_memory()
        replicas = [int(r["pid"]) for r in data["status"]["replicas"] if r.get("pid")]
        root = self.platform.pid
        everything = shared_module("peers_serving").tree(root) | set(replicas)
        parents = {parent_pid(p) for p in replicas}
        forks = {p for p in parents if p is not None and p not in (root, 1)}
        control = everything - set(replicas) - forks
        self.watch(everything)
        per_replica = [pss_mb([p]) for p in replicas]
        out: dict[str, Any] = {
            "replica_pids": replicas,
            "replica_pss_mb": per_replica,
            "replicas_pss_mb": sum(per_replica),
            "replica_rss_mb": [rss_mb([p]) for p in replicas],
            "fork_server_pids": sorted(forks),
            "fork_server_pss_mb": pss_mb(forks),
            "control_plane_procs": len(control),
            "control_plane_pss_mb": pss_mb(control),
        }
        out["total_pss_mb"] = (
            out["replicas_pss_mb"] + out["fork_server_pss_mb"] + out["control_plane_pss_mb"]
        )
        return out


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
            res["replicas_after_load"] = [
                {k: r.get(k) for k in ("id", "phase", "pid", "in_flight", "detail")}
                for r in run.get(name)["status"]["replicas"]
            ]
        finally:
            run.delete(name)

    return Prepared(server, run.platform.url + run.predict_path(name), lua, res, finish)


def measure_capture(
    run: StratusRun, ps: ModuleType, name: str, lua: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Throughput with data capture at 100 % against without, at the highest concurrency:
    --repeats pairs of runs, off then on, interleaved so that a machine whose speed drifts
    during the run weighs on both sides alike; the platform's capture counters show that every
    captured request was written (none dropped)."""
    url = run.platform.url + run.predict_path(name)
    conc = max(args.concs)

    def set_sample(sample: float) -> None:
        r = run.api.patch(f"{run.base}/{name}", json={"capture": {"sample": sample}})
        if r.status_code >= 300:
            raise RuntimeError(f"PATCH capture -> {r.status_code}: {r.text[:300]}")
        time.sleep(1.5)  # the controller rebuilds the route at its next pass

    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    print(f"  data capture off / at 100%, interleaved, c={conc}:", flush=True)
    for rep in range(args.repeats):
        for side, sample in (("off", 0.0), ("on", 1.0)):
            set_sample(sample)
            w = ps.wrk(url, str(lua), conc, args.duration)
            runs[side].append(w)
            print(
                f"    {side:3s} run{rep}: {w['rps_ok']:8.1f} req/s"
                f"  p50 {w['p50_us'] / 1000:7.2f} ms  p99 {w['p99_us'] / 1000:7.2f} ms"
                f"  errors {w['errors']}",
                flush=True,
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


def capture_counters(run: StratusRun) -> dict[str, float]:
    text = run.api.get(f"{run.platform.url}/metrics").text
    out = {}
    for line in text.splitlines():
        if line.startswith("stratus_capture_") and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key.split("{")[0]] = float(value)
    return out


# ---------------------------------------------------------------- targets


def figure(results: dict[str, Any], server: str, model: str, conc: int, key: str) -> float | None:
    point = results["servers"].get(server, {}).get(model, {}).get("wrk", {}).get(str(conc))
    return None if point is None else point.get(key)


OLD = "2026-11-21"
RAISED = "raised 2026-12-02"
RAY = "Ray backend (issue 13)"


def run_value(run: dict[str, Any], key: str) -> float:
    return float(run["rps_ok"]) if key == "rps" else float(run[key.replace("_ms", "_us")]) / 1000


def pairs(
    results: dict[str, Any], server: str, ref: str, model: str, conc: int, key: str
) -> list[float]:
    """server / ref for each interleaved round that measured both (empty if none did)."""
    ours = figure_runs(results, server, model, conc)
    theirs = {r["round"]: r for r in figure_runs(results, ref, model, conc) if "round" in r}
    out = []
    for run in ours:
        other = theirs.get(run.get("round", -1))
        if other is not None and run_value(other, key):
            out.append(run_value(run, key) / run_value(other, key))
    return out


def figure_runs(results: dict[str, Any], server: str, model: str, conc: int) -> list[Any]:
    point = results["servers"].get(server, {}).get(model, {}).get("wrk", {}).get(str(conc))
    return [] if point is None else list(point.get("runs", []))


def relative_target(
    results: dict[str, Any],
    text: str,
    model: str,
    conc: int,
    key: str,
    ref: str,
    op: str,
    factor: float,
    when: str,
) -> dict[str, Any]:
    """Stratus against a reference of the same run: the median of the per-round ratios when the
    rounds were interleaved (TARGETS.md: "quote the median of the pairs"), else of medians."""
    ours = figure(results, "stratus", model, conc, key)
    theirs = figure(results, ref, model, conc, key)
    row: dict[str, Any] = {"set": when, "target": text, "stratus": ours, "reference": theirs}
    if ours is None or theirs is None or theirs == 0:
        missing = "stratus" if ours is None else ref
        row.update(verdict="not measured", why=f"no {model} c={conc} figure for {missing}")
        return row
    paired = pairs(results, "stratus", ref, model, conc, key)
    ratio = statistics.median(paired) if paired else ours / theirs
    ok = ratio >= factor if op == ">=" else ratio <= factor
    row.update(ratio=ratio, pairs=paired, verdict="PASS" if ok else "FAIL")
    if paired:
        row["why"] = (
            f"median of {len(paired)} round pair(s) {ratio:.2f}x ("
            + ", ".join(f"{x:.2f}" for x in paired)
            + f"); medians {ours:.4g} / {theirs:.4g} = {ours / theirs:.2f}x (target {op} {factor}x)"
        )
    else:
        row["why"] = f"{ours:.4g} / {theirs:.4g} = {ratio:.2f}x (target {op} {factor}x)"
    return row


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """TARGETS.md's Stratus targets, the first ones and the raised ones (each its own line):
    ratios to references measured in this run."""
    relative = [
        ("LR c=64 req/s >= 3x MLflow-w2", "lr", 64, "rps", "mlflow-w2", ">=", 3.0, OLD),
        ("LR c=64 req/s >= 0.9x thin-w2", "lr", 64, "rps", "thin-w2", ">=", 0.9, OLD),
        ("LR c=64 p99 <= 0.3x MLflow-w2's", "lr", 64, "p99_ms", "mlflow-w2", "<=", 0.3, OLD),
        ("LR c=1 p50 <= 2x thin-w2's", "lr", 1, "p50_ms", "thin-w2", "<=", 2.0, OLD),
        ("RF c=64 req/s >= 4x thin-w2", "rf", 64, "rps", "thin-w2", ">=", 4.0, OLD),
        ("RF c=64 req/s >= 2.5x BentoML-batch", "rf", 64, "rps", "bentoml-w2-batch", ">=", 2.5,
         OLD),
        ("RF c=64 p99 <= 0.3x BentoML-batch's", "rf", 64, "p99_ms", "bentoml-w2-batch", "<=",
         0.3, OLD),
    ]  # fmt: skip
    out = [relative_target(results, *t) for t in relative]
    stratus = results["servers"].get("stratus", {})
    out.append(cold_target(stratus, 1.0, OLD))
    # judged on the larger of: what the whole platform grew by (PSS at 2 replicas - at 1),
    # and the PSS of one replica at 2 replicas (comparable to "a thin worker: ~196 MB")
    extras = [
        (m, r["extra_replica_pss_mb"], max(r["memory_2_replicas"]["replica_pss_mb"]))
        for m, r in stratus.items()
        if r.get("extra_replica_pss_mb") is not None
    ]
    row: dict[str, Any] = {"set": OLD, "target": "idle memory per extra replica <= 100 MB PSS"}
    if extras:
        worst = max(max(x[1], x[2]) for x in extras)
        row.update(stratus=worst, verdict="PASS" if worst <= 100 else "FAIL")
        row["why"] = "; ".join(
            f"{m}: platform total +{delta:.0f} MB, a replica {one:.0f} MB"
            for m, delta, one in extras
        )
    else:
        row.update(verdict="not measured", why="no Stratus replica")
    out.append(row)
    out.append(capture_target(stratus))

    raised = [
        ("LR c=64 req/s >= 8x MLflow-w2", "lr", 64, "rps", "mlflow-w2", ">=", 8.0, RAISED),
        ("LR c=64 req/s >= 0.6x echo-w2 (no model: the HTTP limit)", "lr", 64, "rps", "echo-w2",
         ">=", 0.6, RAISED),
        ("LR c=64 p99 <= 0.3x MLflow-w2's (as before)", "lr", 64, "p99_ms", "mlflow-w2", "<=",
         0.3, RAISED),
        ("RF c=64 req/s >= 3.5x BentoML-batch", "rf", 64, "rps", "bentoml-w2-batch", ">=", 3.5,
         RAISED),
    ]  # fmt: skip
    out += [relative_target(results, *t) for t in raised[:3]]
    out.append(own_tail_target(results))
    out.append(relative_target(results, *raised[3]))
    out.append(cold_target(stratus, 0.25, RAISED))
    row = {"set": RAISED, "target": "idle memory per extra replica <= 30 MB added to the platform"}
    deltas = [
        (m, r["extra_replica_pss_mb"])
        for m, r in stratus.items()
        if r.get("extra_replica_pss_mb") is not None
    ]
    if deltas:
        worst = max(d for _, d in deltas)
        row.update(stratus=worst, verdict="PASS" if worst <= 30 else "FAIL")
        row["why"] = "; ".join(f"{m}: platform total PSS +{d:.0f} MB" for m, d in deltas)
    else:
        row.update(verdict="not measured", why="no Stratus replica")
    out.append(row)
    out.append(capture_pairs_target(stratus))
    if "stratus-ray" in results["servers"]:
        out += ray_targets(results)
    return out


def cold_target(stratus: dict[str, Any], limit: float, when: str) -> dict[str, Any]:
    colds = [(m, r["cold_s"]) for m, r in stratus.items() if r.get("cold_s") is not None]
    row: dict[str, Any] = {"set": when, "target": f"cold start (deploy -> first 200) <= {limit} s"}
    if colds:
        worst_model, worst = max(colds, key=lambda x: x[1])
        row.update(stratus=worst, verdict="PASS" if worst <= limit else "FAIL")
        row["why"] = f"slowest deploy {worst:.2f} s ({worst_model}); " + ", ".join(
            f"{m}: " + "/".join(f"{c['cold_s']:.2f}" for c in stratus[m]["cold_starts"])
            for m, _ in colds
        )
    else:
        row.update(verdict="not measured", why="no Stratus deploy")
    return row


def own_tail_target(results: dict[str, Any]) -> dict[str, Any]:
    """Stratus's LR c=64 p99 against its own p50 (medians of the runs), each run's ratio too."""
    row: dict[str, Any] = {"set": RAISED, "target": "LR c=64 p99 <= 5x Stratus's own p50"}
    p50 = figure(results, "stratus", "lr", 64, "p50_ms")
    p99 = figure(results, "stratus", "lr", 64, "p99_ms")
    if not p50 or p99 is None:
        row.update(verdict="not measured", why="no lr c=64 figure for stratus")
        return row
    runs = figure_runs(results, "stratus", "lr", 64)
    per_run = [r["p99_us"] / r["p50_us"] for r in runs if r.get("p50_us")]
    ratio = p99 / p50
    row.update(stratus=ratio, per_run=per_run, verdict="PASS" if ratio <= 5.0 else "FAIL")
    row["why"] = (
        f"medians p99 {p99:.1f} ms / p50 {p50:.2f} ms = {ratio:.2f}x (target <= 5x); per run "
        + ", ".join(f"{x:.1f}x" for x in per_run)
    )
    return row


def ray_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 13's figures for the Ray backend, against the local backend in the same run."""
    out: list[dict[str, Any]] = []
    ours, local = (
        figure(results, "stratus-ray", "lr", 64, "rps"),
        figure(results, "stratus", "lr", 64, "rps"),
    )
    row: dict[str, Any] = {"set": RAY, "target": "Ray: LR c=64 req/s >= 0.8x the local backend's"}
    if ours is None or not local:
        row.update(verdict="not measured", why="no LR c=64 figure on both backends")
    else:
        ratio = ours / local
        row.update(stratus=ours, reference=local, ratio=ratio)
        row.update(verdict="PASS" if ratio >= 0.8 else "FAIL")
        row["why"] = f"{ours:.4g} / {local:.4g} = {ratio:.2f}x (target >= 0.8x)"
    out.append(row)
    ray = results["servers"]["stratus-ray"]
    colds = [c["cold_s"] for r in ray.values() for c in r.get("cold_starts", [])]
    row = {"set": RAY, "target": "Ray: cold start (deploy -> first 200) <= 3 s"}
    if colds:
        worst = max(colds)
        row.update(stratus=worst, verdict="PASS" if worst <= 3.0 else "FAIL")
        row["why"] = "deploys: " + ", ".join(f"{c:.2f} s" for c in colds)
    else:
        row.update(verdict="not measured", why="no deploy on Ray")
    out.append(row)
    extras = [
        (m, r["extra_replica_pss_mb"], r["memory_2_replicas"])
        for m, r in ray.items()
        if r.get("extra_replica_pss_mb") is not None
    ]
    row = {"set": RAY, "target": "Ray: idle memory per extra replica (reported)"}
    if extras:
        row.update(stratus=max(x[1] for x in extras), verdict="reported")
        row["why"] = "; ".join(
            f"{m}: cluster and control plane +{delta:.0f} MB PSS (replica processes "
            + " + ".join(f"{x:.0f}" for x in mem["replica_pss_mb"])
            + " MB, their actors "
            + " + ".join(f"{x:.0f}" for x in mem["actor_pss_mb"])
            + " MB)"
            for m, delta, mem in extras
        )
    else:
        row.update(verdict="not measured", why="no replica on Ray")
    out.append(row)
    return out


def capture_target(stratus: dict[str, Any]) -> dict[str, Any]:
    """Throughput with capture at 100 % against without, from interleaved runs at the highest
    concurrency (the cost must stay under 10 %)."""
    row: dict[str, Any] = {"set": OLD, "target": "data capture at 100% < 10% throughput cost"}
    costs = []
    for model, r in stratus.items():
        capture = r.get("capture")
        if not capture:
            continue
        base, with_capture = capture["off"]["rps"], capture["on"]["rps"]
        if base:
            costs.append((model, capture["conc"], 1 - with_capture / base, base, with_capture))
    if not costs:
        row.update(verdict="not measured", why="no run with capture (--no-capture?)")
        return row
    worst = max(costs, key=lambda c: c[2])
    row.update(stratus=worst[2], verdict="PASS" if worst[2] < 0.10 else "FAIL")
    row["why"] = "; ".join(
        f"{m} c={c}: {b:.0f} -> {w:.0f} req/s ({cost:+.1%} cost, medians of interleaved runs)"
        for m, c, cost, b, w in costs
    )
    return row


def capture_pairs_target(stratus: dict[str, Any]) -> dict[str, Any]:
    """The raised capture target: the median of the costs of the interleaved off/on pairs
    (run i with capture off, then run i at 100 %) stays under 5 %."""
    row: dict[str, Any] = {
        "set": RAISED,
        "target": "data capture at 100% < 5% throughput, in interleaved pairs",
    }
    costs = []
    for model, r in stratus.items():
        capture = r.get("capture")
        if not capture:
            continue
        each = [
            1 - on["rps_ok"] / off["rps_ok"]
            for off, on in zip(capture["off"]["runs"], capture["on"]["runs"], strict=False)
            if off["rps_ok"]
        ]
        if each:
            costs.append((model, capture["conc"], statistics.median(each), each))
    if not costs:
        row.update(verdict="not measured", why="no run with capture (--no-capture?)")
        return row
    worst = max(c[2] for c in costs)
    row.update(stratus=worst, verdict="PASS" if worst < 0.05 else "FAIL")
    row["why"] = "; ".join(
        f"{m} c={c}: median pair cost {cost:+.1%} (pairs "
        + ", ".join(f"{x:+.1%}" for x in each)
        + ")"
        for m, c, cost, each in costs
    )
    return row


def print_tables(results: dict[str, Any], concs: list[int]) -> None:
    print(
        "\n## Figures (medians over the rounds; x thin, x echo = req/s / thin-w2's, echo-w2's"
        " medians)"
    )
    head = ["server", "model", "cold s", "idle PSS MB"]
    for c in concs:
        head += [f"c={c} req/s", f"c={c} p50 ms", f"c={c} p99 ms", f"c={c} x thin", "x echo"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for server, per_model in results["servers"].items():
        for model, r in per_model.items():
            if "error" in r and "wrk" not in r:
                print(f"| {server} | {model} | ERROR: {r['error'][:100]} |")
                continue
            cells = [server, model, _fmt(r.get("cold_s"), 2), _fmt(r.get("idle_pss_mb"), 0)]
            for c in concs:
                rps = figure(results, server, model, c, "rps")
                thin = figure(results, "thin-w2", model, c, "rps")
                echo = figure(results, "echo-w2", model, c, "rps")
                cells += [
                    _fmt(rps, 0),
                    _fmt(figure(results, server, model, c, "p50_ms"), 2),
                    _fmt(figure(results, server, model, c, "p99_ms"), 1),
                    _fmt(rps / thin if rps is not None and thin else None, 2),
                    _fmt(rps / echo if rps is not None and echo else None, 2),
                ]
            print("| " + " | ".join(cells) + " |")
    print_rounds(results)
    for model, r in results["inprocess"].items():
        print(
            f"in-process {model}: predict 1 row {r['predict_1row_us']:.0f} us, 64 rows "
            f"{r['predict_64rows_us']:.0f} us ({r['predict_64rows_rows_s']:.0f} rows/s), "
            f"json+predict+dump {r['handler_1row_us']:.0f} us"
        )
    for server in REFERENCES:
        if server not in results["servers"]:
            print(f"{server}: not measured ({results['skipped'].get(server, 'skipped')})")


def print_rounds(results: dict[str, Any]) -> None:
    """Each interleaved round: every server's req/s and p99 (p99/p50 too, for Stratus)."""
    for model, rounds in results["meta"]["interleaved"]["rounds"].items():
        if not rounds:
            continue
        servers = sorted({s for r in rounds for s in r["order"]}, key=rounds[0]["order"].index)
        print(f"\n## Rounds, {model} (req/s, p99 ms; the order each round ran in)")
        print("| round | c | " + " | ".join(servers) + " | order |")
        print("|" + "---|" * (len(servers) + 3))
        for r in rounds:
            cells = [str(r["round"]), str(r["conc"])]
            for server in servers:
                run = next(
                    (x for x in figure_runs(results, server, model, r["conc"])
                     if x.get("round") == r["round"]),
                    None,
                )  # fmt: skip
                if run is None:
                    cells.append("-")
                    continue
                cell = f"{run['rps_ok']:.0f} ({run['p99_us'] / 1000:.1f})"
                if server.startswith("stratus") and run.get("p50_us"):
                    cell += f" p99/p50 {run['p99_us'] / run['p50_us']:.1f}"
                cells.append(cell)
            print("| " + " | ".join(cells) + " | " + " > ".join(r["order"]) + " |")


def print_targets(targets: list[dict[str, Any]]) -> None:
    print("\n## Targets (TARGETS.md; ratios to references measured in this run, medians of pairs)")
    last = None
    for t in targets:
        if t.get("set") != last:
            last = t.get("set")
            print(f"-- {last}")
        print(f"{t['verdict']:>12}  {t['target']}: {t.get('why', '')}")


def _fmt(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


# ---------------------------------------------------------------- prerequisites


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


# ---------------------------------------------------------------- main


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


def run_stratus(
    args: argparse.Namespace,
    cleanup: Cleanup,
    ps: ModuleType,
    models: dict[str, BenchModel],
    X: Any,
    row: list[float],
    results: dict[str, Any],
    server: str,
    cluster: Any = None,
) -> None:
    """Every model on a platform of its own, one model after another, not interleaved with
    anything (the Ray path, after the interleaved rounds)."""
    run = start_platform(args, cleanup, results, server, cluster)
    try:
        for m in models.values():
            print(f"=== {server} {m.name}", flush=True)
            per_model = results["servers"].setdefault(server, {})
            try:
                per_model[m.name] = run_stratus_model(run, ps, m, X, row)
            except Exception as exc:  # recorded; the next model still runs
                per_model[m.name] = {"error": f"{exc!r}"}
                print(f"  ERROR {exc}", flush=True)
                delete_endpoints(run)
            save(results, args.out)
    finally:
        with no_interrupts():
            run.stop_now()


def run_model_interleaved(
    args: argparse.Namespace,
    cleanup: Cleanup,
    ps: ModuleType,
    m: BenchModel,
    X: Any,
    row: list[float],
    results: dict[str, Any],
    run: StratusRun | None,
) -> None:
    """One model: start every reference and deploy on Stratus (cold starts, idle memory), all
    kept running; the interleaved load rounds; then finish each (references stopped first,
    then Stratus's capture pairs and delete)."""
    ref_body = json.dumps({"inputs": [row]}).encode()
    prepared: list[Prepared] = []
    for name in reference_configs(ps, m, 0, args):
        port = free_port()
        config = reference_configs(ps, m, port, args)[name]
        print(f"=== {name} {m.name}: {config[4]}", flush=True)
        per_model = results["servers"].setdefault(name, {})
        try:
            prepared.append(start_reference(ps, name, config, port, ref_body, args, cleanup))
            per_model[m.name] = prepared[-1].res
        except Exception as exc:  # recorded; the other servers still run
            per_model[m.name] = {"error": f"{exc!r}"}
            print(f"  ERROR {exc}", flush=True)
    if run is not None:
        print(f"=== stratus {m.name}", flush=True)
        per_model = results["servers"].setdefault("stratus", {})
        try:
            prepared.append(prepare_stratus_model(run, ps, m, X, row))
            per_model[m.name] = prepared[-1].res
        except Exception as exc:
            per_model[m.name] = {"error": f"{exc!r}"}
            print(f"  ERROR {exc}", flush=True)
            delete_endpoints(run)
    save(results, args.out)
    if prepared:
        names = ", ".join(s.name for s in prepared)
        print(
            f"=== {m.name}: load, interleaved ({names}); {args.repeats} round(s) per "
            f"concurrency, the order rotated each round",
            flush=True,
        )
        rounds = load_rounds(ps, prepared, args)
        results["meta"]["interleaved"]["rounds"][m.name] = rounds
        save(results, args.out)
    for s in prepared:  # Stratus (last in the list) measures capture with the others stopped
        try:
            s.finish()
        except Exception as exc:
            s.res["finish_error"] = f"{exc!r}"
            print(f"  ERROR finishing {s.name}: {exc}", flush=True)
    save(results, args.out)


def save(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=str))
    tmp.replace(path)


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
