"""Make the churn example's data: a training set, a holdout set (and its feature columns
alone, as requests to the endpoint), fresh data for a retrain, a bad batch (broken rows)
that validation must stop, and the customers after a price change (live data to retrain on,
its holdout, and their requests), which the drift monitor must notice.

    python examples/churn/make_data.py [OUT_DIR]      # default: examples/churn/data

The customers are synthetic: churn grows with support calls and monthly charges and falls
with tenure and a longer contract, plus noise, so a good model scores about 0.85 accuracy.
After the price change, charges are higher, more customers are on monthly contracts and the
pro plan, and churn reacts more to the price and less to the contract: a model trained before
it loses accuracy, one trained on the new data does not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

CONTRACTS = ["month-to-month", "one-year", "two-year"]
PLANS = ["basic", "plus", "pro"]


def customers(rows: int, seed: int, start: int = 0, repriced: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 73, rows)
    charges = rng.uniform(20, 120, rows).round(2)
    contract = rng.choice(CONTRACTS, rows, p=[0.55, 0.25, 0.20])
    calls = rng.poisson(1.5, rows)
    plan = rng.choice(PLANS, rows, p=[0.5, 0.3, 0.2])
    price, loyalty, base = 0.025, 1.0, -1.0
    if repriced:  # the price change: dearer, more monthly contracts and pro plans
        charges = (charges + rng.uniform(25, 45, rows)).round(2)
        contract = rng.choice(CONTRACTS, rows, p=[0.75, 0.15, 0.10])
        plan = rng.choice(PLANS, rows, p=[0.25, 0.3, 0.45])
        price, loyalty, base = 0.06, 0.4, -5.5
    score = (
        base
        - 0.05 * tenure
        + price * charges
        + 0.55 * calls
        - loyalty * np.where(contract == "one-year", 1.2, 0.0)
        - loyalty * np.where(contract == "two-year", 2.4, 0.0)
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
    customers(3000, seed=5, start=300_000, repriced=True).to_csv(out / "live.csv", index=False)
    live_holdout = customers(1000, seed=6, start=400_000, repriced=True)
    live_holdout.to_csv(out / "live-holdout.csv", index=False)
    live_holdout[features].to_csv(out / "requests-repriced.csv", index=False)
    print(
        "wrote train.csv, holdout.csv, requests.csv, train-refresh.csv, train-bad.csv, "
        f"live.csv, live-holdout.csv, requests-repriced.csv to {out}"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
