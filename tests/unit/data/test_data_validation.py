"""Validation rules over Arrow tables: each rule's failing rows and examples, drift against a
reference profile, and the rules that cannot apply (a clear error, not a crash)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from stratus.core.errors import InvalidInput
from stratus.data.drift import categorical_drift, numeric_drift, psi
from stratus.data.profiling import profile_table
from stratus.data.rules import RuleSet, parse_rules
from stratus.data.validation import EXAMPLES, validate_table


def table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array(["a", "b", "c", "b", "e", "f"]),
            "age": pa.array([30, -1, 45, 200, None, 50], pa.int64()),
            "score": pa.array([0.5, float("nan"), 0.7, float("inf"), 0.1, None]),
            "plan": pa.array(["basic", "pro", "gold", None, "basic", "pro"]),
        }
    )


def check(report: Any, name: str, column: str | None = None) -> Any:
    found = [c for c in report.checks if c.check == name and c.column == column]
    assert len(found) == 1, [(c.check, c.column) for c in report.checks]
    return found[0]


def test_every_column_rule_counts_its_failing_rows_with_examples() -> None:
    rules = parse_rules(
        {
            "columns": {
                "id": {"type": "string", "unique": True},
                "age": {"type": "integer", "not_null": True, "min": 0, "max": 120},
                "score": {"type": "float", "finite": True, "max_null_share": 0.1},
                "plan": {"allowed": ["basic", "pro"]},
            }
        }
    )
    report = validate_table(table(), rules)
    assert report.passed is False and report.rows == 6
    assert check(report, "type", "id").passed
    unique = check(report, "unique", "id")
    assert (unique.passed, unique.failing) == (False, 2)  # both rows holding "b"
    assert [e["row"] for e in unique.examples] == [1, 3]
    assert unique.examples[0]["values"]["id"] == "b"
    assert check(report, "not null", "age").failing == 1
    low, high = check(report, "min", "age"), check(report, "max", "age")
    assert (low.failing, low.examples[0]["values"]["age"]) == (1, -1)
    assert (high.failing, high.examples[0]["row"]) == (1, 3)
    finite = check(report, "finite", "score")
    assert finite.failing == 2 and {e["values"]["score"] for e in finite.examples} == {"nan", "inf"}
    share = check(report, "null share", "score")
    assert share.passed is False and share.observed == "16.67%"
    allowed = check(report, "allowed values", "plan")
    assert (allowed.failing, allowed.examples[0]["values"]["plan"]) == (1, "gold")  # null is not


def test_a_clean_table_passes_every_rule() -> None:
    data = pa.table({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    rules = parse_rules(
        {
            "rows": {"min": 3, "max": 3},
            "allow_extra_columns": False,
            "columns": {
                "x": {"type": "int64", "unique": True, "min": 1, "max": 3, "allowed": [1, 2, 3]},
                "y": {"type": "string", "not_null": True, "finite": True},
            },
        }
    )
    report = validate_table(data, rules)
    assert report.passed, [c for c in report.checks if not c.passed]
    assert all(c.failing in (0, None) for c in report.checks)


def test_examples_are_bounded_and_count_is_whole() -> None:
    data = pa.table({"x": list(range(-100, 0))})
    report = validate_table(data, parse_rules({"columns": {"x": {"min": 0}}}))
    low = check(report, "min", "x")
    assert low.failing == 100 and len(low.examples) == EXAMPLES


def test_row_count_missing_and_extra_columns() -> None:
    rules = parse_rules(
        {
            "rows": {"min": 10},
            "allow_extra_columns": False,
            "columns": {"id": {}, "gone": {"type": "string"}, "maybe": {"required": False}},
        }
    )
    report = validate_table(table(), rules)
    rows = check(report, "row count")
    assert (rows.passed, rows.observed, rows.expected) == (False, "6", "≥ 10")
    assert check(report, "present", "gone").passed is False
    assert not [c for c in report.checks if c.column == "maybe"]  # optional and absent: fine
    extra = check(report, "no extra columns")
    assert extra.passed is False and extra.observed == "age, score, plan"


def test_a_wrong_type_stops_that_column_other_rules() -> None:
    report = validate_table(
        table(), parse_rules({"columns": {"age": {"type": "string", "min": 0}}})
    )
    typed = check(report, "type", "age")
    assert (typed.passed, typed.observed) == (False, "int64")
    assert not [c for c in report.checks if c.column == "age" and c.check == "min"]


def test_rules_that_cannot_apply_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"columns\.plan\.min: 0 cannot be compared"):
        validate_table(table(), parse_rules({"columns": {"plan": {"min": 0}}}))
    with pytest.raises(InvalidInput, match=r"columns\.age\.allowed"):
        validate_table(table(), parse_rules({"columns": {"age": {"allowed": ["x"]}}}))


def test_string_bounds_compare_as_text() -> None:
    report = validate_table(table(), parse_rules({"columns": {"plan": {"max": "gold"}}}))
    assert check(report, "max", "plan").failing == 2  # "pro" twice


@pytest.mark.parametrize(
    "document, message",
    [
        ({"columns": {"x": {"nope": 1}}}, "Extra inputs"),
        ({"columns": {"x": {"min": 5, "max": 1}}}, "min"),
        ({"rows": {"min": 5, "max": 1}}, "rows.min"),
        ({"columns": {"x": {"max_null_share": 2}}}, "less than or equal"),
        ({"drift": {"max_psi": -1}}, "greater than or equal"),
    ],
)
def test_malformed_rules_are_refused(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_rules(document)


def test_an_empty_rules_file_is_an_empty_rule_set() -> None:
    assert parse_rules(None) == RuleSet()


# --- drift ---------------------------------------------------------------------------------


def reference(seed: int = 0, rows: int = 2000, shift: float = 0.0) -> dict[str, Any]:
    return profile_table(sample(seed, rows, shift)).model_dump(mode="json")


def sample(seed: int, rows: int = 2000, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "amount": rng.normal(100 + shift, 15, rows),
            "city": rng.choice(["paris", "lyon", "nice"], rows, p=[0.6, 0.3, 0.1]),
        }
    )


def test_same_distribution_passes_drift_and_a_shift_fails_it() -> None:
    rules = parse_rules({"drift": {"max_psi": 0.1, "max_mean_shift": 0.5}})
    same = validate_table(sample(1), rules, reference(0), "churn:1")
    assert same.passed and same.reference == "churn:1"
    assert {d.column for d in same.drift} == {"amount", "city"}
    assert all(d.psi is not None and d.psi < 0.05 for d in same.drift)

    moved = validate_table(sample(1, shift=30), rules, reference(0), "churn:1")
    assert not moved.passed
    psi_check = check(moved, "drift (PSI)", "amount")
    assert psi_check.passed is False and float(psi_check.observed) > 0.25
    assert check(moved, "drift (mean shift)", "amount").passed is False
    assert check(moved, "drift (PSI)", "city").passed  # the categories did not move


def test_a_column_threshold_overrides_the_default_and_selects_the_column() -> None:
    rules = parse_rules({"columns": {"amount": {"max_psi": 10}}})
    report = validate_table(sample(1, shift=30), rules, reference(0), "churn:1")
    assert report.passed and [d.column for d in report.drift] == ["amount"]


def test_drift_without_a_reference_is_skipped_and_says_so() -> None:
    report = validate_table(sample(1), parse_rules({"drift": {}}), None, None)
    assert report.passed and "skipped" in check(report, "drift").observed


def test_a_drift_column_missing_on_one_side_fails() -> None:
    rules = parse_rules({"drift": {"columns": ["amount", "nope"]}})
    report = validate_table(sample(1), rules, reference(0), "churn:1")
    assert check(report, "drift", "nope").passed is False


def test_psi_math() -> None:
    assert psi([10, 10], [10, 10]) == 0.0
    assert psi([50, 50], [90, 10]) == pytest.approx(
        (0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5)
    )
    assert psi([1, 0], [0, 1]) > 5  # disjoint: large but finite
    with pytest.raises(ValueError):
        psi([1], [1, 2])


def test_numeric_drift_counts_values_outside_the_reference_range() -> None:
    ref = profile_table(pa.table({"x": [0.0, 1.0, 2.0, 3.0]})).model_dump(mode="json")
    column = ref["columns"][0]
    inside = numeric_drift(column, np.array([0.0, 1.0, 2.0, 3.0]))
    outside = numeric_drift(column, np.array([10.0, 11.0, 12.0, 13.0]))
    assert inside.psi == pytest.approx(0.0, abs=1e-9)
    assert outside.psi is not None and outside.psi > 5
    constant = profile_table(pa.table({"x": [1.0, 1.0]})).model_dump(mode="json")["columns"][0]
    assert numeric_drift(constant, np.array([1.0, 1.0])).psi == pytest.approx(0.0, abs=1e-9)
    moved = numeric_drift(constant, np.array([2.0, 2.0]))
    assert moved.psi is not None and moved.psi > 5 and moved.mean_shift == 1e9


def test_categorical_drift_puts_unknown_values_in_one_bin() -> None:
    ref = profile_table(pa.table({"c": ["a"] * 50 + ["b"] * 50})).model_dump(mode="json")
    column = ref["columns"][0]
    assert categorical_drift(column, ["a", "b"] * 10).psi == pytest.approx(0.0, abs=1e-9)
    new = categorical_drift(column, ["z"] * 20)
    assert new.psi is not None and new.psi > 5


def test_default_drift_skips_ids_and_tagged_columns() -> None:
    def with_ids(seed: int) -> pa.Table:
        base = sample(seed, rows=200)
        return base.append_column("email", pa.array([f"u{seed}-{i}@x" for i in range(200)]))

    ref = profile_table(with_ids(0)).model_dump(mode="json")
    rules = parse_rules({"drift": {}})
    report = validate_table(with_ids(1), rules, ref, "d:1")
    assert {d.column for d in report.drift} == {"amount", "city"}  # email: every value distinct
    tagged = validate_table(with_ids(1), rules, ref, "d:1", frozenset({"city"}))
    assert {d.column for d in tagged.drift} == {"amount"}
    named = validate_table(with_ids(1), parse_rules({"drift": {"columns": ["email"]}}), ref, "d:1")
    assert [d.column for d in named.drift] == ["email"]  # asked for by name: compared
