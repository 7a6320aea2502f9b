"""The serving benchmark's models and its in-process reference: each model loaded from the
references' joblib file (or trained here with train_models.py's recipe), and model.predict
timed in this process (1 row, 64 rows, json+predict+dump), as inprocess_limit.py does.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from serving_config import MODELS, VENV, shared_module


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
