"""Keys, key wrapping and the chunked blob format: round trips and every kind of damage."""

from __future__ import annotations

import base64
import io
import os
import pathlib
import stat
import struct
from collections.abc import Callable

import pytest

from stratus.core.errors import DataCorrupted, InvalidInput
from stratus.storage.encryption import (
    CHUNK_BYTES,
    KEY_BYTES,
    BlobDecoder,
    BlobEncoder,
    decode_blob,
    load_or_create_master_key,
    new_data_key,
    unwrap_key,
    wrap_key,
)

KEY = bytes(range(KEY_BYTES))
KEY_ID = "dk_test01"
SIZES = [0, 1, CHUNK_BYTES, CHUNK_BYTES * 5 // 2]


def _keys(key_id: str) -> bytes:
    return KEY


def pattern(size: int) -> bytes:
    block = b"stratus-plaintext-" + bytes(range(256))
    return (block * (size // len(block) + 1))[:size]


def encode(data: bytes, key_id: str | None, key: bytes | None, chunk: int = CHUNK_BYTES) -> bytes:
    encoder = BlobEncoder(key_id, key)
    out = [encoder.header()]
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
    for i, piece in enumerate(pieces):
        out.append(encoder.frame(piece, last=i == len(pieces) - 1))
    return b"".join(out)


def decode(blob: bytes, keys: Callable[[str], bytes] = _keys) -> bytes:
    return b"".join(decode_blob(io.BytesIO(blob).read, keys, "blob test"))


def decode_until_error(blob: bytes, keys: Callable[[str], bytes] = _keys) -> tuple[bytes, str]:
    """Plaintext yielded before the DataCorrupted that must follow, and its message."""
    got: list[bytes] = []
    with pytest.raises(DataCorrupted) as info:
        for chunk in decode_blob(io.BytesIO(blob).read, keys, "blob test"):
            got.append(chunk)
    return b"".join(got), str(info.value)


def split(blob: bytes) -> tuple[bytes, list[bytes]]:
    """The header and the raw frames of a well-formed blob."""
    header_len = 7 + blob[6]
    frames = []
    pos = header_len
    while pos < len(blob):
        (length,) = struct.unpack(">I", blob[pos + 1 : pos + 5])
        frames.append(blob[pos : pos + 5 + length])
        pos += 5 + length
    return blob[:header_len], frames


MODES = [pytest.param(KEY_ID, KEY, id="aes-gcm"), pytest.param(None, None, id="plain")]


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("key_id,key", MODES)
@pytest.mark.parametrize("size", SIZES)
def test_round_trip(key_id: str | None, key: bytes | None, size: int) -> None:
    data = pattern(size)
    blob = encode(data, key_id, key)
    assert decode(blob) == data
    header, frames = split(blob)
    assert header.startswith(b"STRB\x01")
    assert len(frames) == max(1, -(-size // CHUNK_BYTES))
    assert [f[0] & 1 for f in frames] == [0] * (len(frames) - 1) + [1]


def test_header_layout() -> None:
    assert BlobEncoder(KEY_ID, KEY).header() == b"STRB\x01\x01\x09" + KEY_ID.encode()
    assert BlobEncoder(None, None).header() == b"STRB\x01\x00\x00"


def test_decoder_class_yields_chunks_and_skips_empty() -> None:
    data = pattern(CHUNK_BYTES * 5 // 2)
    chunks = list(BlobDecoder(io.BytesIO(encode(data, KEY_ID, KEY)).read, _keys, "x"))
    assert [len(c) for c in chunks] == [CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES // 2]
    assert list(BlobDecoder(io.BytesIO(encode(b"", KEY_ID, KEY)).read, _keys, "x")) == []


def test_encrypted_blob_hides_plaintext() -> None:
    data = b"very secret words " * 50_000
    blob = encode(data, KEY_ID, KEY)
    assert b"very secret" not in blob
    assert b"very secret" in encode(data, None, None)  # plain mode really is plain


def test_encryption_is_randomised() -> None:
    assert encode(b"same", KEY_ID, KEY) != encode(b"same", KEY_ID, KEY)


def test_reads_from_a_short_reading_source() -> None:
    data = pattern(CHUNK_BYTES + 10)
    source = io.BytesIO(encode(data, KEY_ID, KEY))
    assert b"".join(decode_blob(lambda n: source.read(min(n, 7)), _keys, "x")) == data


def test_encoder_rejects_misuse() -> None:
    encoder = BlobEncoder(KEY_ID, KEY)
    with pytest.raises(ValueError):
        encoder.frame(b"x" * (CHUNK_BYTES + 1), last=False)
    encoder.frame(b"", last=True)
    with pytest.raises(RuntimeError):
        encoder.frame(b"", last=True)
    with pytest.raises(ValueError):
        BlobEncoder(None, KEY)
    with pytest.raises(ValueError):
        BlobEncoder("ключ", KEY)


# --- damage -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key_id,key", MODES)
def test_every_single_byte_flip_is_detected(key_id: str | None, key: bytes | None) -> None:
    data = pattern(25)
    blob = encode(data, key_id, key, chunk=10)  # three small frames: 10 + 10 + 5 bytes
    assert len(split(blob)[1]) == 3
    for pos in range(len(blob)):
        for mask in (0x01, 0x80):
            damaged = bytearray(blob)
            damaged[pos] ^= mask
            got, _ = decode_until_error(bytes(damaged))
            assert data.startswith(got), f"wrong bytes yielded after flipping byte {pos}"


@pytest.mark.parametrize("key_id,key", MODES)
def test_corrupt_middle_frame_yields_only_the_good_prefix(
    key_id: str | None, key: bytes | None
) -> None:
    data = pattern(CHUNK_BYTES * 5 // 2)
    blob = encode(data, key_id, key)
    header, frames = split(blob)
    second_start = len(header) + len(frames[0])
    for offset in (0, 3, 5, 20, 40, len(frames[1]) // 2, len(frames[1]) - 1):
        damaged = bytearray(blob)
        damaged[second_start + offset] ^= 0x10
        got, message = decode_until_error(bytes(damaged))
        assert got == data[:CHUNK_BYTES], offset
        assert message.startswith("blob test is corrupted: ")


@pytest.mark.parametrize("key_id,key", MODES)
def test_truncation_is_detected(key_id: str | None, key: bytes | None) -> None:
    data = pattern(CHUNK_BYTES * 5 // 2)
    blob = encode(data, key_id, key)
    header, frames = split(blob)
    without_last = header + b"".join(frames[:-1])
    got, message = decode_until_error(without_last)
    assert data.startswith(got)
    assert "without a last frame" in message
    for cut in (1, 2, 17, len(frames[-1]) - 1, len(frames[-1]) + 3):
        got, _ = decode_until_error(blob[:-cut])
        assert data.startswith(got)
    for cut in range(len(header) + 6):
        decode_until_error(blob[:cut])


@pytest.mark.parametrize("key_id,key", MODES)
def test_reordered_frames_are_detected(key_id: str | None, key: bytes | None) -> None:
    data = pattern(CHUNK_BYTES * 2) + pattern(10)
    header, frames = split(encode(data, key_id, key))
    swapped = header + frames[1] + frames[0] + frames[2]
    got, message = decode_until_error(swapped)
    assert got == b""
    assert "frame 0" in message


@pytest.mark.parametrize("key_id,key", MODES)
def test_frames_after_the_last_are_detected(key_id: str | None, key: bytes | None) -> None:
    blob = encode(b"hello", key_id, key)
    _, message = decode_until_error(blob + encode(b"more", key_id, key)[len(split(blob)[0]) :])
    assert "follows the last frame" in message
    decode_until_error(blob + b"\x00")


def test_a_frame_spliced_in_at_another_index_is_rejected() -> None:
    header, _ = split(encode(pattern(20), KEY_ID, KEY, chunk=10))
    _, other = split(encode(pattern(20)[::-1], KEY_ID, KEY, chunk=10))
    got, _ = decode_until_error(header + other[1])  # other blob's last frame, index 1 -> 0
    assert got == b""


def test_oversize_frame_length_is_rejected_without_reading_it() -> None:
    header = BlobEncoder(KEY_ID, KEY).header()
    blob = header + struct.pack(">BI", 1, CHUNK_BYTES + 65)
    _, message = decode_until_error(blob)
    assert "more than allowed" in message


@pytest.mark.parametrize(
    "blob,reason",
    [
        (b"", "truncated header"),
        (b"STRX\x01\x00\x00", "bad magic"),
        (b"STRB\x02\x00\x00", "unknown format version 2"),
        (b"STRB\x01\x07\x00", "unknown mode 7"),
        (b"STRB\x01\x01\x03ab", "truncated header"),
        (b"STRB\x01\x00\x00", "without a last frame"),
    ],
)
def test_bad_headers(blob: bytes, reason: str) -> None:
    _, message = decode_until_error(blob)
    assert reason in message


def test_wrong_data_key_is_detected() -> None:
    blob = encode(pattern(100), KEY_ID, KEY)
    got, message = decode_until_error(blob, lambda key_id: bytes(KEY_BYTES))
    assert got == b""
    assert "authentication" in message


def test_data_key_is_looked_up_by_the_header_key_id() -> None:
    asked: list[str] = []

    def keys(key_id: str) -> bytes:
        asked.append(key_id)
        return KEY

    decode(encode(b"abc", KEY_ID, KEY), keys)
    assert asked == [KEY_ID]


def test_flipped_mode_of_an_encrypted_blob_is_detected() -> None:
    blob = bytearray(encode(b"secret", KEY_ID, KEY))
    blob[5] = 0  # claim plain
    _, message = decode_until_error(bytes(blob))
    assert "plain blob names a key" in message


# --- keys -------------------------------------------------------------------------------------


def test_new_data_keys_are_random() -> None:
    assert len(new_data_key()) == KEY_BYTES
    assert new_data_key() != new_data_key()


def test_wrap_and_unwrap() -> None:
    master, data_key = new_data_key(), new_data_key()
    wrapped = wrap_key(master, data_key, "dk_1")
    assert data_key not in wrapped
    assert unwrap_key(master, wrapped, "dk_1") == data_key


@pytest.mark.parametrize("case", ["wrong master", "wrong key id", "tampered", "short"])
def test_unwrap_failures(case: str) -> None:
    master, data_key = new_data_key(), new_data_key()
    wrapped = wrap_key(master, data_key, "dk_1")
    key_id = "dk_1"
    if case == "wrong master":
        master = new_data_key()
    elif case == "wrong key id":
        key_id = "dk_2"
    elif case == "tampered":
        wrapped = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    else:
        wrapped = wrapped[:20]
    with pytest.raises(DataCorrupted) as info:
        unwrap_key(master, wrapped, key_id)
    assert str(info.value) == (
        f"data key {key_id} cannot be unwrapped: wrong master key or corrupted key"
    )


def test_master_key_file_is_created_private_and_reused(tmp_path: pathlib.Path) -> None:
    key_path = tmp_path / "state" / "master.key"
    first = load_or_create_master_key(None, key_path)
    assert len(first) == KEY_BYTES
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert base64.b64decode(key_path.read_text()) == first
    assert load_or_create_master_key(None, key_path) == first
    assert [p.name for p in key_path.parent.iterdir()] == ["master.key"]  # no temp left


def test_master_key_file_permissions_are_tightened(tmp_path: pathlib.Path) -> None:
    key_path = tmp_path / "master.key"
    key_path.write_text(base64.b64encode(KEY).decode())
    os.chmod(key_path, 0o644)
    assert load_or_create_master_key(None, key_path) == KEY
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_corrupt_master_key_file_is_refused(tmp_path: pathlib.Path) -> None:
    key_path = tmp_path / "master.key"
    key_path.write_text("not a key")
    with pytest.raises(InvalidInput, match="master key file"):
        load_or_create_master_key(None, key_path)


def test_configured_master_key_standard_and_urlsafe(tmp_path: pathlib.Path) -> None:
    key = bytes(range(224, 256))  # encodes with '+' / '/' or '-' / '_'
    key_path = tmp_path / "master.key"
    for text in (
        base64.b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
        f"  {base64.b64encode(key).decode()}\n",
    ):
        assert load_or_create_master_key(text, key_path) == key
    assert not key_path.exists()  # a configured key never touches the file


@pytest.mark.parametrize(
    "configured",
    ["", "not base64!", base64.b64encode(bytes(16)).decode(), base64.b64encode(bytes(33)).decode()],
)
def test_bad_configured_master_key(tmp_path: pathlib.Path, configured: str) -> None:
    with pytest.raises(InvalidInput, match="STRATUS_MASTER_KEY"):
        load_or_create_master_key(configured, tmp_path / "master.key")
