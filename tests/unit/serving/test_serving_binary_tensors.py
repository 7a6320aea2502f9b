"""The Open Inference Protocol's binary tensor extension, and the datatype checks of JSON
tensors: binary inputs of every datatype and BYTES, binary outputs, sizes that do not add up,
and values their datatype cannot hold, each refused with a detail naming the input."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest

from stratus.core.errors import InvalidInput, NotFound
from stratus.registry.signatures import Signature, TensorSpec
from stratus.serving.binary_tensors import (
    answer_document,
    content_type_with_header,
    decode,
    encode,
    header_length,
    unframe_answer,
)
from stratus.serving.protocols import (
    Request,
    parse_request,
    render,
    v2_error,
    v2_server_metadata,
)

TABLE = Signature(
    inputs=[TensorSpec(name=n, dtype="float64") for n in ("a", "b", "c")],
    outputs=[TensorSpec(name="score", dtype="float64")],
)
NUMERIC = {
    "BOOL": np.array([[True, False], [False, True]]),
    "UINT8": np.array([[0, 255], [7, 8]], dtype=np.uint8),
    "UINT16": np.array([[0, 65535], [7, 8]], dtype=np.uint16),
    "UINT32": np.array([[0, 2**32 - 1], [7, 8]], dtype=np.uint32),
    "UINT64": np.array([[0, 2**64 - 1], [7, 8]], dtype=np.uint64),
    "INT8": np.array([[-128, 127], [7, -8]], dtype=np.int8),
    "INT16": np.array([[-(2**15), 2**15 - 1], [7, -8]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 2**31 - 1], [7, -8]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 2**63 - 1], [7, -8]], dtype=np.int64),
    "FP16": np.array([[0.5, -65504.0], [1.25, np.inf]], dtype=np.float16),
    "FP32": np.array([[0.1, -3.4e38], [1.5, 2.5]], dtype=np.float32),
    "FP64": np.array([[0.1, -1e300], [1.5, 2.5]], dtype=np.float64),
}


def bytes_elements(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def binary_body(
    tensors: list[tuple[dict[str, Any], bytes | None]], **document: Any
) -> tuple[bytes, str]:
    """A v2 body as tritonclient sends it: the JSON header, then each binary input's bytes;
    and the content type the gateway forwards for it."""
    inputs = []
    blobs = []
    for tensor, raw in tensors:
        if raw is not None:
            tensor = {**tensor, "parameters": {"binary_data_size": len(raw)}}
            blobs.append(raw)
        inputs.append(tensor)
    header = orjson.dumps({"inputs": inputs, **document})
    content_type = content_type_with_header("application/octet-stream", str(len(header)))
    return header + b"".join(blobs), content_type


def parse_binary(
    tensors: list[tuple[dict[str, Any], bytes | None]],
    signature: Signature | None = None,
    **document: Any,
) -> Request:
    body, content_type = binary_body(tensors, **document)
    return parse_request("v2", body, content_type, signature, max_rows=100)


def refused(match: str, **kwargs: Any) -> None:
    with pytest.raises(InvalidInput, match=match):
        parse_binary(**kwargs)


# --- binary inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", list(NUMERIC))
def test_every_numeric_datatype_comes_in_as_binary(datatype: str) -> None:
    array = NUMERIC[datatype]
    raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
    tensor = {"name": "t", "shape": [2, 2], "datatype": datatype}
    batch = parse_binary([(tensor, raw)]).batch
    assert batch.names == ("t",)
    assert batch["t"].dtype == array.dtype
    np.testing.assert_array_equal(batch["t"], array)
    assert batch["t"].flags.writeable and batch["t"].flags.aligned


def test_bytes_elements_are_length_prefixed_utf8() -> None:
    raw = bytes_elements(b"Oslo", "Zürich".encode(), b"")
    batch = parse_binary([({"name": "city", "shape": [3], "datatype": "BYTES"}, raw)]).batch
    assert batch["city"].tolist() == ["Oslo", "Zürich", ""]


def test_binary_and_json_inputs_mix_and_fit_a_table() -> None:
    a = np.array([1.5, 2.5], dtype=np.float32)
    c = np.array([7, 9], dtype=np.int16)
    request = parse_binary(
        [
            ({"name": "a", "shape": [2], "datatype": "FP32"}, a.tobytes()),
            ({"name": "b", "shape": [2, 1], "datatype": "FP64", "data": [[0.25], [0.75]]}, None),
            ({"name": "c", "shape": [2], "datatype": "INT16"}, c.tobytes()),
        ],
        TABLE,
        id="r-1",
    )
    assert request.id == "r-1"
    np.testing.assert_array_equal(request.batch.matrix(), [[1.5, 0.25, 7], [2.5, 0.75, 9]])


def test_one_binary_tensor_holds_a_table() -> None:
    matrix = np.arange(6, dtype=np.float64).reshape(2, 3)
    batch = parse_binary([({"name": "x", "shape": [2, 3], "datatype": "FP64"}, matrix.tobytes())],
                         TABLE).batch  # fmt: skip
    np.testing.assert_array_equal(batch.matrix(), matrix)


def test_a_binary_tensor_for_a_tensor_signature() -> None:
    signature = Signature(inputs=[TensorSpec(name="pixels", dtype="float32", shape=[-1, 2, 2])])
    pixels = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    tensor = {"name": "pixels", "shape": [2, 2, 2], "datatype": "FP32"}
    batch = parse_binary([(tensor, pixels.tobytes())], signature).batch
    assert batch["pixels"].dtype == np.float32
    np.testing.assert_array_equal(batch["pixels"], pixels)


FP32_X = {"name": "x", "shape": [2, 3], "datatype": "FP32"}


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        (
            [(FP32_X, b"\0" * 20)],
            r"input 'x': binary_data_size is 20 bytes; shape \[2, 3\] of FP32 takes 24 bytes",
        ),
        (
            [({"name": "b", "shape": [2], "datatype": "BOOL"}, b"\x01\x02")],
            "input 'b': BOOL element 1 is the byte 2; a BOOL is one byte",
        ),
        (
            [({"name": "s", "shape": [2], "datatype": "BYTES"}, bytes_elements(b"a"))],
            r"input 's': shape \[2\] needs 2 BYTES elements; its binary data holds 1",
        ),
        (
            [({"name": "s", "shape": [1], "datatype": "BYTES"}, bytes_elements(b"a", b"b"))],
            r"input 's': shape \[1\] needs 1 BYTES elements; its binary data holds 5 more bytes",
        ),
        (
            [({"name": "s", "shape": [1], "datatype": "BYTES"}, struct.pack("<I", 9) + b"abc")],
            "input 's': BYTES element 0 says 9 bytes; only 3 are left",
        ),
        (
            [({"name": "s", "shape": [1], "datatype": "BYTES"}, b"\x01\x00")],
            "input 's': BYTES element 0 is cut inside its 4-byte length",
        ),
        (
            [({"name": "s", "shape": [1], "datatype": "BYTES"}, bytes_elements(b"\xff\xfe"))],
            "input 's': BYTES element 0 is not UTF-8 text",
        ),
        (
            [({**FP32_X, "data": [1, 2, 3, 4, 5, 6]}, b"\0" * 24)],
            "input 'x' has both 'data' and a binary_data_size",
        ),
        (
            [({"name": "x", "shape": [0, 3], "datatype": "FP32"}, b"")],
            "input 'x' holds no rows",
        ),
        (
            [({"name": "x", "shape": [1], "datatype": "FP128"}, b"\0" * 16)],
            "input 'x': unknown datatype 'FP128'",
        ),
    ],
    ids=[
        "size does not fit the shape",
        "BOOL byte neither 0 nor 1",
        "BYTES: too few elements",
        "BYTES: too many elements",
        "BYTES: element longer than the data",
        "BYTES: cut length",
        "BYTES: not UTF-8",
        "both data and binary",
        "no rows",
        "unknown datatype",
    ],
)
def test_binary_data_that_does_not_fit_is_refused_naming_the_input(
    tensors: list[tuple[dict[str, Any], bytes | None]], match: str
) -> None:
    refused(match, tensors=tensors)


def test_sizes_that_do_not_add_up_to_the_body_are_refused() -> None:
    raw = np.zeros(6, dtype=np.float32).tobytes()
    header = orjson.dumps({"inputs": [{**FP32_X, "parameters": {"binary_data_size": 24}}]})
    short = content_type_with_header("", str(len(header)))
    with pytest.raises(InvalidInput, match="input 'x': binary_data_size is 24 bytes; only 20"):
        parse_request("v2", header + raw[:20], short, None, max_rows=10)
    with pytest.raises(InvalidInput, match="4 bytes of binary data that no input claims"):
        parse_request("v2", header + raw + b"\0" * 4, short, None, max_rows=10)
    beyond = content_type_with_header("", str(len(header) + 100))
    claimed, whole = len(header) + 100, len(header) + 24
    with pytest.raises(
        InvalidInput, match=f"JSON part is {claimed} bytes; the whole body is {whole} bytes"
    ):
        parse_request("v2", header + raw, beyond, None, max_rows=10)
    with pytest.raises(InvalidInput, match="no Inference-Header-Content-Length header"):
        parse_request("v2", header, "application/json", None, max_rows=10)
    negative = orjson.dumps({"inputs": [{**FP32_X, "parameters": {"binary_data_size": -1}}]})
    with pytest.raises(InvalidInput, match="'binary_data_size' must be a number of bytes"):
        parse_request(
            "v2", negative, content_type_with_header("", str(len(negative))), None, max_rows=10
        )
    with pytest.raises(InvalidInput, match="Inference-Header-Content-Length header must be"):
        content_type_with_header("application/octet-stream", "12 bytes")


def test_the_header_length_travels_in_the_content_type() -> None:
    forwarded = content_type_with_header("application/octet-stream; charset=x", "120")
    assert forwarded == "application/octet-stream; inference-header-content-length=120"
    assert header_length(forwarded) == 120
    assert header_length(content_type_with_header("", "0")) == 0
    assert header_length("application/json") is None and header_length(None) is None


# --- datatype range checks of JSON tensors ---------------------------------------------------


def json_columns(datatype: str, values: list[Any]) -> bytes:
    tensors = [{"name": "a", "shape": [len(values)], "datatype": datatype, "data": values}]
    tensors += [
        {"name": n, "shape": [len(values)], "datatype": "FP64", "data": [0.0] * len(values)}
        for n in ("b", "c")
    ]
    return orjson.dumps({"inputs": tensors})


@pytest.mark.parametrize(
    ("datatype", "values", "match"),
    [
        ("INT8", [1, 1000], "input 'a': datatype INT8 needs integers from -128 to 127, got 1000"),
        ("UINT8", [-1], "input 'a': datatype UINT8 needs integers from 0 to 255, got -1 in row 0"),
        ("INT16", [40000], "datatype INT16 needs integers from -32768 to 32767, got 40000"),
        ("UINT32", [2**32], "datatype UINT32 needs integers from 0 to 4294967295, got 4294967296"),
        ("INT64", [2**63], "datatype INT64 needs integers from .* got 9223372036854775808"),
        ("INT64", [1.5], "input 'a': datatype INT64 needs integers, got 1.5 in row 0"),
        ("FP16", [1.0, 70000.0], "input 'a': datatype FP16 needs numbers from -65504 to 65504"),
        ("FP32", [-1e39], "input 'a': datatype FP32 needs numbers from -3.40282e\\+38"),
    ],
)
def test_json_values_must_fit_their_datatype_even_for_a_float_table(
    datatype: str, values: list[Any], match: str
) -> None:
    with pytest.raises(InvalidInput, match=match):
        parse_request("v2", json_columns(datatype, values), None, TABLE, max_rows=10)
    table = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1, 3], "datatype": datatype,
                     "data": [values[-1], 0, 0]}]}
    )  # fmt: skip
    with pytest.raises(InvalidInput, match=match.replace("'a'", "'x'")):
        parse_request("v2", table, None, TABLE, max_rows=10)


def test_values_in_range_still_become_the_tables_floats() -> None:
    batch = parse_request("v2", json_columns("INT8", [-128, 127]), None, TABLE, max_rows=10).batch
    np.testing.assert_array_equal(batch["a"], [-128.0, 127.0])
    halves = parse_request("v2", json_columns("FP16", [0.5, None]), None, TABLE, max_rows=10)
    assert halves.batch["a"][0] == 0.5 and np.isnan(halves.batch["a"][1])


def test_fp32_range_without_a_signature() -> None:
    document = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1e39]}]}
    with pytest.raises(InvalidInput, match="datatype FP32 needs numbers from"):
        parse_request("v2", orjson.dumps(document), None, None, max_rows=10)


# --- binary outputs --------------------------------------------------------------------------

PREDICTIONS = {
    "label": np.array([1, 0], dtype=np.int64),
    "proba": np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32),
    "flag": np.array([True, False]),
    "name": np.array(["yes", "nö"], dtype=object),
    "half": np.array([0.5, 1.5], dtype=np.float16),
}


def render_for(document: dict[str, Any]) -> bytes:
    batch_body = orjson.dumps(
        {"inputs": [{"name": "t", "shape": [2], "datatype": "FP64", "data": [1, 2]}], **document}
    )
    request = parse_request("v2", batch_body, None, None, max_rows=10)
    return render(
        "v2", PREDICTIONS, model_name="churn", model_version="3", request_id="g-1", request=request
    )


def test_binary_data_output_sends_every_output_as_bytes() -> None:
    framed = render_for({"parameters": {"binary_data_output": True}})
    unframed = unframe_answer(framed)
    assert unframed is not None
    body, length = unframed
    header = orjson.loads(body[:length])
    assert header["model_name"] == "churn" and header["model_version"] == "3"
    at = length
    for output in header["outputs"]:
        assert "data" not in output
        size = output["parameters"]["binary_data_size"]
        raw = memoryview(body)[at : at + size]
        at += size
        values = decode(output["name"], output["datatype"], output["shape"], raw)
        np.testing.assert_array_equal(values, PREDICTIONS[output["name"]])
    assert at == len(body)
    assert [o["datatype"] for o in header["outputs"]] == ["INT64", "FP32", "BOOL", "BYTES", "FP16"]
    name_size = header["outputs"][3]["parameters"]["binary_data_size"]
    assert name_size == 4 + 3 + 4 + len("nö".encode())


def test_each_output_may_say_binary_or_json() -> None:
    framed = render_for(
        {
            "parameters": {"binary_data_output": True},
            "outputs": [
                {"name": "proba", "parameters": {"binary_data": True}},
                {"name": "label", "parameters": {"binary_data": False}},
            ],
        }
    )
    document = answer_document(framed)
    proba, label = document["outputs"]
    assert proba["parameters"] == {"binary_data_size": 16}
    assert proba["data"] == [0.25, 0.75, 0.5, 0.5]  # read back, as data capture does
    assert label["data"] == [1, 0] and "parameters" not in label
    plain = render_for({"outputs": [{"name": "label"}]})
    assert unframe_answer(plain) is None and orjson.loads(plain)["outputs"][0]["data"] == [1, 0]
    assert answer_document(plain) == orjson.loads(plain)


def test_output_parameters_are_checked() -> None:
    with pytest.raises(InvalidInput, match="output 'label': 'binary_data' must be true or false"):
        render_for({"outputs": [{"name": "label", "parameters": {"binary_data": "yes"}}]})
    with pytest.raises(InvalidInput, match="output 'label': the classification extension"):
        render_for({"outputs": [{"name": "label", "parameters": {"classification": 2}}]})
    with pytest.raises(InvalidInput, match="parameter 'binary_data_output' must be true or false"):
        render_for({"parameters": {"binary_data_output": 1}})


def test_encode_writes_little_endian_and_length_prefixed_bytes() -> None:
    assert encode(np.array([1, 256], dtype=np.int64), "INT32") == struct.pack("<ii", 1, 256)
    assert encode(np.array([True, False]), "BOOL") == b"\x01\x00"
    assert encode(np.array(["ab", b"c"], dtype=object), "BYTES") == bytes_elements(b"ab", b"c")


# --- server metadata and errors --------------------------------------------------------------


def test_server_metadata_and_the_v2_error_body() -> None:
    meta = v2_server_metadata()
    assert meta["name"] == "stratus" and "binary_tensor_data" in meta["extensions"]
    assert isinstance(meta["version"], str) and meta["version"]
    body = orjson.loads(v2_error(InvalidInput("input 'x' is wrong", input="x")))
    assert body == {"error": "input 'x' is wrong", "code": "invalid-input", "input": "x"}
    assert orjson.loads(v2_error(NotFound("no such version")))["error"] == "no such version"
