"""The Open Inference Protocol's binary tensor data extension, both ways.

A request may carry tensors as raw bytes after its JSON header: the HTTP header
`Inference-Header-Content-Length` gives the JSON's length, and each binary input says its size
in `parameters.binary_data_size`. Numbers are little-endian in the datatype's own size, BOOL is
one byte (0 or 1), and BYTES elements are each a 4-byte little-endian length and the bytes.
The gateway passes the JSON's length to the replica inside the content type
(`content_type_with_header`), so the body it forwards, captures and mirrors stays untouched.

An answer with binary outputs leaves the replica framed (`frame_answer`: a zero byte, the
JSON's length, the JSON, the tensors' bytes); the gateway takes the frame apart
(`unframe_answer`) into the HTTP body and its `Inference-Header-Content-Length`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from stratus.core.errors import InvalidInput

#: The HTTP header that gives the length of the JSON part of a binary body.
HEADER = "Inference-Header-Content-Length"
#: The content-type parameter that carries that length from the gateway to the replica.
_PARAMETER = "inference-header-content-length="
#: The content type of a body with binary tensors (Triton answers with the same).
BINARY_CONTENT_TYPE = "application/octet-stream"

# Every fixed-size datatype as its little-endian numpy dtype.
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_LENGTH = struct.Struct("<I")  # a BYTES element's length
_FRAME = struct.Struct("!BI")  # the answer frame: a zero byte, the JSON's length
_FRAMED = 0


# --- the JSON's length, from the gateway to the replica --------------------------------------


def content_type_with_header(content_type: str, header_length: str) -> str:
    """The content type to forward for a body whose JSON part is `header_length` bytes.

    Raises:
        InvalidInput: the header is not a number of bytes.
    """
    if not header_length.isdigit() or len(header_length) > 12:
        raise InvalidInput(
            f"the {HEADER} header must be the JSON header's length in bytes, "
            f"got {header_length[:40]!r}"
        )
    media = content_type.split(";", 1)[0].strip() or BINARY_CONTENT_TYPE
    return f"{media}; {_PARAMETER}{int(header_length)}"


def header_length(content_type: str | None) -> int | None:
    """The JSON header's length the gateway put in `content_type`, or None (all JSON)."""
    if not content_type:
        return None
    at = content_type.find(_PARAMETER)
    if at < 0:
        return None
    value = content_type[at + len(_PARAMETER) :].split(";", 1)[0].strip()
    if not value.isdigit():
        raise InvalidInput(f"the {HEADER} header must be a number of bytes, got {value[:40]!r}")
    return int(value)


def split_body(body: bytes, length: int) -> tuple[bytes, memoryview]:
    """The JSON header of a binary body and the bytes after it.

    Raises:
        InvalidInput: the body is shorter than the header it announces.
    """
    if length > len(body):
        raise InvalidInput(
            f"the {HEADER} header says the JSON part is {length} bytes; "
            f"the whole body is {len(body)} bytes"
        )
    return body[:length], memoryview(body)[length:]


# --- binary inputs ---------------------------------------------------------------------------


def decode(name: str, datatype: str, shape: Sequence[int], raw: memoryview) -> np.ndarray:
    """One input's binary data as an array of its datatype and shape.

    Raises:
        InvalidInput: the bytes do not fit the shape and datatype, a BOOL byte is neither 0 nor
            1, or a BYTES element is not UTF-8 text; the detail names the input.
    """
    count = math.prod(shape)
    if datatype == "BYTES":
        return np.array(_decode_bytes(name, shape, count, raw), dtype=object).reshape(shape)
    dtype = DTYPES[datatype]
    need = count * dtype.itemsize
    if len(raw) != need:
        raise InvalidInput(
            f"input {name!r}: binary_data_size is {len(raw)} bytes; shape {list(shape)} of "
            f"{datatype} takes {need} bytes ({count} × {dtype.itemsize})"
        )
    if datatype == "BOOL":
        octets = np.frombuffer(raw, dtype=np.uint8)
        bad = np.flatnonzero(octets > 1)
        if bad.size:
            i = int(bad[0])
            raise InvalidInput(
                f"input {name!r}: BOOL element {i} is the byte {int(octets[i])}; "
                "a BOOL is one byte, 1 for true and 0 for false"
            )
        return octets.astype(np.bool_).reshape(shape)
    # a copy in native order: aligned and writable, whatever the offset in the body
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("=")).reshape(shape)


def _decode_bytes(name: str, shape: Sequence[int], count: int, raw: memoryview) -> list[str]:
    values: list[str] = []
    at, end = 0, len(raw)
    while at < end:
        if len(values) == count:
            raise InvalidInput(
                f"input {name!r}: shape {list(shape)} needs {count} BYTES elements; its binary "
                f"data holds {end - at} more bytes after them"
            )
        if end - at < 4:
            raise InvalidInput(
                f"input {name!r}: BYTES element {len(values)} is cut inside its 4-byte length"
            )
        (size,) = _LENGTH.unpack_from(raw, at)
        at += 4
        if size > end - at:
            raise InvalidInput(
                f"input {name!r}: BYTES element {len(values)} says {size} bytes; "
                f"only {end - at} are left in its binary data"
            )
        try:
            values.append(str(raw[at : at + size], "utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(
                f"input {name!r}: BYTES element {len(values)} is not UTF-8 text"
            ) from None
        at += size
    if len(values) != count:
        raise InvalidInput(
            f"input {name!r}: shape {list(shape)} needs {count} BYTES elements; "
            f"its binary data holds {len(values)}"
        )
    return values


# --- binary outputs --------------------------------------------------------------------------


def encode(array: np.ndarray, datatype: str) -> bytes:
    """An output's values as the extension's bytes (row-major, little-endian)."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for value in array.ravel().tolist():
            data = (
                value
                if isinstance(value, bytes)
                else value.encode()
                if isinstance(value, str)
                else str(value).encode()
            )
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()


def frame_answer(header: bytes, tensors: Sequence[bytes]) -> bytes:
    """A v2 answer with binary outputs (its JSON, then the outputs' bytes in order), as the
    replica hands it to the gateway."""
    return b"".join((_FRAME.pack(_FRAMED, len(header)), header, *tensors))


def unframe_answer(body: bytes) -> tuple[bytes, int] | None:
    """The HTTP body and JSON length of a framed answer; None for an answer that is all JSON."""
    if not body or body[0] != _FRAMED or len(body) < _FRAME.size:
        return None
    _, length = _FRAME.unpack_from(body)
    return body[_FRAME.size :], length


def answer_document(body: bytes) -> Any:
    """A v2 answer (framed or all JSON) as its JSON document, binary outputs read into their
    "data" like JSON outputs: how data capture reads the answers it kept."""
    framed = unframe_answer(body)
    if framed is None:
        return orjson.loads(body)
    http_body, length = framed
    document = orjson.loads(http_body[:length])
    at = length
    for output in document.get("outputs", []):
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            continue
        raw = memoryview(http_body)[at : at + size]
        at += size
        array = decode(output["name"], output["datatype"], output["shape"], raw)
        output["data"] = array.ravel().tolist()
    return document
