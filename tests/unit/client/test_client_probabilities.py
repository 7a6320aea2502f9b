"""The SDK asks for class probabilities in each protocol's parameters, and reads them back as
one object per row keyed by class, whatever the protocol."""

from __future__ import annotations

import pytest

from stratus.client._inference import (
    asking_probabilities,
    class_name,
    predictions_of,
    request_body,
)
from stratus.registry import signatures


@pytest.mark.parametrize(
    ("protocol", "field"), [("plain", "parameters"), ("mlflow", "params"), ("v2", "parameters")]
)
def test_proba_goes_in_the_protocols_parameters(protocol: str, field: str) -> None:
    body = request_body(protocol, [[1.0, 2.0]], proba=True)
    assert body[field] == {"method": "predict_proba"}
    assert field not in request_body(protocol, [[1.0, 2.0]])
    kept = asking_probabilities(protocol, {**body, field: {"other": 1}})
    assert kept[field] == {"other": 1, "method": "predict_proba"}


def test_v2_probabilities_read_back_as_objects_keyed_by_class() -> None:
    answer = {
        "outputs": [
            {
                "name": "probabilities",
                "shape": [2, 2],
                "datatype": "FP32",
                "data": [0.25, 0.75, 1.0, 0.0],
                "parameters": {"classes": [0, True]},
            }
        ]
    }
    assert predictions_of(answer) == [{"0": 0.25, "true": 0.75}, {"0": 1.0, "true": 0.0}]
    answer["outputs"][0].pop("parameters")
    assert predictions_of(answer) == [[0.25, 0.75], [1.0, 0.0]]


def test_class_names_agree_with_the_servers() -> None:
    for label in (0, 1.0, 2.5, True, False, "yes", -3):
        assert class_name(label) == signatures.class_name(label)
