"""The order of a serving benchmark run: for each model, every server prepared and kept up,
the interleaved load rounds, then each finished (`run_model_interleaved`); with the Ray
backend, model after model on a platform of its own (`run_stratus`). The results JSON is
saved after each step (`save`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from serving_load import Prepared, load_rounds
from serving_models import BenchModel
from serving_platform import StratusRun
from serving_procs import Cleanup, free_port, no_interrupts
from serving_refs import reference_configs, start_reference
from serving_stratus import (
    delete_endpoints,
    prepare_stratus_model,
    run_stratus_model,
    start_platform,
)


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
