"""What an ONNX file says about itself, read without onnx or onnxruntime: its graph's inputs and
outputs (names, element types, shapes) and, for a classifier, its class labels.

The registry reads it when an ONNX version is pushed without a signature (the control plane
loads no model library and runs no model code: this walks the protobuf's bytes, skipping
weights without holding them), and the ONNX flavor reads it for the classes of a classifier's
probabilities output. A classifier, as converters write it (skl2onnx, onnxmltools), has two
outputs: the label, then the probabilities, a [n, k] tensor or a sequence of maps (ZipMap);
its classes are the `classlabels_*` of its classifier or ZipMap node.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from stratus.registry.signatures import (
    LABEL_OUTPUT,
    PROBABILITIES_OUTPUT,
    DType,
    Signature,
    TensorSpec,
)

#: ONNX element types (TensorProto.DataType) as signature dtypes.
ELEMENT_DTYPES: dict[int, DType] = {
    1: "float32",  # FLOAT
    2: "int32",  # UINT8
    3: "int32",  # INT8
    4: "int32",  # UINT16
    5: "int32",  # INT16
    6: "int32",  # INT32
    7: "int64",  # INT64
    8: "string",  # STRING
    9: "bool",  # BOOL
    10: "float32",  # FLOAT16
    11: "float64",  # DOUBLE
    12: "int64",  # UINT32
    13: "int64",  # UINT64
}
_CLASS_LABEL_ATTRIBUTES = {
    b"classlabels_int64s": "ints",
    b"classlabels_ints": "ints",
    b"classlabels_strings": "strings",
}
_CLASSIFIER_OPS = frozenset(
    {b"ZipMap", b"LinearClassifier", b"TreeEnsembleClassifier", b"SVMClassifier"}
)
_SMALL = 1 << 20  # messages read whole into memory; bigger ones are walked field by field


@dataclass(frozen=True)
class ValueInfo:
    """One graph input or output: a tensor (element type and shape; a dimension is an int,
    a symbolic name, or None), a sequence of maps (ZipMap's output), or something else."""

    name: str
    kind: str  # "tensor", "sequence-of-maps" or "other"
    elem_type: int = 0  # a tensor's element type; a map's value element type
    shape: tuple[int | str | None, ...] | None = None  # None: the rank is unknown


@dataclass(frozen=True)
class GraphInfo:
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    class_labels: list[int | str] | None

    @property
    def probabilities(self) -> ValueInfo | None:
        """A classifier's probabilities output (its second), when the graph is one."""
        if len(self.outputs) < 2 or self.outputs[0].kind != "tensor":
            return None
        second = self.outputs[1]
        if second.kind == "sequence-of-maps":
            return second
        if second.kind == "tensor" and second.shape is not None and len(second.shape) == 2:
            return second if second.elem_type in (1, 10, 11) else None
        return None

    @property
    def classes(self) -> list[int | str] | None:
        """The classifier's classes in the order of its probabilities' columns (None unless a
        classifier or ZipMap node names them: two outputs alone make no classifier)."""
        if self.probabilities is None or not self.class_labels:
            return None
        return list(self.class_labels)


def read_graph(source: IO[bytes] | bytes) -> GraphInfo:
    """Read an ONNX model's graph description from its bytes or a binary stream.

    Raises:
        ValueError: the bytes are not an ONNX model (a truncated or malformed protobuf, or no
            graph).
    """
    reader = _Reader(io.BytesIO(source) if isinstance(source, bytes) else source)
    graph: GraphInfo | None = None
    while not reader.at_end():
        field, wire = reader.key()
        if field == 7 and wire == 2:  # ModelProto.graph
            size = reader.varint()
            graph = _graph(reader, reader.pos + size)
        else:
            reader.skip_value(wire)
    if graph is None:
        raise ValueError("the file holds no ONNX graph")
    return graph


def signature_of(graph: GraphInfo) -> Signature | None:
    """The signature the graph spells, or None when an input's type has no signature dtype.

    Each input keeps its name, dtype and shape (rows first, -1 for a dimension of any size;
    [n, 1] reads as one value per row); a classifier's outputs are its `label` and its
    `probabilities` with the classes; other models' tensor outputs keep their names.
    """
    inputs = []
    for value in graph.inputs:
        spec = _spec(value)
        if spec is None:
            return None
        inputs.append(spec)
    if not inputs:
        return None
    try:
        return Signature(inputs=inputs, outputs=outputs_of(graph))
    except ValueError:  # e.g. two inputs of one name: the graph is odd, say nothing
        return None


def outputs_of(graph: GraphInfo) -> list[TensorSpec]:
    """The outputs as a signature lists them: a classifier's `label` and `probabilities`
    (with its classes), else each tensor output under its own name."""
    classes = graph.classes
    probabilities = graph.probabilities
    if classes is not None and probabilities is not None:
        label = _spec(graph.outputs[0])
        dtype: DType = "float64" if probabilities.elem_type == 11 else "float32"
        return [
            TensorSpec(name=LABEL_OUTPUT, dtype=label.dtype if label else "string"),
            TensorSpec(
                name=PROBABILITIES_OUTPUT,
                dtype=dtype,
                shape=[-1, len(classes)],
                classes=list(classes),
            ),
        ]
    found = [_spec(value) for value in graph.outputs]
    return [spec for spec in found if spec is not None]


def described(graph: GraphInfo, declared: dict[str, Any] | None) -> dict[str, Any] | None:
    """A version's signature completed from its graph: the graph's whole signature when none
    was declared, the graph's outputs when the declared one lists none; None: nothing to add."""
    if declared is None:
        found = signature_of(graph)
        return None if found is None else found.model_dump(mode="json", exclude_none=True)
    if declared.get("outputs"):
        return None
    outputs = outputs_of(graph)
    if not outputs:
        return None
    try:
        merged = Signature.model_validate(declared).model_copy(update={"outputs": outputs})
        return Signature.model_validate(merged.model_dump()).model_dump(
            mode="json", exclude_none=True
        )
    except ValueError:
        return None


def read_chunks(chunks: Iterable[bytes]) -> GraphInfo:
    """`read_graph` over a file given as chunks (a stored blob, say)."""
    return read_graph(io.BufferedReader(_ChunkStream(iter(chunks)), buffer_size=1 << 16))


class _ChunkStream(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left = memoryview(chunk)
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def _spec(value: ValueInfo) -> TensorSpec | None:
    if value.kind != "tensor" or value.elem_type not in ELEMENT_DTYPES:
        return None
    dims = [-1]
    for dim in (value.shape or ())[1:]:
        dims.append(dim if isinstance(dim, int) and dim > 0 else -1)
    if dims == [-1, 1]:
        dims = [-1]  # a column: one value per row
    return TensorSpec(name=value.name, dtype=ELEMENT_DTYPES[value.elem_type], shape=dims)


# --- the graph ------------------------------------------------------------------------------


def _graph(reader: _Reader, end: int) -> GraphInfo:
    inputs: list[ValueInfo] = []
    outputs: list[ValueInfo] = []
    initializers: set[str] = set()
    labels: list[int | str] | None = None
    while reader.pos < end:
        field, wire = reader.key()
        if wire != 2:
            reader.skip_value(wire)
            continue
        size = reader.varint()
        if field in (11, 12):  # input, output: ValueInfoProto
            info = _value_info(_Reader(io.BytesIO(reader.read(size))), size)
            (inputs if field == 11 else outputs).append(info)
        elif field == 1 and labels is None:  # node
            labels = _node_labels(reader, reader.pos + size)
        elif field == 5:  # initializer: only its name, to drop it from the inputs (IR < 4)
            name = _tensor_name(reader, reader.pos + size)
            if name is not None:
                initializers.add(name)
        else:
            reader.skip(size)
    if reader.pos != end:
        raise ValueError("the ONNX graph is malformed")
    inputs = [i for i in inputs if i.name not in initializers]
    return GraphInfo(inputs, outputs, labels)


def _value_info(reader: _Reader, end: int) -> ValueInfo:
    name = ""
    kind, elem_type, shape = "other", 0, None
    while reader.pos < end:
        field, wire = reader.key()
        if field == 1 and wire == 2:
            name = reader.read(reader.varint()).decode("utf-8", errors="replace")
        elif field == 2 and wire == 2:  # type: TypeProto
            kind, elem_type, shape = _type(_fields(reader.read(reader.varint())))
        else:
            reader.skip_value(wire)
    return ValueInfo(name, kind, elem_type, shape)


def _type(fields: dict[int, list[Any]]) -> tuple[str, int, tuple[int | str | None, ...] | None]:
    if 1 in fields:  # tensor_type
        tensor = _fields(fields[1][0])
        elem_type = int(tensor.get(1, [0])[0])
        shape = None
        if 2 in tensor:
            shape = tuple(_dimension(_fields(d)) for d in _fields(tensor[2][0]).get(1, []))
        return "tensor", elem_type, shape
    if 4 in fields:  # sequence_type: ZipMap gives a sequence of maps
        element = _fields(_fields(fields[4][0]).get(1, [b""])[0])
        if 5 in element:  # map_type: key_type 1, value_type 2 (a TypeProto of a tensor)
            value = _fields(_fields(element[5][0]).get(2, [b""])[0])
            elem = _fields(value[1][0]).get(1, [0])[0] if 1 in value else 0
            return "sequence-of-maps", int(elem), None
    return "other", 0, None


def _dimension(fields: dict[int, list[Any]]) -> int | str | None:
    if 1 in fields:
        return _signed(int(fields[1][0]))
    if 2 in fields:
        return bytes(fields[2][0]).decode("utf-8", errors="replace")
    return None


def _node_labels(reader: _Reader, end: int) -> list[int | str] | None:
    """A classifier or ZipMap node's class labels (None for any other node)."""
    op_type = b""
    labels: list[int | str] | None = None
    while reader.pos < end:
        field, wire = reader.key()
        if field == 4 and wire == 2:
            op_type = reader.read(reader.varint())
        elif field == 5 and wire == 2 and op_type in _CLASSIFIER_OPS and labels is None:
            size = reader.varint()
            labels = _attribute_labels(reader, reader.pos + size)
        else:
            reader.skip_value(wire)
    return labels if op_type in _CLASSIFIER_OPS else None


def _attribute_labels(reader: _Reader, end: int) -> list[int | str] | None:
    name = b""
    ints: list[int] = []
    strings: list[str] = []
    while reader.pos < end:
        field, wire = reader.key()
        if field == 1 and wire == 2:
            name = reader.read(reader.varint())
            if name not in _CLASS_LABEL_ATTRIBUTES:
                reader.skip(end - reader.pos)  # not class labels: skip its (large) values
                return None
        elif field == 8 and wire == 0:
            ints.append(_signed(reader.varint()))
        elif field == 8 and wire == 2:  # packed
            packed = _Reader(io.BytesIO(reader.read(reader.varint())))
            while not packed.at_end():
                ints.append(_signed(packed.varint()))
        elif field == 9 and wire == 2:
            strings.append(reader.read(reader.varint()).decode("utf-8", errors="replace"))
        else:
            reader.skip_value(wire)
    kind = _CLASS_LABEL_ATTRIBUTES.get(name)
    if kind == "ints" and ints:
        return list(ints)
    if kind == "strings" and strings:
        return list(strings)
    return None


def _tensor_name(reader: _Reader, end: int) -> str | None:
    name = None
    while reader.pos < end:
        field, wire = reader.key()
        if field == 8 and wire == 2:
            name = reader.read(reader.varint()).decode("utf-8", errors="replace")
            reader.skip(end - reader.pos)  # the rest is data
            break
        reader.skip_value(wire)
    return name


# --- protobuf's wire format -------------------------------------------------------------------


class _Reader:
    """Protobuf fields from a binary stream, tracking the position; skips by seeking when the
    stream can, else by reading and dropping."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._seekable = stream.seekable()
        self.pos = 0
        self._peeked: bytes | None = None

    def at_end(self) -> bool:
        if self._peeked is None:
            self._peeked = self._stream.read(1)
        return not self._peeked

    def read(self, n: int) -> bytes:
        parts = []
        if self._peeked and n > 0:
            parts.append(self._peeked)
            n -= 1
            self._peeked = None
        while n > 0:
            chunk = self._stream.read(min(n, _SMALL))
            if not chunk:
                raise ValueError("the ONNX file is truncated")
            parts.append(chunk)
            n -= len(chunk)
        data = b"".join(parts)
        self.pos += len(data)
        return data

    def skip(self, n: int) -> None:
        if n < 0:
            raise ValueError("the ONNX file is malformed")
        if self._peeked and n > 0:
            self._peeked = None
            self.pos += 1
            n -= 1
        if self._seekable and n > _SMALL:
            self._stream.seek(n, io.SEEK_CUR)
            self.pos += n
            return
        while n > 0:
            chunk = self._stream.read(min(n, _SMALL))
            if not chunk:
                raise ValueError("the ONNX file is truncated")
            n -= len(chunk)
            self.pos += len(chunk)

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.read(1)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ValueError("the ONNX file is malformed (a varint runs on)")

    def key(self) -> tuple[int, int]:
        key = self.varint()
        return key >> 3, key & 7

    def skip_value(self, wire: int) -> None:
        if wire == 0:
            self.varint()
        elif wire == 1:
            self.skip(8)
        elif wire == 2:
            self.skip(self.varint())
        elif wire == 5:
            self.skip(4)
        else:
            raise ValueError(f"the ONNX file is malformed (wire type {wire})")


def _fields(data: bytes) -> dict[int, list[Any]]:
    """A small message's fields: varints as ints, length-delimited ones as bytes."""
    reader = _Reader(io.BytesIO(data))
    found: dict[int, list[Any]] = {}
    while not reader.at_end():
        field, wire = reader.key()
        if wire == 0:
            value: Any = reader.varint()
        elif wire == 2:
            value = reader.read(reader.varint())
        else:
            reader.skip_value(wire)
            continue
        found.setdefault(field, []).append(value)
    return found


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value
