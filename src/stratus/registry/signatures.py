"""What a model version takes and returns: named, typed tensors, stored with the version as JSON.

A signature is declared when a version is pushed (or inferred from a sample of the training data
with `infer_signature`); `stratus.registry.batches` validates every request against it before a
flavor sees the data. This module needs numpy, pandas or pyarrow only inside `infer_signature`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from stratus.core.errors import InvalidInput

if TYPE_CHECKING:
    import numpy as np

DType = Literal["float64", "float32", "int64", "int32", "bool", "string"]
DTYPES: tuple[str, ...] = get_args(DType)


ClassLabel = bool | int | float | str

#: The names of a classifier's two outputs in signatures and v2 answers: the predicted class,
#: and one probability per class (`classes` lists the classes in column order).
LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"


class TensorSpec(BaseModel):
    """One named input or output. `shape` counts rows first; -1 means any size.

    A classifier's probabilities output lists its classes, in the order of its columns."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    dtype: DType
    shape: list[int] = Field(default_factory=lambda: [-1], min_length=1, max_length=8)
    classes: list[ClassLabel] | None = Field(None, max_length=100_000)

    @model_serializer(mode="wrap")
    def _without_absent_classes(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and data.get("classes", 0) is None:
            del data["classes"]  # inputs and most outputs have none: stored JSON as before
        return data

    @field_validator("shape")
    @classmethod
    def _dimensions(cls, shape: list[int]) -> list[int]:
        if any(d == 0 or d < -1 for d in shape):
            raise ValueError(f"dimensions are positive sizes or -1 (any), got {shape}")
        return shape

    @model_validator(mode="after")
    def _one_class_per_column(self) -> TensorSpec:
        if self.classes is not None:
            if len(self.shape) != 2 or self.shape[1] not in (-1, len(self.classes)):
                raise ValueError(
                    f"{self.name!r} lists {len(self.classes)} classes: its shape must be "
                    f"[-1, {len(self.classes)}], got {self.shape}"
                )
            names = [class_name(c) for c in self.classes]
            if len(set(names)) != len(names):
                raise ValueError(f"{self.name!r} lists the same class twice")
        return self

    @property
    def is_scalar(self) -> bool:
        """True when each row holds one value (a column of a table)."""
        return len(self.shape) == 1


class Signature(BaseModel):
    """The inputs a model version accepts and the outputs it returns, in order."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(default_factory=list)
    description: str = Field("", max_length=10_000)

    @model_validator(mode="after")
    def _unique_names(self) -> Signature:
        for kind, specs in (("input", self.inputs), ("output", self.outputs)):
            seen: set[str] = set()
            for spec in specs:
                if spec.name in seen:
                    raise ValueError(f"two {kind}s are named {spec.name!r}")
                seen.add(spec.name)
        return self

    @cached_property
    def input_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)

    @cached_property
    def input_set(self) -> frozenset[str]:
        return frozenset(self.input_names)

    @property
    def is_tabular(self) -> bool:
        """True when every input holds one value per row (the columns of a table)."""
        return all(spec.is_scalar for spec in self.inputs)

    @property
    def is_tensor(self) -> bool:
        """True when there is a single input holding an array per row (e.g. shape [-1, 30])."""
        return len(self.inputs) == 1 and not self.inputs[0].is_scalar

    @property
    def classes(self) -> list[ClassLabel] | None:
        """The classes of the model's probabilities output, when its outputs list them."""
        return next((spec.classes for spec in self.outputs if spec.classes is not None), None)

    @cached_property
    def common_dtype(self) -> str | None:
        """The dtype every input shares when the signature is tabular and numeric, else None."""
        dtypes = {spec.dtype for spec in self.inputs}
        if not self.is_tabular or len(dtypes) != 1:
            return None
        (dtype,) = dtypes
        return None if dtype == "string" else dtype


def class_name(label: Any) -> str:
    """A class label as text: the key of its probability in an answer, and the name a monitor
    uses for it (`probability:NAME`). Integral floats read as integers (1.0 is "1"), booleans
    as "true"/"false", numpy scalars as their Python values."""
    if hasattr(label, "item") and not isinstance(label, str | bytes):
        label = label.item()
    if isinstance(label, bytes):
        label = label.decode("utf-8", errors="replace")
    if isinstance(label, bool):
        return "true" if label else "false"
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def classifier_outputs(
    classes: Sequence[Any], label_dtype: DType | None = None
) -> list[TensorSpec]:
    """The outputs of a classifier with `classes`: its label, and its probabilities."""
    values: list[ClassLabel] = [_plain_label(c) for c in classes]
    if label_dtype is None:
        label_dtype = _label_dtype(values)
    return [
        TensorSpec(name=LABEL_OUTPUT, dtype=label_dtype),
        TensorSpec(
            name=PROBABILITIES_OUTPUT, dtype="float64", shape=[-1, len(values)], classes=values
        ),
    ]


def _plain_label(label: Any) -> ClassLabel:
    if hasattr(label, "item") and not isinstance(label, str | bytes):
        label = label.item()
    if isinstance(label, bytes):
        label = label.decode("utf-8", errors="replace")
    if isinstance(label, bool | int | float | str):
        return label
    return str(label)


def _label_dtype(values: Sequence[ClassLabel]) -> DType:
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "float64"
    return "string"


# --- inference from a sample ------------------------------------------------------------------


def infer_signature(sample: Any, predictions: Any = None, classes: Any = None) -> Signature:
    """Describe the inputs of `sample` (and the outputs in `predictions`, if given).

    Args:
        sample: a pandas DataFrame, a pyarrow Table, a dict of columns (lists or arrays), a list
            of row dicts, or a 2-D numpy array (whose columns are named f0..fN-1).
        predictions: what the model returned for the sample: an array, a list, a dict of arrays
            or a pandas DataFrame/Series. Outputs are left empty when omitted.
        classes: a classifier's classes, in the order of its probabilities' columns (e.g.
            `model.classes_`): the outputs are then its `label` and its `probabilities`.

    Returns:
        The signature, one scalar input per column (a 2-D column of a dict becomes a tensor).

    Raises:
        InvalidInput: the sample is of an unknown kind or holds a column of an unsupported type.
    """
    inputs = _specs_of(sample, what="sample", array_name="f")
    outputs = [] if predictions is None else _specs_of(predictions, what="predictions")
    if classes is not None:
        labels = list(classes)
        if not labels:
            raise InvalidInput("a classifier needs at least one class")
        outputs = classifier_outputs(labels)
    return Signature(inputs=inputs, outputs=outputs)


def _specs_of(data: Any, *, what: str, array_name: str | None = None) -> list[TensorSpec]:
    import numpy as np

    pd = sys.modules.get("pandas")
    pa = sys.modules.get("pyarrow")
    if pd is not None and isinstance(data, pd.DataFrame):
        return [_pandas_spec(str(name), data[name]) for name in data.columns]
    if pd is not None and isinstance(data, pd.Series):
        return [_pandas_spec(str(data.name or "prediction"), data)]
    if pa is not None and isinstance(data, pa.Table):
        return [_arrow_spec(name, data.schema.field(name).type) for name in data.column_names]
    if isinstance(data, Mapping):
        return [_array_spec(str(k), _as_array(f"column {k!r}", v)) for k, v in data.items()]
    if isinstance(data, np.ndarray) and array_name is not None:
        if data.ndim != 2:
            raise InvalidInput(
                f"the {what} is a {data.ndim}-D array; pass a 2-D array (rows × columns), "
                "a DataFrame or a dict of columns"
            )
        return [_array_spec(f"{array_name}{j}", data[:, j]) for j in range(data.shape[1])]
    if isinstance(data, np.ndarray):
        return [_array_spec("prediction", data)]
    if isinstance(data, Sequence) and not isinstance(data, str | bytes) and data:
        if all(isinstance(row, Mapping) for row in data):
            return _specs_of(_rows_to_columns(data, what), what=what)
        # a list of rows is read like the 2-D array it spells; a list of predictions, as 1-D
        array = _as_array(f"the {what}", data)
        return _specs_of(array, what=what, array_name=array_name)
    raise InvalidInput(
        f"cannot infer a signature from the {what} ({type(data).__name__}); pass a DataFrame, "
        "a pyarrow Table, a dict of columns, a list of row dicts or a 2-D numpy array"
    )


def _rows_to_columns(rows: Sequence[Mapping[str, Any]], what: str) -> dict[str, list[Any]]:
    names = list(rows[0])
    for i, row in enumerate(rows):
        if row.keys() != set(names):
            raise InvalidInput(f"{what} row {i}: {key_problem(row, names)}")
    return {name: [row[name] for row in rows] for name in names}


def key_problem(given: Mapping[str, Any], names: Sequence[str]) -> str:
    """Say which names `given` lacks and which it has too many, e.g. "missing input 'age'"."""
    missing = [name for name in names if name not in given]
    known = set(names)
    unknown = [name for name in given if name not in known]
    problems = [f"missing input {missing[0]!r}"] if missing else []
    if unknown:
        problems.append(f"unknown input {unknown[0]!r}")
    return ", ".join(problems)


def _as_array(label: str, column: Any) -> np.ndarray:
    import numpy as np

    try:
        array = np.asarray(column)
    except ValueError:
        raise InvalidInput(f"{label}: rows have different shapes") from None
    if array.ndim == 0:
        raise InvalidInput(f"{label} is a single value, not a column")
    if array.dtype.kind in "US" and not isinstance(column, np.ndarray):
        # numpy turns [1, "x"] into ["1", "x"]: look at the values as given
        values = np.asarray(column, dtype=object).ravel().tolist()
        if not all(isinstance(v, str) for v in values):
            raise InvalidInput(f"{label} mixes strings with other values")
    return array


_NUMPY_DTYPES: dict[str, dict[int, DType]] = {
    "f": {2: "float32", 4: "float32", 8: "float64"},
    "i": {1: "int32", 2: "int32", 4: "int32", 8: "int64"},
    "u": {1: "int32", 2: "int32", 4: "int64", 8: "int64"},
}


def _array_spec(name: str, array: np.ndarray) -> TensorSpec:
    kind = array.dtype.kind
    dtype: DType | None
    if kind == "b":
        dtype = "bool"
    elif kind in "fiu":
        dtype = _NUMPY_DTYPES[kind].get(array.dtype.itemsize)
    elif kind in "USTO" and all(isinstance(v, str) for v in array.ravel().tolist()):
        dtype = "string"
    else:
        dtype = None
    if dtype is None:
        raise InvalidInput(f"column {name!r} has type {array.dtype}, which a signature cannot hold")
    shape = [-1, *(int(d) for d in array.shape[1:])]
    return TensorSpec(name=name, dtype=dtype, shape=shape)


def _pandas_spec(name: str, column: Any) -> TensorSpec:
    import pandas as pd

    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _pandas_spec(name, column.astype(dtype.categories.dtype))
    if pd.api.types.is_bool_dtype(dtype):
        return TensorSpec(name=name, dtype="bool")
    if pd.api.types.is_string_dtype(dtype):
        values = column.dropna()
        if all(isinstance(v, str) for v in values.tolist()):
            return TensorSpec(name=name, dtype="string")
    elif pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        import numpy as np

        # nullable pandas dtypes (Int64, Float32, ...) carry the numpy dtype they stand for
        return _array_spec(name, np.empty(0, dtype=getattr(dtype, "numpy_dtype", dtype)))
    raise InvalidInput(f"column {name!r} has type {dtype}, which a signature cannot hold")


def _arrow_spec(name: str, type_: Any) -> TensorSpec:
    import pyarrow as pa

    dtype: DType | None = None
    if pa.types.is_boolean(type_):
        dtype = "bool"
    elif pa.types.is_floating(type_):
        dtype = "float64" if type_.bit_width == 64 else "float32"
    elif pa.types.is_integer(type_):
        wide = type_.bit_width == 64 or (
            type_.bit_width == 32 and pa.types.is_unsigned_integer(type_)
        )
        dtype = "int64" if wide else "int32"
    elif pa.types.is_string(type_) or pa.types.is_large_string(type_) or _is_string_view(type_):
        dtype = "string"
    elif pa.types.is_dictionary(type_):
        return _arrow_spec(name, type_.value_type)
    if dtype is None:
        raise InvalidInput(f"column {name!r} has type {type_}, which a signature cannot hold")
    return TensorSpec(name=name, dtype=dtype)


def _is_string_view(type_: Any) -> bool:
    import pyarrow as pa

    check = getattr(pa.types, "is_string_view", None)  # pyarrow >= 16
    return bool(check(type_)) if check is not None else False
