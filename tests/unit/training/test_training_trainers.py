"""The built-in trainer on a frame with text columns, whatever dtype pandas gives them."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratus.training.trainers import is_text, train

pd = pytest.importorskip("pandas")
pytest.importorskip("sklearn")


@pytest.mark.parametrize("dtype", [object, "string", "category"])
def test_text_columns_of_every_dtype_are_encoded(dtype: object, tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "plan": pd.Series(["basic", "pro"] * 50, dtype=dtype),  # type: ignore[call-overload]
            "calls": list(range(100)),
            "flag": [True, False] * 50,
            "label": [0, 1] * 50,
        }
    )
    assert is_text(frame["plan"]) and not is_text(frame["calls"]) and not is_text(frame["flag"])
    data = tmp_path / "data"
    data.mkdir()
    frame.to_csv(data / "rows.csv", index=False)  # read back by pyarrow: plan is text again
    result = train(
        data,
        tmp_path / "model",
        estimator="sklearn.linear_model.LogisticRegression",
        params={"max_iter": 1000},
        label="label",
        features=None,
        column_tags={},
        test_size=0.2,
        random_state=0,
    )
    assert result.metrics["accuracy"] == 1.0  # plan decides the label
    assert (tmp_path / "model" / "model.skops").is_file()
