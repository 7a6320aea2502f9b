"""Checking a dataset version against a rule set (`rules.py`): pure, over an Arrow table.

The data service reads the version's rows, fetches the reference profile when the rules
compare against one, and calls `validate_table`; the report it returns is stored with the
version and printed by `stratus data validate`. Each rule becomes one check with how many rows
fail it and a few of those rows, so a user sees at once what is wrong and where.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stratus.core.errors import InvalidInput
from stratus.data.drift import categorical_drift, numeric_drift
from stratus.data.profiling import kind_of, shown_category
from stratus.data.reports import Check, ColumnDrift, ValidationReport
from stratus.data.rules import ColumnRules, RuleSet

EXAMPLES = 5  # failing rows shown per check
_MAX_SHOWN_COLUMNS = 12
_MAX_SHOWN_CHARS = 80


def validate_table(
    table: pa.Table,
    rules: RuleSet,
    reference: dict[str, Any] | None = None,
    reference_label: str | None = None,
    not_compared: frozenset[str] = frozenset(),
) -> ValidationReport:
    """Apply every rule to `table`; `reference` is the reference version's stored profile,
    needed when the rules measure drift (a missing one skips those checks, saying so).
    Drift rules without a column list compare every column but `not_compared` (the dataset's
    `id`, `pii` and `timestamp` columns) and strings whose every value was distinct.

    Raises:
        InvalidInput: a rule cannot apply to its column (a numeric bound on strings, …).
    """
    checks: list[Check] = []
    rows = table.num_rows
    if rules.rows is not None:
        checks.append(_row_count(rows, rules.rows.min, rules.rows.max))
    present = set(table.column_names)
    for name, column_rules in rules.columns.items():
        if name not in present:
            if column_rules.required:
                checks.append(
                    Check(
                        check="present",
                        column=name,
                        passed=False,
                        expected="the column exists",
                        observed="missing",
                    )
                )
            continue
        checks.extend(_column_checks(table, name, column_rules))
    if not rules.allow_extra_columns:
        extra = [c for c in table.column_names if c not in rules.columns]
        checks.append(
            Check(
                check="no extra columns",
                passed=not extra,
                expected="only the columns the rules name",
                observed=", ".join(extra) if extra else "none",
            )
        )
    drifts: list[ColumnDrift] = []
    if rules.needs_reference():
        drift_checks, drifts = _drift_checks(table, rules, reference, reference_label, not_compared)
        checks.extend(drift_checks)
    return ValidationReport(
        passed=all(c.passed for c in checks),
        rows=rows,
        reference=reference_label if reference is not None else None,
        checks=checks,
        drift=drifts,
    )


# --- table-level ---------------------------------------------------------------------------


def _row_count(rows: int, low: int | None, high: int | None) -> Check:
    expected = " and ".join(
        part
        for part in (f"≥ {low}" if low is not None else "", f"≤ {high}" if high is not None else "")
        if part
    )
    ok = (low is None or rows >= low) and (high is None or rows <= high)
    return Check(check="row count", passed=ok, expected=expected or "any", observed=str(rows))


# --- column rules --------------------------------------------------------------------------


def _column_checks(table: pa.Table, name: str, rules: ColumnRules) -> list[Check]:
    column = table.column(name)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    checks: list[Check] = []
    if rules.type is not None:
        actual = str(column.type)
        ok = _type_matches(column.type, rules.type)
        checks.append(
            Check(check="type", column=name, passed=ok, expected=rules.type, observed=actual)
        )
        if not ok:
            return checks  # the other rules would only fail confusingly on the wrong type

    def rows_check(check: str, expected: str, mask: pa.ChunkedArray | pa.Array) -> Check:
        return _failing_rows(table, name, check, expected, mask)

    if rules.not_null:
        checks.append(rows_check("not null", "no nulls", pc.is_null(column)))
    if rules.max_null_share is not None:
        share = column.null_count / len(column) if len(column) else 0.0
        check = rows_check("null share", f"≤ {rules.max_null_share:.2%}", pc.is_null(column))
        check.passed = share <= rules.max_null_share
        check.observed = f"{share:.2%}"
        checks.append(check)
    if rules.min is not None:
        bound = _scalar(rules.min, column.type, name, "min")
        mask = pc.fill_null(pc.less(column, bound), False)
        checks.append(rows_check("min", f"≥ {rules.min}", mask))
    if rules.max is not None:
        bound = _scalar(rules.max, column.type, name, "max")
        mask = pc.fill_null(pc.greater(column, bound), False)
        checks.append(rows_check("max", f"≤ {rules.max}", mask))
    if rules.allowed is not None:
        allowed = _value_set(rules.allowed, column.type, name)
        mask = pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, value_set=allowed)))
        shown = ", ".join(str(v) for v in rules.allowed[:10])
        more = " …" if len(rules.allowed) > 10 else ""
        checks.append(rows_check("allowed values", f"one of {shown}{more}", mask))
    if rules.unique:
        checks.append(rows_check("unique", "no value twice", _duplicated(column)))
    if rules.finite:
        checks.append(rows_check("finite", "no NaN or ±inf", _not_finite(column)))
    return checks


def _type_matches(arrow_type: pa.DataType, expected: str) -> bool:
    if expected == "integer":
        return bool(pa.types.is_integer(arrow_type))
    if expected == "float":
        return bool(pa.types.is_floating(arrow_type))
    if expected == "number":
        return kind_of(arrow_type) == "number"
    if expected in ("string", "boolean", "timestamp"):
        return kind_of(arrow_type) == expected
    return str(arrow_type) == expected


def _scalar(value: Any, arrow_type: pa.DataType, column: str, rule: str) -> pa.Scalar:
    try:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return pa.scalar(value).cast(arrow_type)
        if kind_of(arrow_type) != "number":
            raise TypeError
        return pa.scalar(float(value))
    except (pa.ArrowException, TypeError, ValueError):
        raise InvalidInput(
            f"columns.{column}.{rule}: {value!r} cannot be compared with {arrow_type} values"
        ) from None


def _value_set(values: list[Any], arrow_type: pa.DataType, column: str) -> pa.Array:
    try:
        if kind_of(arrow_type) == "number" and not any(isinstance(v, bool) for v in values):
            if all(isinstance(v, int | float) for v in values):
                return pa.array([float(v) for v in values]).cast(arrow_type, safe=False)
        return pa.array(values).cast(arrow_type)
    except (pa.ArrowException, TypeError, ValueError):
        raise InvalidInput(
            f"columns.{column}.allowed: the values do not all fit the column's type {arrow_type}"
        ) from None


def _duplicated(column: pa.ChunkedArray) -> pa.Array:
    counted = pc.value_counts(column)
    repeated = pc.filter(counted.field("values"), pc.greater(counted.field("counts"), 1))
    repeated = repeated.drop_null()
    if len(repeated) == 0:
        return pa.array(np.zeros(len(column), dtype=bool))
    return pc.fill_null(pc.is_in(column, value_set=repeated), False)


def _not_finite(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    if pa.types.is_floating(column.type):
        return pc.fill_null(pc.invert(pc.is_finite(column)), False)
    return pa.array(np.zeros(len(column), dtype=bool))


def _failing_rows(
    table: pa.Table, column: str, check: str, expected: str, mask: pa.ChunkedArray | pa.Array
) -> Check:
    failing = int(pc.sum(mask).as_py() or 0)
    examples: list[dict[str, Any]] = []
    if failing:
        indices = pc.indices_nonzero(mask).slice(0, EXAMPLES).to_pylist()
        examples = [_example(table, int(i), column) for i in indices]
    return Check(
        check=check,
        column=column,
        passed=failing == 0,
        expected=expected,
        observed=(f"{failing} rows fail" if failing > 1 else "1 row fails")
        if failing
        else "every row passes",
        failing=failing,
        examples=examples,
    )


def _example(table: pa.Table, index: int, column: str) -> dict[str, Any]:
    """One failing row: its 0-based index and values (the checked column first, a few more)."""
    names = [column] + [c for c in table.column_names if c != column][: _MAX_SHOWN_COLUMNS - 1]
    values = {name: _json_safe(table.column(name)[index].as_py()) for name in names}
    return {"row": index, "values": values}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf"
    if isinstance(value, str | int | bool) or value is None:
        if isinstance(value, str) and len(value) > _MAX_SHOWN_CHARS:
            return value[: _MAX_SHOWN_CHARS - 1] + "…"
        return value
    if isinstance(value, float):
        return value
    text = str(value)
    return text if len(text) <= _MAX_SHOWN_CHARS else text[: _MAX_SHOWN_CHARS - 1] + "…"


# --- drift ---------------------------------------------------------------------------------


def _drift_checks(
    table: pa.Table,
    rules: RuleSet,
    reference: dict[str, Any] | None,
    label: str | None,
    not_compared: frozenset[str],
) -> tuple[list[Check], list[ColumnDrift]]:
    if reference is None:
        return [
            Check(
                check="drift",
                passed=True,
                expected="a reference to compare with",
                observed="skipped: there is no earlier version to compare with",
            )
        ], []
    by_name = {c["name"]: c for c in reference.get("columns", [])}
    default_psi = rules.drift.max_psi if rules.drift else None
    default_shift = rules.drift.max_mean_shift if rules.drift else None
    if rules.drift is not None and rules.drift.columns is not None:
        names = list(rules.drift.columns)
    elif rules.drift is not None:
        names = [
            c
            for c in table.column_names
            if c in by_name and c not in not_compared and not _identifier_like(by_name[c])
        ]
    else:
        names = []
    for name, own in rules.columns.items():  # columns with their own thresholds
        if (own.max_psi is not None or own.max_mean_shift is not None) and name not in names:
            names.append(name)
    checks: list[Check] = []
    drifts: list[ColumnDrift] = []
    for name in names:
        column_rules = rules.columns.get(name)
        max_psi = (
            column_rules.max_psi
            if column_rules and column_rules.max_psi is not None
            else default_psi
        )
        max_shift = (
            column_rules.max_mean_shift
            if column_rules and column_rules.max_mean_shift is not None
            else default_shift
        )
        ref = by_name.get(name)
        if name not in table.column_names or ref is None:
            side = "this version" if name not in table.column_names else label
            checks.append(
                Check(
                    check="drift",
                    column=name,
                    passed=False,
                    expected=f"the column in this version and in {label}",
                    observed=f"missing from {side}",
                )
            )
            continue
        drift = _column_drift(table.column(name), ref)
        if drift is None:
            continue  # a kind drift is not measured for (timestamps, lists, …)
        drifts.append(drift)
        if max_psi is not None:
            ok = drift.psi is None or drift.psi <= max_psi
            observed = f"{drift.psi:.4f}" if drift.psi is not None else drift.detail
            checks.append(
                Check(
                    check="drift (PSI)",
                    column=name,
                    passed=ok,
                    expected=f"≤ {max_psi}",
                    observed=observed,
                )
            )
        if max_shift is not None and drift.mean_shift is not None:
            checks.append(
                Check(
                    check="drift (mean shift)",
                    column=name,
                    passed=drift.mean_shift <= max_shift,
                    expected=f"≤ {max_shift} std",
                    observed=f"{drift.mean_shift:.4f} std",
                )
            )
    return checks, drifts


def _identifier_like(reference: dict[str, Any]) -> bool:
    """A string column whose every value was distinct (ids, emails): its drift means nothing."""
    categorical = reference.get("categorical") or {}
    present = reference.get("count", 0) - reference.get("nulls", 0)
    return bool(present > 1 and categorical.get("distinct") == present)


def _column_drift(column: pa.ChunkedArray, reference: dict[str, Any]) -> ColumnDrift | None:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    kind = kind_of(column.type)
    if kind == "number" and reference.get("numeric") is not None:
        values = np.asarray(
            column.drop_null().cast(pa.float64(), safe=False).to_numpy(), dtype=float
        )
        return numeric_drift(reference, values)
    if kind in ("string", "boolean") and reference.get("categorical") is not None:
        raw = column.to_pylist()
        if kind == "boolean":
            shown = [None if v is None else ("true" if v else "false") for v in raw]
        else:
            shown = [None if v is None else shown_category(v) for v in raw]
        return categorical_drift(reference, shown)
    return None
