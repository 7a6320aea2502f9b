"""Make the churn example's data: a training set, a holdout set (and its feature columns
alone, as requests to the endpoint), fresh data for a retrain, and a bad batch (broken rows)
that validation must stop.

    python examples/churn/make_data.py [OUT_DIR]      # default: examples/churn/data

The customers are synthetic: churn grows with support calls and monthly charges and falls
with tenure and a longer contract, plus noise, so a good model scores about 0.85 accuracy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

CONTRACTS = ["month-to-month", "one-year", "two-year"]
PLANS = ["basic", "plus", "pro"]


def customers(rows: int, seed: int, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 73, rows)
    charges = rng.uniform(20, 120, rows).round(2)
    contract = rng.choice(CONTRACTS, rows, p=[0.55, 0.25, 0.20])
    calls = rng.poisson(1.5, rows)
    plan = rng.choice(PLANS, rows, p=[0.5, 0.3, 0.2])
    score = (
        -1.0
        - 0.05 * tenure
        + 0.025 * charges
        + 0.55 * calls
        - np.where(contract == "one-year", 1.2, 0.0)
        - np.where(contract == "two-year", 2.4, 0.0)
        + rng.normal(0, 0.8, rows)
    )
    return pd.DataFrame(
        {
            "customer_id": [f"c{start + i:06d}" for i in range(rows)],
            "tenure_months": tenure,
            "monthly_charges": charges,
            "contract": contract,
            "support_calls": calls,
            "plan": plan,
            "churned": (score > 0).astype(int),
        }
    )


def bad_batch(rows: int, seed: int) -> pd.DataFrame:
    """Fresh customers with what a broken export produces: negative tenure, a missing plan,
    a duplicated id."""
    frame = customers(rows, seed, start=900_000)
    frame.loc[frame.index[:25], "tenure_months"] = -1
    frame["plan"] = frame["plan"].astype(object)
    frame.loc[frame.index[25:200], "plan"] = None
    frame.loc[frame.index[300], "customer_id"] = frame.loc[frame.index[301], "customer_id"]
    return frame


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    customers(3000, seed=1).to_csv(out / "train.csv", index=False)
    holdout = customers(1000, seed=2, start=100_000)
    holdout.to_csv(out / "holdout.csv", index=False)
    features = ["tenure_months", "monthly_charges", "support_calls", "contract", "plan"]
    holdout[features].to_csv(out / "requests.csv", index=False)  # what callers send
    customers(3000, seed=3, start=200_000).to_csv(out / "train-refresh.csv", index=False)
    bad_batch(3000, seed=4).to_csv(out / "train-bad.csv", index=False)
    print(f"wrote train.csv, holdout.csv, requests.csv, train-refresh.csv, train-bad.csv to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
