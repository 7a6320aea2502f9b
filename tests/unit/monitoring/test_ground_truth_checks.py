"""Ground truth is checked against what was captured: the request and its row must have been
captured, and a label must be of the kind the model predicts."""

from __future__ import annotations

from typing import Any

import pytest

from stratus.core.errors import InvalidInput, NotFound
from stratus.monitoring.capture import CapturedRequest
from stratus.monitoring.service import _check_captured, _check_kinds, _version_alarms

CAPTURED = {
    "r-classes": CapturedRequest(rows=2, label_kind="integer"),
    "r-values": CapturedRequest(rows=1, label_kind="number"),
    "r-names": CapturedRequest(rows=1, label_kind="string"),
    "r-objects": CapturedRequest(rows=1, label_kind=""),
}


def test_a_request_never_captured_or_a_row_it_did_not_have_is_not_found() -> None:
    _check_captured("e", {("r-classes", 1): 0}, CAPTURED)
    with pytest.raises(NotFound, match="'r-gone'") as missing:
        _check_captured("e", {("r-classes", 0): 1, ("r-gone", 0): 1, ("r-gone2", 0): 1}, CAPTURED)
    assert "1 more" in missing.value.detail
    assert missing.value.extra["request_ids"] == ["r-gone", "r-gone2"]
    with pytest.raises(NotFound, match=r"had 2 rows \(0 to 1\): it has no row 2"):
        _check_captured("e", {("r-classes", 2): 1}, CAPTURED)


@pytest.mark.parametrize(
    ("request_id", "label", "ok"),
    [
        ("r-classes", 1, True),
        ("r-classes", True, True),
        ("r-classes", 1.0, True),
        ("r-classes", "banana", False),
        ("r-classes", 0.5, False),
        ("r-values", 3.25, True),
        ("r-values", 3, True),
        ("r-values", "3.25", False),
        ("r-values", True, False),
        ("r-names", "churned", True),
        ("r-names", 1, True),  # a CSV reader turns the class "1" into 1
        ("r-names", 0.5, False),
        ("r-objects", "anything", True),  # several outputs: not checked
    ],
)
def test_a_label_of_the_wrong_kind_is_refused(request_id: str, label: Any, ok: bool) -> None:
    labels = {(request_id, 0): label}
    if ok:
        _check_kinds(labels, CAPTURED, set())
    else:
        with pytest.raises(InvalidInput, match=request_id):
            _check_kinds(labels, CAPTURED, set())


def test_a_monitor_that_says_regression_wants_numbers() -> None:
    _check_kinds({("r-classes", 0): "banana"}, {"r-classes": CAPTURED["r-names"]}, set())
    with pytest.raises(InvalidInput, match="regressor"):
        _check_kinds({("r-names", 0): "high"}, CAPTURED, {"regression"})


def test_only_versions_judged_on_their_own_get_an_alarm_series() -> None:
    report = {
        "versions": {
            "churn:1": {"judged": True, "breaches": []},
            "churn:2": {"judged": True, "breaches": ["accuracy 0.57 < 0.8"]},
            "churn:3": {"judged": False, "breaches": []},
        }
    }
    assert _version_alarms(report) == {"churn:1": False, "churn:2": True}
    assert _version_alarms({}) == {}
