"""Train the churn model: a scikit-learn pipeline on the dataset version the job pulled.

Run as a Stratus job (the pipeline's train step, or `stratus jobs run --code train ...`):
the data is in STRATUS_DATA_DIR, the model goes to STRATUS_MODEL_DIR (the job registers it
with its lineage; `sample.csv` there gives its input signature), and params and metrics go
to the job's tracking run.
`--weak` trains on one feature only: a worse model, for the gate to refuse.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

import stratus.tracking as tracking

NUMBERS = ["tenure_months", "monthly_charges", "support_calls"]
TEXT = ["contract", "plan"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-estimators", type=int, default=150)
    parser.add_argument("--max-depth", type=int, default=3)
    parser.add_argument("--weak", action="store_true", help="use plan alone")
    args = parser.parse_args()

    data_dir = Path(os.environ.get("STRATUS_DATA_DIR", "data"))
    frame = pd.concat(pd.read_csv(p) for p in sorted(data_dir.rglob("*.csv")))
    numbers, text = ([], ["plan"]) if args.weak else (NUMBERS, TEXT)
    x, y = frame[numbers + text], frame["churned"]
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    model = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [("text", OneHotEncoder(handle_unknown="ignore"), text)],
                    remainder="passthrough",
                ),
            ),
            (
                "model",
                GradientBoostingClassifier(
                    n_estimators=args.n_estimators, max_depth=args.max_depth, random_state=0
                ),
            ),
        ]
    )
    with tracking.start_run() as run:
        run.log_params(
            {"n_estimators": args.n_estimators, "max_depth": args.max_depth, "weak": args.weak}
        )
        model.fit(x_train, y_train)
        predicted = model.predict(x_test)
        metrics = {
            "accuracy": accuracy_score(y_test, predicted),
            "f1": f1_score(y_test, predicted),
            "roc_auc": roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]),
        }
        run.log_metrics(metrics)
        print("test metrics:", {k: round(v, 4) for k, v in metrics.items()}, flush=True)
    out = Path(os.environ.get("STRATUS_MODEL_DIR", "model"))
    out.mkdir(parents=True, exist_ok=True)
    skops.io.dump(model, out / "model.skops")
    x_train.head(50).to_csv(out / "sample.csv", index=False)  # the model's signature


if __name__ == "__main__":
    main()
