"""Rows of a request as named numpy columns, checked against the model version's signature.

The replica runtime turns each request into a `Batch` (`from_rows`, `from_columns`,
`from_tensor`), may merge several with `Batch.concat` for adaptive batching, hands the batch to a
flavor's `predict`, and cuts the predictions back per request with `split_rows`. Errors name the
offending input and row (rows count from 0, as in the request's JSON array).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from itertools import accumulate, pairwise
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from stratus.core.errors import InvalidInput
from stratus.registry.signatures import Signature, TensorSpec, infer_signature, key_problem

_NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "int64": np.dtype(np.int64),
    "int32": np.dtype(np.int32),
    "bool": np.dtype(np.bool_),
    "string": np.dtype(object),
}


class Batch:
    """A batch of rows: one numpy array per input, rows first, in signature order.

    A tabular input is a 1-D column; a tensor input holds an array per row (a 2-D column for
    shape [-1, n]). Build batches with the `from_*` constructors, which validate; the plain
    constructor trusts its arrays.
    """

    __slots__ = ("_columns", "_names", "_n_rows", "_base", "_matrices")

    def __init__(self, columns: Mapping[str, np.ndarray]) -> None:
        if not columns:
            raise ValueError("a batch needs at least one column")
        n_rows: int | None = None
        for name, column in columns.items():
            if not isinstance(column, np.ndarray) or column.ndim == 0:
                raise TypeError(f"column {name!r} is not an array of rows")
            if n_rows is None:
                n_rows = len(column)
            elif len(column) != n_rows:
                raise ValueError(f"column {name!r} has {len(column)} rows, the first has {n_rows}")
        self._columns: dict[str, np.ndarray] | None = dict(columns)
        self._names = tuple(columns)
        self._n_rows = n_rows or 0
        self._base: np.ndarray | None = None  # the 2-D array every column is a view of, if any
        self._matrices: dict[Any, np.ndarray] = {}

    @classmethod
    def _from_matrix(cls, names: Sequence[str], matrix: np.ndarray) -> Batch:
        # Columns are views cut lazily: a one-row request should not pay for 30 slices.
        batch = cls.__new__(cls)
        batch._columns = None
        batch._names = tuple(names)
        batch._n_rows = matrix.shape[0]
        batch._base = matrix
        batch._matrices = {matrix.dtype: matrix, matrix.dtype.type: matrix}
        return batch

    # --- reading ------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def n_rows(self) -> int:
        return self._n_rows

    def __len__(self) -> int:
        return self._n_rows

    @property
    def columns(self) -> Mapping[str, np.ndarray]:
        if self._columns is None:
            base = self._base
            assert base is not None
            self._columns = {name: base[:, j] for j, name in enumerate(self._names)}
        return self._columns

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __repr__(self) -> str:
        return f"Batch({self._n_rows} rows: {', '.join(self._names)})"

    def matrix(self, dtype: DTypeLike = np.float64) -> np.ndarray:
        """The rows as one 2-D array (rows × features), computed once per dtype.

        A single tensor column of shape [n, k] is returned as is (cast to `dtype`). With
        `dtype=object` string columns are allowed too (for pipelines that encode them).

        Raises:
            InvalidInput: a column holds strings (and `dtype` is numeric), or holds a tensor
                that cannot sit in a matrix.
        """
        cached = self._matrices.get(dtype)
        if cached is not None:
            return cached
        if self._base is not None:
            matrix = self._base.astype(dtype, copy=False)
        else:
            columns = self.columns
            numeric = np.dtype(dtype) != object
            for name, column in columns.items():
                if numeric and column.dtype.kind not in "biuf":
                    raise InvalidInput(
                        f"input {name!r} holds {_kind(column)}; the model needs numbers"
                    )
                if column.ndim > 2 or (column.ndim == 2 and len(columns) > 1):
                    raise InvalidInput(
                        f"input {name!r} holds a tensor per row; it cannot be a matrix column"
                    )
            values = list(columns.values())
            stacked = values[0] if values[0].ndim == 2 else np.column_stack(values)
            matrix = stacked.astype(dtype, copy=False)
        self._matrices[dtype] = matrix
        return matrix

    def frame(self) -> Any:
        """The rows as a pandas DataFrame (a copy), one column per input. Imports pandas."""
        import pandas as pd

        if self._base is not None:
            return pd.DataFrame(self._base, columns=_column_index(self._names))
        for name, column in self.columns.items():
            if column.ndim != 1:
                raise InvalidInput(f"input {name!r} holds a tensor per row; a table cannot hold it")
        return pd.DataFrame(dict(self.columns), columns=_column_index(self._names))

    def select(self, names: Sequence[str]) -> Batch:
        """A batch of the columns `names`, in that order (views, no copies)."""
        columns = self.columns
        missing = [name for name in names if name not in columns]
        if missing:
            raise InvalidInput(f"missing input {missing[0]!r}")
        return Batch({name: columns[name] for name in names})

    # --- adaptive batching --------------------------------------------------------------------

    @classmethod
    def concat(cls, batches: Sequence[Batch]) -> Batch:
        """One batch holding the rows of `batches`, in order (all share the same inputs)."""
        if not batches:
            raise ValueError("nothing to concatenate")
        first = batches[0]
        if len(batches) == 1:
            return first
        for other in batches[1:]:
            if other._names != first._names:
                raise ValueError(f"cannot concatenate {other!r} with {first!r}")
        bases = [b._base for b in batches if b._base is not None]
        if len(bases) == len(batches) and all(base.dtype == bases[0].dtype for base in bases):
            return cls._from_matrix(first._names, np.concatenate(bases))
        return cls(
            {name: np.concatenate([b.columns[name] for b in batches]) for name in first._names}
        )

    def split(self, sizes: Sequence[int]) -> list[Batch]:
        """Cut the batch into consecutive batches of `sizes` rows (views, no copies)."""
        bounds = _bounds(sizes, self._n_rows, "rows")
        if self._base is not None:
            return [Batch._from_matrix(self._names, self._base[a:b]) for a, b in bounds]
        return [Batch({n: c[a:b] for n, c in self.columns.items()}) for a, b in bounds]

    # --- building from a request --------------------------------------------------------------

    @classmethod
    def from_rows(
        cls, rows: Sequence[Sequence[Any] | Mapping[str, Any]], signature: Signature | None = None
    ) -> Batch:
        """Rows given as lists of values (in input order) or as objects keyed by input name.

        For a single-tensor signature each row is one tensor (e.g. a list of 30 values).
        Without a signature one is inferred from the rows (lists get inputs f0..fN-1).

        Raises:
            InvalidInput: naming the row and input that do not fit the signature.
        """
        if not isinstance(rows, Sequence) or isinstance(rows, str | bytes) or not rows:
            raise InvalidInput("the request holds no rows (expected a non-empty list of rows)")
        named = isinstance(rows[0], Mapping)
        kind = type(rows[0])
        # JSON gives all lists or all dicts: check that at C speed, explain any other case slowly.
        if kind not in (list, dict) or not all(type(row) is kind for row in rows):
            for i, row in enumerate(rows):
                if named != isinstance(row, Mapping) or not (named or _is_list(row)):
                    raise InvalidInput(
                        f"row {i} is {_json_type(row)}; every row must be "
                        + ("an object, like row 0" if named else "a list of values, like row 0")
                    )
        if signature is None:
            signature = _infer_from_rows(rows, named)
        names = signature.input_names
        values: list[Any] = list(rows)
        if named:
            expected = signature.input_set
            for i, row in enumerate(values):
                if row.keys() != expected:
                    raise InvalidInput(f"row {i}: {key_problem(row, names)}")
            values = [[row[name] for name in names] for row in values]
        if signature.is_tensor:
            spec = signature.inputs[0]
            return cls({spec.name: _convert(spec, [row[0] for row in values] if named else values)})
        width = len(names)
        if signature.common_dtype is not None:
            matrix = _numeric_matrix(values, _NUMPY_DTYPES[signature.common_dtype])
            if matrix is not None and matrix.shape[1] == width:
                return cls._from_matrix(names, matrix)
        for i, row in enumerate(values):
            if len(row) != width:
                raise InvalidInput(
                    f"row {i} has {_values(len(row))}, the signature has {width} inputs"
                )
        # The slow path: column by column, so that an error can name the input and the row.
        return cls(
            {
                spec.name: _convert(spec, [row[j] for row in values])
                for j, spec in enumerate(signature.inputs)
            }
        )

    @classmethod
    def from_columns(
        cls, columns: Mapping[str, Sequence[Any] | np.ndarray], signature: Signature | None = None
    ) -> Batch:
        """Columns given as input name → values, one value per row.

        Raises:
            InvalidInput: an input is missing or unknown, the columns differ in length, or a
                value does not fit its input (naming input and row).
        """
        if not isinstance(columns, Mapping) or not columns:
            raise InvalidInput("the request holds no columns (expected an object of name → values)")
        for name, values in columns.items():
            if not (isinstance(values, np.ndarray) or _is_list(values)):
                raise InvalidInput(f"input {name!r} must be a list of values, one per row")
        if signature is None:
            signature = infer_signature({name: list(v) for name, v in columns.items()})
        if columns.keys() != signature.input_set:
            raise InvalidInput(key_problem(columns, signature.input_names))
        first = signature.input_names[0]
        n_rows = len(columns[first])
        converted: dict[str, np.ndarray] = {}
        for spec in signature.inputs:
            values = columns[spec.name]
            if len(values) != n_rows:
                raise InvalidInput(
                    f"input {spec.name!r} has {_values(len(values))}, input {first!r} has {n_rows}"
                )
            converted[spec.name] = _convert(spec, values)
        if n_rows == 0:
            raise InvalidInput("the request holds no rows")
        return cls(converted)

    @classmethod
    def from_tensor(
        cls, name: str, array: Sequence[Any] | np.ndarray, signature: Signature | None = None
    ) -> Batch:
        """One tensor for a signature with a single input (shape [-1, n] for a 2-D tensor).

        The tensor stays one column; `matrix()` returns it as is.

        Raises:
            InvalidInput: the signature has other inputs, or the tensor's shape or values do not
                fit (naming the row).
        """
        if signature is None:
            try:
                tensor = np.asarray(array)
            except ValueError:
                raise InvalidInput(f"input {name!r}: rows have different shapes") from None
            if tensor.ndim == 0 or len(tensor) == 0:
                raise InvalidInput(f"input {name!r} holds no rows")
            return cls({name: tensor})
        names = signature.input_names
        if name not in names:
            raise InvalidInput(f"unknown input {name!r}; the signature has {_listing(names)}")
        if len(names) != 1:
            raise InvalidInput(
                f"input {name!r} alone is not enough: the signature has {_listing(names)}"
            )
        if _is_list(array) and not array:
            raise InvalidInput(f"input {name!r} holds no rows")
        tensor = _convert(signature.inputs[0], array)
        if len(tensor) == 0:
            raise InvalidInput(f"input {name!r} holds no rows")
        return cls({name: tensor})


@lru_cache(maxsize=256)
def _column_index(names: tuple[str, ...]) -> Any:
    # An object-dtype Index, built once per signature: pandas builds frames on it about twice
    # as fast as on its default string Index, and scikit-learn checks its names faster too.
    import pandas as pd

    return pd.Index(names, dtype=object)


def split_rows(predictions: Any, sizes: Sequence[int]) -> list[Any]:
    """Cut predictions for a concatenated batch back into one part per request.

    Works for numpy arrays (giving views), lists, tuples and dicts of those.
    """
    if isinstance(predictions, Mapping):
        parts = {key: split_rows(value, sizes) for key, value in predictions.items()}
        return [{key: part[i] for key, part in parts.items()} for i in range(len(sizes))]
    bounds = _bounds(sizes, len(predictions), "predictions")
    return [predictions[a:b] for a, b in bounds]


def _bounds(sizes: Sequence[int], total: int, what: str) -> list[tuple[int, int]]:
    if sum(sizes) != total or any(size < 0 for size in sizes):
        raise ValueError(f"cannot cut {total} {what} into parts of {list(sizes)}")
    return list(pairwise(accumulate(sizes, initial=0)))


# --- conversion and its error messages -------------------------------------------------------


def _numeric_matrix(rows: Sequence[Any], dtype: np.dtype[Any]) -> np.ndarray | None:
    """All rows at once when every value plainly fits `dtype`; None sends them the slow way."""
    try:
        array = np.asarray(rows)
    except (ValueError, TypeError):
        return None
    kind = array.dtype.kind
    if array.ndim != 2 or kind not in "biuf":
        return None
    if dtype.kind == "f":
        return array.astype(dtype, copy=False)
    if dtype.kind == "b":
        return array if kind == "b" else None
    if kind in "iu" and array.size:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            return None
    return array.astype(dtype, copy=False) if kind in "biu" else None


def _convert(spec: TensorSpec, values: Any) -> np.ndarray:
    """One input's values, one per row, as an array of the spec's dtype and shape."""
    target = _NUMPY_DTYPES[spec.dtype]
    if spec.dtype == "string":
        return _strings(spec, values)
    try:
        array = values if isinstance(values, np.ndarray) else np.asarray(values)
    except (ValueError, TypeError):
        raise InvalidInput(_shape_problem(spec, values)) from None
    _check_shape(spec, array, values)
    kind = array.dtype.kind
    if kind not in "biuf" or (target.kind == "b" and kind != "b"):
        # Look at the values as given: numpy would have turned 2 into '2' next to a string.
        if not isinstance(values, np.ndarray):
            array = np.asarray(values, dtype=object)
        bad = _first_bad(array, _ACCEPTS[spec.dtype])
        if bad is not None:
            raise _value_error(spec, *bad)
        flat = [np.nan if v is None else v for v in array.ravel().tolist()]
        return np.array(flat, dtype=target).reshape(array.shape)
    if target.kind in "iu":
        ok = np.ones(array.shape, dtype=bool)
        if kind == "f":
            ok = np.isfinite(array) & (array == np.trunc(array))
        info = np.iinfo(target)
        with np.errstate(invalid="ignore"):
            ok &= (array >= info.min) & (array <= info.max)
        if not ok.all():
            raise _value_error(spec, *_first_where(array, ok))
    return array.astype(target, copy=False)


def _strings(spec: TensorSpec, values: Any) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=object)
    except ValueError:
        raise InvalidInput(_shape_problem(spec, values)) from None
    _check_shape(spec, array, values)
    ok = np.fromiter((isinstance(v, str) for v in array.ravel()), dtype=bool, count=array.size)
    if not ok.all():
        raise _value_error(spec, *_first_where(array, ok.reshape(array.shape)))
    return array


def _check_shape(spec: TensorSpec, array: np.ndarray, values: Any) -> None:
    if array.ndim != len(spec.shape):
        raise InvalidInput(_shape_problem(spec, values))
    for want, got in zip(spec.shape[1:], array.shape[1:], strict=True):
        if want not in (-1, got):
            raise InvalidInput(
                f"input {spec.name!r}: expected rows of shape {spec.shape[1:]}, "
                f"got rows of shape {list(array.shape[1:])}"
            )


def _shape_problem(spec: TensorSpec, values: Any) -> str:
    if spec.is_scalar:
        for i, value in enumerate(values):
            if np.ndim(value) != 0:
                got = _show(value)
                return (
                    f"input {spec.name!r}: expected one {spec.dtype} per row, got {got} in row {i}"
                )
        return f"input {spec.name!r}: expected one {spec.dtype} per row"
    want = len(spec.shape) - 1
    for i, value in enumerate(values):
        try:
            shape = np.shape(value)
        except ValueError:  # ragged inside the row
            return f"input {spec.name!r}: row {i} is not a regular array of shape {spec.shape[1:]}"
        if len(shape) != want or any(
            w not in (-1, g) for w, g in zip(spec.shape[1:], shape, strict=False)
        ):
            got = (
                "a single value"
                if not shape
                else _values(shape[0])
                if len(shape) == 1
                else f"shape {list(shape)}"
            )
            want_shape = spec.shape[1:]
            return f"input {spec.name!r}: expected rows of shape {want_shape}, got {got} in row {i}"
    return f"input {spec.name!r}: rows have different shapes"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating | np.bool_)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int | np.integer | np.bool_) or (
        isinstance(value, float | np.floating) and float(value).is_integer()
    )


_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    "float64": lambda v: v is None or _is_number(v),
    "float32": lambda v: v is None or _is_number(v),
    "int64": _is_integer,
    "int32": _is_integer,
    "bool": lambda v: isinstance(v, bool | np.bool_),
}


def _first_bad(array: np.ndarray, accepts: Callable[[Any], bool]) -> tuple[int, Any] | None:
    for i, row in enumerate(array.reshape(len(array), -1).tolist()):
        for value in row:
            if not accepts(value):
                return i, value
    return None


def _first_where(array: np.ndarray, ok: np.ndarray) -> tuple[int, Any]:
    rows_ok = ok.reshape(len(array), -1)
    i = int(np.flatnonzero(~rows_ok.all(axis=1))[0])
    value = array.reshape(len(array), -1)[i][~rows_ok[i]][0]
    return i, value


def _value_error(spec: TensorSpec, row: int, value: Any) -> InvalidInput:
    return InvalidInput(
        f"input {spec.name!r}: expected {spec.dtype}, got {_show(value)} in row {row}"
    )


def _show(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(column: np.ndarray) -> str:
    return "strings" if column.dtype.kind in "OUS" else f"values of type {column.dtype}"


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _json_type(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if _is_list(value):
        return "a list"
    return "a string" if isinstance(value, str) else "a single value"


def _values(n: int) -> str:
    return f"{n} value" if n == 1 else f"{n} values"


def _listing(names: Sequence[str]) -> str:
    return "input " + repr(names[0]) if len(names) == 1 else "inputs " + ", ".join(map(repr, names))


def _infer_from_rows(rows: Sequence[Any], named: bool) -> Signature:
    if named:
        names = list(rows[0])
        for i, row in enumerate(rows):
            if row.keys() != set(names):
                raise InvalidInput(f"row {i}: {key_problem(row, names)}")
        return infer_signature({name: [row[name] for row in rows] for name in names})
    width = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InvalidInput(f"row {i} has {_values(len(row))}, row 0 has {width}")
    if width == 0:
        raise InvalidInput("row 0 holds no values")
    return infer_signature({f"f{j}": [row[j] for row in rows] for j in range(width)})
