"""The serving benchmark's reference servers: their commands from peers_serving.configs()
(thin-w2, echo-w2 on the same uvicorn, mlflow-w2, bentoml-w2-batch), each started, timed
from launch to its first 200 (cold start), measured at idle and left running as a
`Prepared` server for the load rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from serving_config import PEERS, POLL_S, VENV, VENV_BENTO
from serving_load import Prepared, write_lua
from serving_models import BenchModel
from serving_procs import Cleanup, kill_pids, no_interrupts, pss_mb, rss_mb, start_ticks


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
