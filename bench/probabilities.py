#!/usr/bin/env python3
"""What asking for probabilities costs on a replica, and what it costs the label-only path.

In-process (no gateway, no socket), one core: `Replica.answer` for single-row requests to the
StandardScaler + LogisticRegression of ../shared/bench/train_models.py (trained here on
scikit-learn's breast-cancer data), per protocol (plain, MLflow, v2):
  labels            the label-only path as it is
  labels, no param  the same with the request-parameter lookup (`protocols.method_of`)
                    replaced by a constant: the path without the probabilities feature
  probabilities     the same request asking for `method: predict_proba`
It prints µs per request (best of --repeats interleaved runs of --number calls) and the ratios
labels / labels-no-param and probabilities / labels.

Run (from the repository root, with the project's venv):
    .venv/bin/python bench/probabilities.py [--number 5000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=5000, help="calls per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the best is kept")
    args = parser.parse_args()

    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from stratus.registry.flavors.sklearn import SklearnModel
    from stratus.registry.signatures import infer_signature
    from stratus.serving import protocols
    from stratus.serving.replica import Replica, ReplicaSpec
    from stratus.serving.wire import Kind

    x, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    signature = infer_signature(x[:5])
    folder = Path(tempfile.mkdtemp(prefix="stratus-bench-proba-"))
    spec = ReplicaSpec(
        model_dir=folder,
        flavor="sklearn",
        signature=signature.model_dump(mode="json"),
        model_name="lr",
        model_version=1,
        secret="s" * 32,
    )
    replica = Replica(spec, SklearnModel(model, signature))
    row = x[0].tolist()
    requests: dict[str, tuple[Kind, dict[str, Any]]] = {
        "plain": (Kind.PLAIN_PREDICT, {"instances": [row]}),
        "mlflow": (Kind.MLFLOW_INVOCATIONS, {"dataframe_split": {"data": [row]}}),
        "v2": (
            Kind.V2_INFER,
            {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": row}]},
        ),
    }

    async def once(kind: Kind, body: bytes) -> float:
        start = time.perf_counter()
        for _ in range(args.number):
            status, _ = await replica.answer(kind, "application/json", body)
        assert status == 200
        return (time.perf_counter() - start) / args.number * 1e6

    async def run() -> None:
        real = protocols.method_of
        print(f"{'protocol':8} {'labels':>9} {'no param':>9} {'proba':>9}  labels/no-param  "
              "proba/labels")  # fmt: skip
        for name, (kind, document) in requests.items():
            labels = orjson.dumps(document)
            field = protocols.PARAMETERS_FIELD[name]  # type: ignore[index]
            proba = orjson.dumps({**document, field: {"method": "predict_proba"}})
            for _ in range(200):  # warm up both paths
                await replica.answer(kind, "application/json", labels)
                await replica.answer(kind, "application/json", proba)
            # the three interleaved, best of each: a busy machine slows them alike
            with_param = without = asked = float("inf")
            for _ in range(args.repeats):
                with_param = min(with_param, await once(kind, labels))
                protocols.method_of = lambda protocol, document: "predict"  # type: ignore[assignment]
                try:
                    without = min(without, await once(kind, labels))
                finally:
                    protocols.method_of = real
                asked = min(asked, await once(kind, proba))
            print(
                f"{name:8} {with_param:8.1f}µ {without:8.1f}µ {asked:8.1f}µ  "
                f"{with_param / without:15.3f}  {asked / with_param:12.3f}"
            )
        await replica.close()

    asyncio.run(run())


if __name__ == "__main__":
    main()
