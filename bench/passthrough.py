#!/usr/bin/env python3
"""Pass-through columns on the replica's request path: does declaring none cost anything, and
what does carrying them cost?

One core, in process, no network (the gateway forwards bodies untouched: pass-through columns
cost only where the replica parses a request and renders its answer). For single-row requests
of the breast-cancer LR's signature (30 float inputs, as bench/serving.py sends) on each
protocol — plain rows, plain objects, MLflow dataframe_split, v2 one tensor per input — it
times `parse_request` + `render` (the model's predict left out: it is the same in every case):

  reference   serving/protocols.py as it was before pass-through columns (the parent of the
              commit that added serving/passthrough.py; or --reference PATH)
  without     this tree's protocols.py with its two pass-through checks cut out (the guard in
              `parse_request` and the echo in `render`): what `none` would cost without them
  none        this tree, an endpoint that declares no pass-through columns
  declared    this tree, the endpoint declares customer_id and ts, the request carries none
  carried     this tree, the request carries both (the answer echoes them)

Runs are interleaved (--rounds rounds of each case in turn, --number calls a round), timed in
CPU seconds of this thread (so time other processes take the core from it does not count); the
fastest round of each case is printed (per call) with its ratios to `reference` and to `none`:
on a machine shared with other work it is the one least disturbed (--median prints medians).
`none / reference` also holds whatever else changed in protocols.py since the reference;
`none / without` is what the pass-through checks themselves cost.

Run (from the repository root): .venv/bin/python bench/passthrough.py [--rounds 15 --number 2000]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
IDS = frozenset({"customer_id", "ts"})


def reference_module(path: str | None) -> ModuleType:
    if path is None:
        new_file = "src/stratus/serving/passthrough.py"
        added = subprocess.run(
            ["git", "log", "--diff-filter=A", "--format=%H", "--", new_file],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        rev = f"{added[-1]}^" if added else "HEAD"
        source = subprocess.run(
            ["git", "show", f"{rev}:src/stratus/serving/protocols.py"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return load_source("protocols_reference", source)
    return load_file("protocols_reference", path)


#: The lines `without` cuts out of this tree's protocols.py.
CHECKS = (
    """    if passthrough and protocol != "v2":
        return _parse_carrying(protocol, body, content_type, signature, max_rows, passthrough)
""",
    """    if request is not None and request.passthrough:
        answer = {"predictions": predictions, pass_through.FIELD: request.passthrough}
        return orjson.dumps(answer, option=_DUMP, default=_default)
""",
)


def load_source(name: str, source: str) -> ModuleType:
    file = Path(tempfile.mkdtemp()) / f"{name}.py"
    file.write_text(source)
    return load_file(name, str(file))


def load_file(name: str, path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def without_checks() -> ModuleType:
    source = (ROOT / "src/stratus/serving/protocols.py").read_text()
    for check in CHECKS:
        if source.count(check) != 1:
            sys.exit("bench/passthrough.py: protocols.py changed; update CHECKS")
        source = source.replace(check, "")
    return load_source("protocols_without", source)


def bodies(names: list[str], row: list[float]) -> dict[str, tuple[bytes, bytes]]:
    """Per protocol: (a body without ids, the same with customer_id and ts)."""
    obj = dict(zip(names, row, strict=True))
    ids = {"customer_id": 4711, "ts": "2026-12-01T10:00"}
    v2 = [{"name": n, "shape": [1], "datatype": "FP64", "data": [v]} for n, v in obj.items()]
    v2_ids = [
        {"name": "customer_id", "shape": [1], "datatype": "INT64", "data": [4711]},
        {"name": "ts", "shape": [1], "datatype": "BYTES", "data": ["2026-12-01T10:00"]},
    ]
    split_cols = [*names, "customer_id", "ts"]
    return {
        "plain rows": (
            orjson.dumps({"instances": [row]}),
            orjson.dumps({"instances": [row], "passthrough": {k: [v] for k, v in ids.items()}}),
        ),
        "plain objects": (
            orjson.dumps({"instances": [obj]}),
            orjson.dumps({"instances": [{**obj, **ids}]}),
        ),
        "mlflow split": (
            orjson.dumps({"dataframe_split": {"columns": names, "data": [row]}}),
            orjson.dumps(
                {"dataframe_split": {"columns": split_cols, "data": [[*row, *ids.values()]]}}
            ),
        ),
        "v2 tensors": (
            orjson.dumps({"inputs": v2}),
            orjson.dumps({"inputs": v2 + v2_ids}),
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--reference", help="an older serving/protocols.py to compare with")
    parser.add_argument("--median", action="store_true", help="medians, not fastest rounds")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from sklearn.datasets import load_breast_cancer

    from stratus.registry.signatures import infer_signature
    from stratus.serving import protocols

    reference = reference_module(args.reference)
    without = without_checks()
    frame = load_breast_cancer(as_frame=True).data
    signature = infer_signature(frame)
    names = [str(c) for c in frame.columns]
    row = [float(v) for v in frame.iloc[0]]
    prediction = [1]

    def case(module: Any, body: bytes, protocol: str, **kw: Any) -> Any:
        def call() -> None:
            request = module.parse_request(protocol, body, None, signature, max_rows=10_000, **kw)
            module.render(
                protocol, prediction, model_name="bench", model_version="1",
                request_id="r", signature=signature, request=request,
            )  # fmt: skip

        return call

    protocol_of = {"plain": "plain", "mlflow": "mlflow", "v2": "v2"}
    pick = statistics.median if args.median else min
    what = "median" if args.median else "fastest"
    print(
        f"parse_request + render per call, CPU µs ({what} of {args.rounds} rounds × {args.number})"
    )
    print(f"{'request':<15}{'reference':>11}{'without':>9}{'none':>9}{'declared':>10}"
          f"{'carried':>9}{'none/ref':>10}{'none/without':>14}{'declared/none':>15}"
          f"{'carried/none':>14}")  # fmt: skip
    for label, (plain_body, carrying_body) in bodies(names, row).items():
        protocol = protocol_of[label.split()[0]]
        cases = {
            "reference": case(reference, plain_body, protocol),
            "without": case(without, plain_body, protocol),
            "none": case(protocols, plain_body, protocol),
            "declared": case(protocols, plain_body, protocol, passthrough=IDS),
            "carried": case(protocols, carrying_body, protocol, passthrough=IDS),
        }
        for call in cases.values():  # warm up, and prove each case answers
            call()
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, call in cases.items():
                start = time.thread_time()
                for _ in range(args.number):
                    call()
                times[name].append((time.thread_time() - start) / args.number * 1e6)
        m = {name: pick(values) for name, values in times.items()}
        print(
            f"{label:<15}{m['reference']:>11.2f}{m['without']:>9.2f}{m['none']:>9.2f}"
            f"{m['declared']:>10.2f}{m['carried']:>9.2f}{m['none'] / m['reference']:>10.3f}"
            f"{m['none'] / m['without']:>14.3f}{m['declared'] / m['none']:>15.3f}"
            f"{m['carried'] / m['none']:>14.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
