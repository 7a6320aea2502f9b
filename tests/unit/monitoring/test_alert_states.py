"""The alert state machine, table-driven with fake samples and times: pending, firing after
`for_seconds`, resolved when the condition stops or the series goes away, disabled rules,
NaN samples, label matching and project isolation."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from stratus.monitoring.alert_schemas import AlertRuleSpec
from stratus.monitoring.alert_states import (
    MAX_INSTANCES,
    Instance,
    Sample,
    holds,
    key_of,
    select,
    shown,
    step,
    worst,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SERIES = {"project": "p", "endpoint": "e", "variant": "main"}
KEY = key_of(SERIES)


def spec(**changes: object) -> AlertRuleSpec:
    base: dict[str, object] = {
        "metric": "stratus_endpoint_error_ratio",
        "comparison": ">",
        "threshold": 0.1,
        "for_seconds": 30,
    }
    return AlertRuleSpec.model_validate({**base, **changes})


def run(rule: AlertRuleSpec, values: list[tuple[float, float | None]]) -> list[list[str]]:
    """Evaluate at each (seconds after T0, value or None = the series is absent); the
    transitions' states per evaluation."""
    known: dict = {}
    out = []
    for seconds, value in values:
        series = {} if value is None else {KEY: value}
        known, transitions = step(rule, known, series, T0 + timedelta(seconds=seconds))
        out.append([t.state for t in transitions])
    return out


@pytest.mark.parametrize(
    ("comparison", "value", "expected"),
    [
        (">", 2, True), (">", 1, False), (">=", 1, True), ("<", 0, True), ("<", 1, False),
        ("<=", 1, True), ("==", 1, True), ("==", 1.5, False), ("!=", 1.5, True), ("!=", 1, False),
    ],
)  # fmt: skip
def test_comparisons(comparison: str, value: float, expected: bool) -> None:
    assert holds(value, comparison, 1.0) is expected


def test_pending_then_firing_after_for_seconds_then_resolved() -> None:
    assert run(spec(), [(0, 0.5), (10, 0.5), (29, 0.5), (30, 0.5), (40, 0.5), (50, 0.0)]) == [
        [], [], [], ["firing"], [], ["resolved"],
    ]  # fmt: skip


def test_a_break_in_the_condition_restarts_the_wait() -> None:
    assert run(spec(), [(0, 0.5), (20, 0.0), (25, 0.5), (50, 0.5), (55, 0.5)]) == [
        [], [], [], [], ["firing"],
    ]  # fmt: skip


def test_for_zero_fires_at_once() -> None:
    assert run(spec(for_seconds=0), [(0, 0.5), (1, 0.5), (2, 0.01)]) == [
        ["firing"], [], ["resolved"],
    ]  # fmt: skip


def test_a_series_that_disappears_resolves() -> None:
    assert run(spec(for_seconds=0), [(0, 0.5), (5, None), (10, None)]) == [
        ["firing"], ["resolved"], [],
    ]  # fmt: skip


def test_a_pending_series_that_disappears_says_nothing() -> None:
    assert run(spec(), [(0, 0.5), (5, None), (40, 0.5)]) == [[], [], []]


def test_a_disabled_rule_resolves_what_fired_and_sees_nothing() -> None:
    rule = spec(for_seconds=0)
    known, transitions = step(rule, {}, {KEY: 0.5}, T0)
    assert [t.state for t in transitions] == ["firing"]
    disabled = rule.model_copy(update={"enabled": False})
    known, transitions = step(disabled, known, {KEY: 0.5}, T0 + timedelta(seconds=5))
    assert [t.state for t in transitions] == ["resolved"]
    assert known == {}


def test_states_and_timestamps_are_kept() -> None:
    rule = spec()
    known, _ = step(rule, {}, {KEY: 0.5}, T0)
    assert known[KEY].state == "pending"
    assert known[KEY].active_since == T0
    known, transitions = step(rule, known, {KEY: 0.7}, T0 + timedelta(seconds=31))
    assert known[KEY].state == "firing"
    assert known[KEY].active_since == T0
    assert transitions[0].started_at == T0
    assert transitions[0].value == 0.7
    known, transitions = step(rule, known, {KEY: 0.0}, T0 + timedelta(seconds=40))
    assert known[KEY].state == "inactive"
    assert transitions[0].state == "resolved"
    assert transitions[0].started_at == T0
    assert transitions[0].time == T0 + timedelta(seconds=40)


def test_each_series_has_its_own_state() -> None:
    a, b = key_of({**SERIES, "variant": "a"}), key_of({**SERIES, "variant": "b"})
    rule = spec(for_seconds=0)
    known, transitions = step(rule, {}, {a: 0.5, b: 0.0}, T0)
    assert [(dict(t.labels)["variant"], t.state) for t in transitions] == [("a", "firing")]
    assert worst(known.values()) == "firing"
    known, transitions = step(rule, known, {a: 0.5, b: 0.9}, T0 + timedelta(seconds=1))
    assert [(dict(t.labels)["variant"], t.state) for t in transitions] == [("b", "firing")]


def test_select_matches_name_labels_and_the_rules_project_only() -> None:
    samples = [
        Sample("stratus_endpoint_error_ratio", {**SERIES}, 0.5),
        Sample("stratus_endpoint_error_ratio", {**SERIES, "endpoint": "other"}, 0.5),
        Sample("stratus_endpoint_error_ratio", {**SERIES, "project": "q"}, 0.9),
        Sample("stratus_endpoint_request_rate", {**SERIES}, 3.0),
        Sample("stratus_endpoint_error_ratio", {**SERIES, "variant": "canary"}, math.nan),
    ]
    found = select(samples, "stratus_endpoint_error_ratio", {"endpoint": "e"}, "p")
    assert found == {KEY: 0.5}
    everything = select(samples, "stratus_endpoint_error_ratio", {}, "p")
    assert set(everything) == {KEY, key_of({**SERIES, "endpoint": "other"})}
    # a matcher on project cannot reach another project's series
    forced = select(samples, "stratus_endpoint_error_ratio", {"project": "q"}, "p")
    assert {dict(key)["project"] for key in forced} == {"p"}


def test_worst_and_shown() -> None:
    def inst(n: int, state: str) -> Instance:
        return Instance(key_of({"n": f"{n:04d}"}), state, 1.0, None, T0)

    many = [inst(n, "inactive") for n in range(MAX_INSTANCES + 50)]
    many += [inst(9999, "pending"), inst(9998, "firing")]
    listed = shown(many)
    assert [i.state for i in listed[:2]] == ["firing", "pending"]
    assert len(listed) == MAX_INSTANCES
    assert worst([]) == "inactive"
    assert worst(listed) == "firing"
