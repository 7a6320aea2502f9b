"""A monitor can take a class's probability as the prediction: `prediction_source` is `label`
or `probability:CLASS`, and probabilities give labels (the most probable class) and scores."""

from __future__ import annotations

import pyarrow as pa
import pytest

from stratus.core.errors import InvalidInput
from stratus.monitoring import performance
from stratus.monitoring import schemas as s
from stratus.monitoring.service import (
    _from_probabilities,
    _predicted_column,
    _probability_class,
)


def spec(source: str) -> s.MonitorSpec:
    return s.MonitorSpec(
        endpoint="e",
        type="performance",
        prediction_source=source,
        window=s.Window(),
        interval_seconds=60,
        min_rows=1,
        drift=s.DriftThresholds(),
    )


def test_label_or_one_class_probability() -> None:
    assert _probability_class("label") is None
    assert _probability_class("probability:1") == "1"
    assert _probability_class("probability: yes ") == "yes"
    assert _predicted_column(spec("label")) == "prediction"
    assert _predicted_column(spec("probability:yes")) == "probability.yes"
    assert s.MonitorApply(name="m", endpoint="e").prediction_source == "label"


@pytest.mark.parametrize("source", ["probability", "probability:", "proba:1", "score", ""])
def test_anything_else_is_refused_naming_it(source: str) -> None:
    with pytest.raises(InvalidInput, match="is not 'label' or 'probability:CLASS'") as caught:
        _probability_class(source)
    assert caught.value.status == 400
    assert caught.value.to_problem()["prediction_source"] == source


def test_probabilities_give_the_most_probable_class_and_the_score() -> None:
    table = pa.table(
        {
            "probability.0": [0.9, 0.2, None, 0.4],
            "probability.1": [0.1, 0.8, None, 0.6],
        }
    ).filter(pa.array([True, True, False, True]))
    truth = [0, 1, 1]

    predicted, scores = _from_probabilities(table, "probability.1", truth)

    assert predicted == [0, 1, 1]  # spelled as the truth spells them (ints, not "1")
    assert scores == [0.1, 0.8, 0.6]
    metrics = performance.classification(truth, predicted, scores, positive=1)
    assert metrics["accuracy"] == 1.0 and metrics["roc_auc"] == 1.0
