"""Checking a dataset version against a rule set (`rules.py`): pure, over Arrow record batches.

The data service opens the version's rows as a stream of record batches, fetches the
reference profile when the rules compare against one, and calls `validate_batches`; the report
it returns is stored with the version and printed by `stratus data validate`. Each rule becomes
one check with how many rows fail it and a few of those rows, so a user sees at once what is
wrong and where.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stratus.core.errors import InvalidInput
from stratus.data.drift import CategoricalDrift, NumericDrift
from stratus.data.profiling import kind_of, shown_category
from stratus.data.reports import Check, ColumnDrift, ValidationReport
from stratus.data.rules import ColumnRules, RuleSet
from stratus.data.sketches import ValueCounts

if TYPE_CHECKING:
    from stratus.data.batches import BatchSource

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
    """`validate_batches` over a table already in memory."""
    from stratus.data.batches import TableSource

    return validate_batches(TableSource(table), rules, reference, reference_label, not_compared)


def validate_batches(
    source: BatchSource,
    rules: RuleSet,
    reference: dict[str, Any] | None = None,
    reference_label: str | None = None,
    not_compared: frozenset[str] = frozenset(),
) -> ValidationReport:
    """Apply every rule to `source`, a record batch at a time; `reference` is the reference
    version's stored profile, needed when the rules measure drift (a missing one skips those
    checks, saying so). Drift rules without a column list compare every column but
    `not_compared` (the dataset's `id`, `pii` and `timestamp` columns) and strings whose every
    value was distinct.

    Each rule is evaluated per batch and its failing rows counted; the examples are the first
    failing rows, by their index in the whole version. `unique` counts every value across the
    batches (its memory grows with the column's distinct values, not with its rows) and, when
    a value repeats, reads the rows again to show the first repeated ones.

    Raises:
        InvalidInput: a rule cannot apply to its column (a numeric bound on strings, …).
    """
    schema = source.schema
    names = schema.names
    checks: list[Check | _RowCheck] = []
    row_checks: list[_RowCheck] = []
    if rules.rows is not None:
        rows_at = len(checks)
        checks.append(_row_count(0, None, None))  # replaced once the rows are counted
    present = set(names)
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
        column_checks = _column_checks(schema, name, column_rules)
        checks.extend(column_checks)
        row_checks.extend(c for c in column_checks if isinstance(c, _RowCheck))
    if not rules.allow_extra_columns:
        extra = [c for c in names if c not in rules.columns]
        checks.append(
            Check(
                check="no extra columns",
                passed=not extra,
                expected="only the columns the rules name",
                observed=", ".join(extra) if extra else "none",
            )
        )
    drift_checks: _DriftChecks | None = None
    if rules.needs_reference():
        drift_checks = _DriftChecks(schema, rules, reference, reference_label, not_compared)
    rows = 0
    for batch in source.batches():
        for row_check in row_checks:
            row_check.add(batch, rows)
        if drift_checks is not None:
            drift_checks.add(batch)
        rows += batch.num_rows
    if any(c.needs_second_pass() for c in row_checks):
        offset = 0
        for batch in source.batches():
            for row_check in row_checks:
                if row_check.needs_second_pass():
                    row_check.add_examples(batch, offset)
            offset += batch.num_rows
    if rules.rows is not None:
        checks[rows_at] = _row_count(rows, rules.rows.min, rules.rows.max)
    done = [c.result() if isinstance(c, _RowCheck) else c for c in checks]
    drifts: list[ColumnDrift] = []
    if drift_checks is not None:
        drift_results, drifts = drift_checks.results()
        done.extend(drift_results)
    return ValidationReport(
        passed=all(c.passed for c in done),
        rows=rows,
        reference=reference_label if reference is not None else None,
        checks=done,
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


def _column_checks(schema: pa.Schema, name: str, rules: ColumnRules) -> list[Check | _RowCheck]:
    arrow_type = schema.field(name).type
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    checks: list[Check | _RowCheck] = []
    if rules.type is not None:
        ok = _type_matches(arrow_type, rules.type)
        checks.append(
            Check(
                check="type", column=name, passed=ok, expected=rules.type, observed=str(arrow_type)
            )
        )
        if not ok:
            return checks  # the other rules would only fail confusingly on the wrong type

    def rows_check(check: str, expected: str, mask: Mask) -> _RowCheck:
        return _RowCheck(name, check, expected, mask)

    if rules.not_null:
        checks.append(rows_check("not null", "no nulls", pc.is_null))
    if rules.max_null_share is not None:
        checks.append(
            _NullShare(name, "null share", f"≤ {rules.max_null_share:.2%}", pc.is_null,
                       rules.max_null_share)
        )  # fmt: skip
    if rules.min is not None:
        low = _scalar(rules.min, arrow_type, name, "min")
        checks.append(
            rows_check("min", f"≥ {rules.min}", lambda c: pc.fill_null(pc.less(c, low), False))
        )
    if rules.max is not None:
        high = _scalar(rules.max, arrow_type, name, "max")
        checks.append(
            rows_check("max", f"≤ {rules.max}", lambda c: pc.fill_null(pc.greater(c, high), False))
        )
    if rules.allowed is not None:
        allowed = _value_set(rules.allowed, arrow_type, name)
        shown = ", ".join(str(v) for v in rules.allowed[:10])
        more = " …" if len(rules.allowed) > 10 else ""
        checks.append(
            rows_check(
                "allowed values",
                f"one of {shown}{more}",
                lambda c: pc.and_(pc.is_valid(c), pc.invert(pc.is_in(c, value_set=allowed))),
            )
        )
    if rules.unique:
        checks.append(_Unique(name, "unique", "no value twice", pc.is_null))
    if rules.finite:
        checks.append(rows_check("finite", "no NaN or ±inf", _not_finite))
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


def _not_finite(column: pa.Array) -> pa.Array:
    if pa.types.is_floating(column.type):
        return pc.fill_null(pc.invert(pc.is_finite(column)), False)
    return pa.array(np.zeros(len(column), dtype=bool))


Mask = Callable[[pa.Array], pa.Array]  # a batch's column -> which of its rows fail


class _RowCheck:
    """A rule row by row: the failing rows counted over the batches, the first few kept."""

    def __init__(self, column: str, check: str, expected: str, mask: Mask) -> None:
        self.column, self.check, self.expected, self.mask = column, check, expected, mask
        self.failing = 0
        self.examples: list[dict[str, Any]] = []

    def add(self, batch: pa.RecordBatch, offset: int) -> None:
        mask = self.mask(_plain(batch.column(self.column)))
        failing = int(pc.sum(mask).as_py() or 0)
        self.failing += failing
        if failing and len(self.examples) < EXAMPLES:
            self._keep(batch, offset, mask)

    def needs_second_pass(self) -> bool:
        return False

    def add_examples(self, batch: pa.RecordBatch, offset: int) -> None:
        pass

    def _keep(self, batch: pa.RecordBatch, offset: int, mask: pa.Array) -> None:
        wanted = EXAMPLES - len(self.examples)
        indices = pc.indices_nonzero(mask).slice(0, wanted).to_pylist()
        self.examples.extend(_example(batch, int(i), offset, self.column) for i in indices)

    def result(self) -> Check:
        failing = self.failing
        return Check(
            check=self.check,
            column=self.column,
            passed=failing == 0,
            expected=self.expected,
            observed=(f"{failing} rows fail" if failing > 1 else "1 row fails")
            if failing
            else "every row passes",
            failing=failing,
            examples=self.examples,
        )


class _NullShare(_RowCheck):
    def __init__(self, column: str, check: str, expected: str, mask: Mask, most: float) -> None:
        super().__init__(column, check, expected, mask)
        self.most = most
        self.rows = 0

    def add(self, batch: pa.RecordBatch, offset: int) -> None:
        self.rows += batch.num_rows
        super().add(batch, offset)

    def result(self) -> Check:
        check = super().result()
        share = self.failing / self.rows if self.rows else 0.0
        check.passed = share <= self.most
        check.observed = f"{share:.2%}"
        return check


class _Unique(_RowCheck):
    """Rows whose value another row also holds: every value is counted in the first pass
    (memory as bounded as the column's distinct values), the repeated ones found in a second."""

    def __init__(self, column: str, check: str, expected: str, mask: Mask) -> None:
        super().__init__(column, check, expected, mask)
        self.counts = ValueCounts(capacity=None)
        self._repeated: pa.Array | None = None

    def add(self, batch: pa.RecordBatch, offset: int) -> None:
        self.counts.add(_plain(batch.column(self.column)))

    def repeated(self) -> pa.Array:
        if self._repeated is None:
            counted = self.counts.table()
            twice = counted.filter(pc.greater(counted["count"], 1))
            self._repeated = twice["value"].combine_chunks()
            self.failing = int(pc.sum(twice["count"]).as_py() or 0)
            self.counts = ValueCounts(capacity=None)  # let the counts go before the next pass
        return self._repeated

    def needs_second_pass(self) -> bool:
        return len(self.repeated()) > 0

    def add_examples(self, batch: pa.RecordBatch, offset: int) -> None:
        if len(self.examples) >= EXAMPLES:
            return
        column = _plain(batch.column(self.column))
        mask = pc.fill_null(pc.is_in(column, value_set=self.repeated()), False)
        if pc.any(mask).as_py():
            self._keep(batch, offset, mask)

    def result(self) -> Check:
        self.repeated()
        return super().result()


def _plain(column: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column


def _example(batch: pa.RecordBatch, index: int, offset: int, column: str) -> dict[str, Any]:
    """One failing row: its 0-based index in the version and values (the checked column first,
    a few more)."""
    others = [c for c in batch.schema.names if c != column][: _MAX_SHOWN_COLUMNS - 1]
    values = {name: _json_safe(batch.column(name)[index].as_py()) for name in [column, *others]}
    return {"row": offset + index, "values": values}


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


class _DriftChecks:
    """The drift rules: which columns to compare and their thresholds are settled from the
    schema before reading; each batch adds its values' counts over the reference's bins."""

    def __init__(
        self,
        schema: pa.Schema,
        rules: RuleSet,
        reference: dict[str, Any] | None,
        label: str | None,
        not_compared: frozenset[str],
    ) -> None:
        self.schema, self.rules, self.reference, self.label = schema, rules, reference, label
        self.counters: dict[str, NumericDrift | CategoricalDrift] = {}
        self.names: list[str] = []
        if reference is None:
            return
        by_name = {c["name"]: c for c in reference.get("columns", [])}
        self.by_name = by_name
        if rules.drift is not None and rules.drift.columns is not None:
            names = list(rules.drift.columns)
        elif rules.drift is not None:
            names = [
                c
                for c in schema.names
                if c in by_name and c not in not_compared and not _identifier_like(by_name[c])
            ]
        else:
            names = []
        for name, own in rules.columns.items():  # columns with their own thresholds
            if (own.max_psi is not None or own.max_mean_shift is not None) and name not in names:
                names.append(name)
        self.names = names
        for name in names:
            ref = by_name.get(name)
            if name not in schema.names or ref is None:
                continue
            arrow_type = schema.field(name).type
            if pa.types.is_dictionary(arrow_type):
                arrow_type = arrow_type.value_type
            kind = kind_of(arrow_type)
            if kind == "number" and ref.get("numeric") is not None:
                self.counters[name] = NumericDrift(ref)
            elif kind in ("string", "boolean") and ref.get("categorical") is not None:
                self.counters[name] = CategoricalDrift(ref)
            # a kind drift is not measured for (timestamps, lists, …) gets no counter

    def add(self, batch: pa.RecordBatch) -> None:
        for name, counter in self.counters.items():
            column = _plain(batch.column(name))
            if isinstance(counter, NumericDrift):
                values = column.drop_null().cast(pa.float64(), safe=False)
                counter.add(np.asarray(values.to_numpy(zero_copy_only=False), dtype=float))
                continue
            counted = pc.value_counts(column)
            for value, times in zip(
                counted.field("values").to_pylist(),
                counted.field("counts").to_pylist(),
                strict=True,
            ):
                if value is None:
                    continue
                if isinstance(value, bool):
                    counter.add("true" if value else "false", times)
                else:
                    counter.add(shown_category(value), times)

    def results(self) -> tuple[list[Check], list[ColumnDrift]]:
        rules, label = self.rules, self.label
        if self.reference is None:
            return [
                Check(
                    check="drift",
                    passed=True,
                    expected="a reference to compare with",
                    observed="skipped: there is no earlier version to compare with",
                )
            ], []
        default_psi = rules.drift.max_psi if rules.drift else None
        default_shift = rules.drift.max_mean_shift if rules.drift else None
        checks: list[Check] = []
        drifts: list[ColumnDrift] = []
        for name in self.names:
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
            if name not in self.schema.names or self.by_name.get(name) is None:
                side = "this version" if name not in self.schema.names else label
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
            counter = self.counters.get(name)
            if counter is None:
                continue  # a kind drift is not measured for (timestamps, lists, …)
            drift = counter.result()
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
    """A string column whose every value was distinct (ids, emails): its drift means nothing.

    Every value was distinct exactly when the most frequent one came once; that still holds
    for a profile whose distinct count is an estimate (past `sketches.EXACT_DISTINCT` values)."""
    categorical = reference.get("categorical") or {}
    present = reference.get("count", 0) - reference.get("nulls", 0)
    top = categorical.get("top") or []
    return bool(
        present > 1 and (categorical.get("distinct") == present or top[:1] and top[0]["count"] == 1)
    )
