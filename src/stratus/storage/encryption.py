"""Keys and the chunked, self-verifying format every stored blob is written in.

The server loads (or creates) one master key at startup; each project's data key is wrapped
with it (a rotation writes the next key beside it and renames it over it: `key_rotation.py`).
`BlobEncoder` turns plaintext into a header plus authenticated frames, and
`decode_blob` checks every frame before handing its plaintext to the blob store's readers.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import pathlib
import secrets
import struct
from collections.abc import Callable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stratus.core.errors import DataCorrupted, InvalidInput

KEY_BYTES = 32
CHUNK_BYTES = 1 << 20

MAGIC = b"STRB"
FORMAT_VERSION = 1
MODE_PLAIN = 0
MODE_AES_GCM = 1

FLAG_LAST = 0x01

NONCE_BYTES = 12
TAG_BYTES = 16
DIGEST_BYTES = 32
MAX_PAYLOAD_BYTES = CHUNK_BYTES + 64

_FRAME_HEAD = struct.Struct(">BI")  # flags, payload length
_INDEX = struct.Struct(">Q")


# --- keys -------------------------------------------------------------------------------------


def _decode_key(text: str) -> bytes | None:
    """Decode base64 (standard or urlsafe, padding optional); None unless exactly 32 bytes."""
    cleaned = "".join(text.split()).replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == KEY_BYTES else None


def _temp_key_file(key_path: pathlib.Path, key: bytes) -> pathlib.Path:
    """A private temporary file beside `key_path` holding `key`, on disk (fsynced)."""
    key_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = key_path.with_name(f".{key_path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, base64.b64encode(key) + b"\n")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _write_new_key_file(key_path: pathlib.Path) -> bytes:
    """Create `key_path` holding a fresh key, atomically and without clobbering a rival's key."""
    key = secrets.token_bytes(KEY_BYTES)
    tmp = _temp_key_file(key_path, key)
    try:
        try:
            # link() refuses to overwrite, so two processes starting at once agree on one key.
            os.link(tmp, key_path)
        except FileExistsError:
            return read_key_file(key_path)
        except OSError:
            # A filesystem without hard links: fall back to a plain atomic rename.
            if key_path.exists():
                return read_key_file(key_path)
            os.replace(tmp, key_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(key_path.parent)
    return key


def _fsync_dir(directory: pathlib.Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_key_file(key_path: pathlib.Path, key: bytes) -> None:
    """Write `key` to `key_path` (mode 0600), replacing any file there: a temporary file,
    fsynced, renamed over it, then the folder fsynced, so a crash leaves the old file or the
    new one, whole."""
    _check_key(key, "master key")
    tmp = _temp_key_file(key_path, key)
    try:
        os.replace(tmp, key_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(key_path.parent)


def move_key_file(source: pathlib.Path, target: pathlib.Path) -> None:
    """Rename `source` over `target` in one step (the same folder), then fsync the folder."""
    os.replace(source, target)
    _fsync_dir(target.parent)


def read_key_file(key_path: pathlib.Path) -> bytes:
    """The key a key file holds (its mode tightened to 0600 if it was looser)."""
    mode = key_path.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(key_path, 0o600)
    key = _decode_key(key_path.read_text(encoding="ascii", errors="replace"))
    if key is None:
        raise InvalidInput(
            f"master key file {key_path} does not hold base64 of exactly {KEY_BYTES} bytes"
        )
    return key


def load_or_create_master_key(configured: str | None, key_path: pathlib.Path) -> bytes:
    """The master key: from configuration if given, else from `key_path` (created if missing)."""
    if configured is not None:
        key = _decode_key(configured)
        if key is None:
            raise InvalidInput(
                f"STRATUS_MASTER_KEY must be base64 (standard or urlsafe) of exactly "
                f"{KEY_BYTES} bytes"
            )
        return key
    try:
        return read_key_file(key_path)
    except FileNotFoundError:
        return _write_new_key_file(key_path)


def new_data_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _check_key(key: bytes, what: str) -> None:
    if len(key) != KEY_BYTES:
        raise InvalidInput(f"{what} must be {KEY_BYTES} bytes, got {len(key)}")


def wrap_key(master: bytes, data_key: bytes, key_id: str) -> bytes:
    """Encrypt `data_key` under `master`, bound to `key_id`: nonce + ciphertext + tag."""
    _check_key(master, "master key")
    _check_key(data_key, "data key")
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(master).encrypt(nonce, data_key, key_id.encode())


def unwrap_key(master: bytes, wrapped: bytes, key_id: str) -> bytes:
    _check_key(master, "master key")
    failure = DataCorrupted(
        f"data key {key_id} cannot be unwrapped: wrong master key or corrupted key"
    )
    if len(wrapped) != NONCE_BYTES + KEY_BYTES + TAG_BYTES:
        raise failure
    try:
        key = AESGCM(master).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], key_id.encode())
    except InvalidTag:
        raise failure from None
    return key


# --- blob format ------------------------------------------------------------------------------


def _plain_digest(index: int, flags: int, data: bytes) -> bytes:
    digest = hashlib.sha256()
    digest.update(_INDEX.pack(index))
    digest.update(bytes((flags,)))
    digest.update(data)
    return digest.digest()


def _gcm_aad(key_id: bytes, index: int, flags: int) -> bytes:
    return key_id + _INDEX.pack(index) + bytes((flags,))


class BlobEncoder:
    """Produces the header and the frames of one blob; plain mode when `key` is None."""

    def __init__(self, key_id: str | None, key: bytes | None) -> None:
        self._aead: AESGCM | None = None
        self._key_id = b""
        if key is not None:
            _check_key(key, "data key")
            if not key_id:
                raise ValueError("an encrypted blob needs a key_id")
            try:
                encoded = key_id.encode("ascii")
            except UnicodeEncodeError:
                raise ValueError(f"key_id {key_id!r} is not ascii") from None
            if len(encoded) > 255:
                raise ValueError("key_id is longer than 255 bytes")
            self._aead = AESGCM(key)
            self._key_id = encoded
        self._index = 0
        self._finished = False

    @property
    def encrypted(self) -> bool:
        return self._aead is not None

    def header(self) -> bytes:
        mode = MODE_AES_GCM if self._aead is not None else MODE_PLAIN
        return MAGIC + bytes((FORMAT_VERSION, mode, len(self._key_id))) + self._key_id

    def frame(self, data: bytes, last: bool) -> bytes:
        if self._finished:
            raise RuntimeError("the last frame of this blob was already written")
        if len(data) > CHUNK_BYTES:
            raise ValueError(f"a frame carries at most {CHUNK_BYTES} bytes, got {len(data)}")
        flags = FLAG_LAST if last else 0
        if self._aead is not None:
            nonce = secrets.token_bytes(NONCE_BYTES)
            aad = _gcm_aad(self._key_id, self._index, flags)
            payload = nonce + self._aead.encrypt(nonce, bytes(data), aad)
        else:
            payload = _plain_digest(self._index, flags, data) + data
        self._index += 1
        self._finished = last
        return _FRAME_HEAD.pack(flags, len(payload)) + payload


class BlobDecoder:
    """Iterates the plaintext chunks of one blob, verifying each frame before yielding it.

    Empty frames (only ever the single frame of an empty blob) yield nothing.
    """

    def __init__(self, read: Callable[[int], bytes], keys: Callable[[str], bytes], what: str):
        self._read = read
        self._keys = keys
        self._what = what

    def _corrupt(self, reason: str) -> DataCorrupted:
        return DataCorrupted(f"{self._what} is corrupted: {reason}")

    def _read_exact(self, size: int, part: str) -> bytes:
        if size == 0:
            return b""
        pieces: list[bytes] = []
        remaining = size
        while remaining:
            piece = self._read(remaining)
            if not piece:
                raise self._corrupt(f"truncated {part} ({size - remaining} of {size} bytes)")
            pieces.append(piece)
            remaining -= len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _header(self) -> tuple[int, bytes]:
        fixed = self._read_exact(len(MAGIC) + 3, "header")
        if fixed[: len(MAGIC)] != MAGIC:
            raise self._corrupt("bad magic, not a Stratus blob")
        version, mode, id_len = fixed[len(MAGIC) :]
        if version != FORMAT_VERSION:
            raise self._corrupt(f"unknown format version {version}")
        if mode not in (MODE_PLAIN, MODE_AES_GCM):
            raise self._corrupt(f"unknown mode {mode}")
        key_id = self._read_exact(id_len, "header")
        if mode == MODE_PLAIN and key_id:
            raise self._corrupt("plain blob names a key")
        if mode == MODE_AES_GCM:
            if not key_id:
                raise self._corrupt("encrypted blob names no key")
            try:
                key_id.decode("ascii")
            except UnicodeDecodeError:
                raise self._corrupt("key id is not ascii") from None
        return mode, key_id

    def __iter__(self) -> Iterator[bytes]:
        mode, key_id = self._header()
        aead: AESGCM | None = None
        if mode == MODE_AES_GCM:
            key = self._keys(key_id.decode("ascii"))
            if len(key) != KEY_BYTES:
                raise self._corrupt(f"data key {key_id.decode('ascii')} has the wrong length")
            aead = AESGCM(key)
        index = 0
        while True:
            head = self._read(1)
            if not head:
                raise self._corrupt(f"ends after frame {index} without a last frame")
            flags, length = _FRAME_HEAD.unpack(head + self._read_exact(4, f"frame {index} head"))
            if flags & ~FLAG_LAST:
                raise self._corrupt(f"frame {index} has unknown flags {flags:#x}")
            if length > MAX_PAYLOAD_BYTES:
                raise self._corrupt(f"frame {index} claims {length} bytes, more than allowed")
            payload = self._read_exact(length, f"frame {index}")
            if aead is not None:
                if length < NONCE_BYTES + TAG_BYTES:
                    raise self._corrupt(f"frame {index} is too short")
                try:
                    data = aead.decrypt(
                        payload[:NONCE_BYTES],
                        payload[NONCE_BYTES:],
                        _gcm_aad(key_id, index, flags),
                    )
                except InvalidTag:
                    raise self._corrupt(
                        f"frame {index} failed authentication (tampered, reordered or wrong key)"
                    ) from None
            else:
                if length < DIGEST_BYTES:
                    raise self._corrupt(f"frame {index} is too short")
                data = payload[DIGEST_BYTES:]
                if _plain_digest(index, flags, data) != payload[:DIGEST_BYTES]:
                    raise self._corrupt(f"frame {index} failed its checksum")
            if len(data) > CHUNK_BYTES:
                raise self._corrupt(f"frame {index} carries more than {CHUNK_BYTES} bytes")
            last = bool(flags & FLAG_LAST)
            if last and self._read(1):
                raise self._corrupt(f"data follows the last frame ({index})")
            if data:
                yield data
            if last:
                return
            index += 1


def decode_blob(
    read: Callable[[int], bytes], keys: Callable[[str], bytes], what: str
) -> Iterator[bytes]:
    """Plaintext chunks of the blob read through `read`; raises DataCorrupted on any damage."""
    yield from BlobDecoder(read, keys, what)
