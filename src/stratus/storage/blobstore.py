"""Content-addressed blobs on any fsspec filesystem (a local directory or an S3 bucket).

Writers stream plaintext through `BlobEncoder` into a temp file and move it to
`blobs/<project>/<name[:2]>/<name>` on commit, where the name is a keyed hash of the project
and the content's SHA-256 (so a file's name does not confirm which content it holds to someone
who can list the store); readers decode and verify every frame and the whole-blob SHA-256.
Stores written before keyed names still read: a blob is looked for under its keyed name, then
under its legacy name (the plain SHA-256), until `adopt_legacy_name` renames it. Metadata
about blobs lives in the database, not here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import hmac
import io
import os
import pathlib
import re
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO, cast

import fsspec
from fsspec.implementations.local import LocalFileSystem

from stratus.core.errors import DataCorrupted, InvalidInput, ServiceUnavailable, StoreUnavailable
from stratus.storage.encryption import (
    CHUNK_BYTES,
    MAGIC,
    MODE_AES_GCM,
    BlobDecoder,
    BlobEncoder,
    decode_blob,
)
from stratus.storage.reaching import StoreTimeouts, reaching, unreachable

_SHA256 = re.compile(r"[0-9a-f]{64}")
# The purpose blob names' key is derived for (`iam.credentials.derive_key(root, BLOB_NAMES)`,
# from the root secret, which a rotation of the master key keeps: `key_check.py`).
BLOB_NAMES = "stratus blob names v1"
_SMALL_OBJECT_KEY = re.compile(r"[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*")
_LOCAL_PROTOCOLS = {"file", "local"}
_S3_PROTOCOLS = {"s3", "s3a"}
# The longest blob header: magic, version, mode, key id length, and a key id of 255 bytes.
_HEADER_BYTES = len(MAGIC) + 3 + 255


@dataclass(frozen=True)
class BlobInfo:
    sha256: str
    size: int  # plaintext bytes


@dataclass(frozen=True)
class StoredBlob:
    """Where a blob's file is in the store and which data key its header names."""

    sha256: str
    path: str  # under its keyed name, or its legacy name until adopted
    key_id: str | None  # None: a plain (unencrypted) blob


def _check_sha(sha256: str) -> None:
    if not _SHA256.fullmatch(sha256):
        raise InvalidInput(f"{sha256!r} is not a lowercase hex SHA-256 digest")


def _check_project(project: str) -> None:
    if not project or "/" in project or "\\" in project or project in (".", ".."):
        raise InvalidInput(f"{project!r} cannot name a blob directory")


class BlobWriter:
    """Streams one blob into a temp file; `commit` publishes it under its SHA-256."""

    def __init__(
        self, store: BlobStore, project: str, tmp_path: str, encoder: BlobEncoder, file: BinaryIO
    ) -> None:
        self._store = store
        self._project = project
        self._tmp = tmp_path
        self._encoder = encoder
        self._file: BinaryIO | None = file
        self._buffer = bytearray()
        self._hash = hashlib.sha256()
        self._size = 0
        self._done = False

    def _check_open(self) -> BinaryIO:
        if self._done or self._file is None:
            raise RuntimeError("this blob writer was already committed or aborted")
        return self._file

    def write(self, data: bytes) -> None:
        file = self._check_open()
        if not data:
            return
        self._hash.update(data)
        self._size += len(data)
        view = memoryview(data)
        while view:
            # A full buffer is only flushed once more data arrives, so the final frame
            # (written by commit) is never empty unless the whole blob is.
            if len(self._buffer) == CHUNK_BYTES:
                with unreachable(self._store._describe()):
                    file.write(self._encoder.frame(bytes(self._buffer), last=False))
                self._buffer.clear()
            take = CHUNK_BYTES - len(self._buffer)
            self._buffer += view[:take]
            view = view[take:]

    def commit(self, expected_sha256: str | None = None) -> BlobInfo:
        """Publish the blob; with `expected_sha256`, discard it instead if the bytes differ."""
        file = self._check_open()
        try:
            with unreachable(self._store._describe()):
                file.write(self._encoder.frame(bytes(self._buffer), last=True))
                self._buffer = bytearray()
                if self._store.is_local:
                    file.flush()
                    os.fsync(file.fileno())
                self._file = None
                file.close()
            info = BlobInfo(sha256=self._hash.hexdigest(), size=self._size)
            if expected_sha256 is not None and expected_sha256.lower() != info.sha256:
                raise InvalidInput(
                    f"the upload's SHA-256 is {info.sha256}, not {expected_sha256} as declared: "
                    "the bytes were changed in transit"
                )
            with unreachable(self._store._describe()):
                self._store._publish(self._tmp, self._store.blob_path(self._project, info.sha256))
        except BaseException:
            self._file = file
            self.abort()
            raise
        self._done = True
        return info

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer = bytearray()
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(Exception):
                file.close()
        self._store._remove_quietly(self._tmp)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Leaving the block without commit (by exception or not) discards the blob.
        self.abort()


class _BlobIterator:
    """An iterator over plaintext chunks that can be closed early (releasing the file)."""

    def __init__(self, first: bytes | None, rest: Iterator[bytes]) -> None:
        self._first = first
        self._rest = rest

    def __iter__(self) -> _BlobIterator:
        return self

    def __next__(self) -> bytes:
        if self._first is not None:
            chunk, self._first = self._first, None
            return chunk
        return next(self._rest)

    def close(self) -> None:
        self._first = None
        close = getattr(self._rest, "close", None)
        if close is not None:
            close()


class BlobStore:
    """Content-addressed, per-project blob storage under `root` on `fs`.

    With a `name_key` (the platform always gives one, derived from the master key) files are
    named by HMAC-SHA256(name_key, project + "/" + sha256); without one, by the SHA-256 itself
    (the legacy layout, kept for tools and tests that read a store without the key).
    """

    def __init__(
        self, fs: fsspec.AbstractFileSystem, root: str, *, name_key: bytes | None = None
    ) -> None:
        self._fs = fs
        self.is_local = isinstance(fs, LocalFileSystem)
        self.root = root.rstrip("/") or "/"
        self._name_key = name_key

    def __repr__(self) -> str:
        return f"BlobStore({self._describe()})"

    def _describe(self) -> str:
        protocol = self._fs.protocol
        name = protocol if isinstance(protocol, str) else protocol[0]
        return self.root if self.is_local else f"{name}://{self.root}"

    # --- paths ---------------------------------------------------------------------------------

    @property
    def keyed_names(self) -> bool:
        return self._name_key is not None

    def blob_name(self, project: str, sha256: str) -> str:
        """The file name of a blob: keyed, so it is not the SHA-256 of the content."""
        _check_project(project)
        _check_sha(sha256)
        if self._name_key is None:
            return sha256
        message = f"{project}/{sha256}".encode()
        return hmac.new(self._name_key, message, hashlib.sha256).hexdigest()

    def blob_path(self, project: str, sha256: str) -> str:
        """Where a blob is written (and first looked for)."""
        name = self.blob_name(project, sha256)
        return f"{self.root}/blobs/{project}/{name[:2]}/{name}"

    def legacy_blob_path(self, project: str, sha256: str) -> str:
        """Where a store written before keyed names holds the blob: named by its SHA-256."""
        _check_project(project)
        _check_sha(sha256)
        return f"{self.root}/blobs/{project}/{sha256[:2]}/{sha256}"

    def _paths(self, project: str, sha256: str) -> list[str]:
        keyed = self.blob_path(project, sha256)
        legacy = self.legacy_blob_path(project, sha256)
        return [keyed] if keyed == legacy else [keyed, legacy]

    def _small_object_path(self, key: str) -> str:
        if not _SMALL_OBJECT_KEY.fullmatch(key) or key.split("/", 1)[0] in ("blobs", "tmp"):
            raise InvalidInput(f"{key!r} cannot name a small object in the store")
        return f"{self.root}/{key}"

    def _tmp_dir(self) -> str:
        return f"{self.root}/tmp"

    # --- lifecycle -----------------------------------------------------------------------------

    def ensure_ready(self) -> None:
        if self.is_local:
            try:
                self._fs.makedirs(f"{self.root}/blobs", exist_ok=True)
                self._fs.makedirs(self._tmp_dir(), exist_ok=True)
            except OSError as exc:
                raise ServiceUnavailable(
                    f"blob store {self._describe()} cannot be created: {exc}"
                ) from exc
        self.ping()

    def ping(self) -> None:
        if self.is_local:
            if not os.path.isdir(self.root):
                raise ServiceUnavailable(f"blob store directory {self.root} does not exist")
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise ServiceUnavailable(f"blob store directory {self.root} is not writable")
            return
        bucket = self.root.split("/", 1)[0]
        try:
            self._fs.invalidate_cache(bucket)
            self._fs.info(bucket)
        except FileNotFoundError as exc:
            raise ServiceUnavailable(
                f"blob store bucket {bucket!r} does not exist ({self._describe()})"
            ) from exc
        except Exception as exc:
            raise StoreUnavailable(f"blob store {self._describe()} is unreachable: {exc}") from exc

    # --- writing -------------------------------------------------------------------------------

    def open_writer(self, project: str, key_id: str | None, key: bytes | None) -> BlobWriter:
        _check_project(project)
        encoder = BlobEncoder(key_id, key)
        tmp = f"{self._tmp_dir()}/{uuid.uuid4().hex}"
        if self.is_local:
            os.makedirs(self._tmp_dir(), exist_ok=True)
        with unreachable(self._describe()):
            file = cast(BinaryIO, self._fs.open(tmp, "wb"))
        try:
            with unreachable(self._describe()):
                file.write(encoder.header())
        except BaseException:
            with contextlib.suppress(Exception):
                file.close()
            self._remove_quietly(tmp)
            raise
        return BlobWriter(self, project, tmp, encoder, file)

    def _publish(self, tmp: str, final: str) -> None:
        """Move a finished temp file to `final`, or drop it when that content is already there."""
        if self.is_local:
            if os.path.exists(final):
                os.unlink(tmp)
                return
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(tmp, final)
            return
        self._fs.invalidate_cache(final)
        if self._fs.exists(final):
            self._fs.rm(tmp)
        else:
            self._fs.mv(tmp, final)

    def _remove_quietly(self, path: str) -> None:
        with contextlib.suppress(Exception):
            self._fs.rm(path)

    # --- reading -------------------------------------------------------------------------------

    def read(self, project: str, sha256: str, keys: Callable[[str], bytes]) -> Iterator[bytes]:
        """Plaintext chunks of a blob, each verified before it is yielded.

        One chunk is held back so the whole-blob SHA-256 is checked before the final
        chunk leaves: a blob whose content does not match its name never reads in full.
        """
        return reaching(self._chunks(project, sha256, keys), self._describe())

    def _open_blob(self, project: str, sha256: str) -> BinaryIO:
        """The blob's file under its keyed name, else under its legacy name."""
        for path in self._paths(project, sha256):
            if not self.is_local:
                self._fs.invalidate_cache(path)
            try:
                return cast(BinaryIO, self._fs.open(path, "rb"))
            except FileNotFoundError:
                continue
        raise DataCorrupted(f"blob {sha256[:12]} is missing from the store")

    def _chunks(
        self, project: str, sha256: str, keys: Callable[[str], bytes]
    ) -> Generator[bytes, None, None]:
        what = f"blob {sha256[:12]}"
        file = self._open_blob(project, sha256)
        try:
            digest = hashlib.sha256()
            pending: bytes | None = None
            for chunk in decode_blob(file.read, keys, what):
                digest.update(chunk)
                if pending is not None:
                    yield pending
                pending = chunk
            if digest.hexdigest() != sha256:
                raise DataCorrupted(f"{what} is corrupted: content does not match its SHA-256")
            if pending is not None:
                yield pending
        finally:
            file.close()

    def open_read(self, project: str, sha256: str, keys: Callable[[str], bytes]) -> Iterator[bytes]:
        """Like `read`, but the first chunk is read and verified before this returns."""
        chunks = reaching(self._chunks(project, sha256, keys), self._describe())
        try:
            first = next(chunks)
        except StopIteration:
            return _BlobIterator(None, iter(()))
        except BaseException:
            chunks.close()
            raise
        return _BlobIterator(first, chunks)

    def exists(self, project: str, sha256: str) -> bool:
        return any(self._file_exists(path) for path in self._paths(project, sha256))

    def _file_exists(self, path: str) -> bool:
        if self.is_local:
            return os.path.isfile(path)
        self._fs.invalidate_cache(path)
        return bool(self._fs.exists(path))

    def delete(self, project: str, sha256: str) -> None:
        for path in self._paths(project, sha256):
            with contextlib.suppress(FileNotFoundError):
                self._fs.rm(path)
            if not self.is_local:
                self._fs.invalidate_cache(path)

    def adopt_legacy_name(self, project: str, sha256: str) -> bool:
        """Rename a blob stored under its legacy name (its SHA-256) to its keyed name; when
        the keyed file is already there the legacy copy is removed. True when a legacy file
        was found."""
        paths = self._paths(project, sha256)
        if len(paths) == 1 or not self._file_exists(paths[1]):
            return False
        keyed, legacy = paths
        if self._file_exists(keyed):
            self._remove_quietly(legacy)
        elif self.is_local:
            os.makedirs(os.path.dirname(keyed), exist_ok=True)
            os.replace(legacy, keyed)
        else:
            self._fs.mv(legacy, keyed)
            self._fs.invalidate_cache(legacy)
        if self.is_local:
            with contextlib.suppress(OSError):  # only when empty: other blobs may share it
                os.rmdir(os.path.dirname(legacy))
        return True

    # --- handing blobs to workers ----------------------------------------------------------------

    def locate(self, project: str, sha256s: Sequence[str]) -> dict[str, StoredBlob]:
        """Each blob's file and the key id its header names, from one small ranged read per
        blob (run concurrently on S3); a blob under its legacy name costs a second read."""
        paths = {sha: self._paths(project, sha) for sha in sorted(set(sha256s))}
        found: dict[str, StoredBlob] = {}
        for attempt in (0, 1):  # keyed names, then legacy ones for the blobs not found
            tried = [
                sha for sha, names in paths.items() if sha not in found and len(names) > attempt
            ]
            if not tried:
                continue
            chosen = [paths[sha][attempt] for sha in tried]
            with unreachable(self._describe()):
                heads = self._fs.cat_ranges(chosen, 0, _HEADER_BYTES, on_error="return")
            for sha, path, head in zip(tried, chosen, heads, strict=True):
                if isinstance(head, FileNotFoundError):
                    continue
                if isinstance(head, BaseException):
                    with unreachable(self._describe()):
                        raise head
                found[sha] = StoredBlob(sha, path, _header_key_id(bytes(head), sha))
        missing = [sha for sha in paths if sha not in found]
        if missing:
            raise DataCorrupted(f"blob {missing[0][:12]} is missing from the store")
        return found

    def presigned_url(self, path: str, expires_seconds: int) -> str:
        """A URL that reads this one object and nothing else: on S3, a GET presigned with
        SigV4 for `expires_seconds`; on a local store, its file:// URL (for workers on this
        machine, which read it directly)."""
        if self.is_local:
            return pathlib.Path(path).as_uri()
        with unreachable(self._describe()):
            return str(self._presigning_fs.url(path, expires=expires_seconds))

    @functools.cached_property
    def _presigning_fs(self) -> Any:
        """The store's filesystem, signing with SigV4: botocore would presign with SigV2 in
        the regions that still take it, which buckets made since 2020 refuse."""
        options = dict(self._fs.storage_options)
        config = dict(options.get("config_kwargs") or {})
        config["signature_version"] = "s3v4"
        options["config_kwargs"] = config
        return type(self._fs)(**options)

    # --- small objects -------------------------------------------------------------------------

    def read_small_object(self, key: str) -> bytes | None:
        """A small document kept beside the blobs (e.g. `audit/checkpoint.json`), or None."""
        path = self._small_object_path(key)
        if not self.is_local:
            self._fs.invalidate_cache(path)
        try:
            return bytes(self._fs.cat_file(path))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise ServiceUnavailable(
                f"blob store {self._describe()} is unreachable: {exc}"
            ) from exc

    def write_small_object(self, key: str, data: bytes) -> None:
        """Replace a small document atomically: a reader sees the old bytes or the new ones."""
        path = self._small_object_path(key)
        try:
            if self.is_local:
                os.makedirs(self._tmp_dir(), exist_ok=True)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                tmp = f"{self._tmp_dir()}/{uuid.uuid4().hex}"
                with open(tmp, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(tmp, path)
            else:
                self._fs.pipe_file(path, data)  # one PUT: S3 replaces an object atomically
                self._fs.invalidate_cache(path)
        except OSError as exc:
            raise ServiceUnavailable(
                f"blob store {self._describe()} cannot be written: {exc}"
            ) from exc

    # --- maintenance ---------------------------------------------------------------------------

    def sweep_tmp(self, max_age_seconds: float) -> int:
        """Delete temp files older than `max_age_seconds` (left by crashed writers)."""
        tmp_dir = self._tmp_dir()
        self._fs.invalidate_cache(tmp_dir)
        try:
            entries: list[dict[str, Any]] = self._fs.ls(tmp_dir, detail=True)
        except FileNotFoundError:
            return 0
        now = time.time()
        removed = 0
        for entry in entries:
            if entry.get("type") != "file":
                continue
            modified = _modified_at(entry)
            if modified is None or now - modified <= max_age_seconds:
                continue
            try:
                self._fs.rm(entry["name"])
            except FileNotFoundError:
                continue
            removed += 1
        return removed

    def list_project_blobs(self, project: str) -> Iterator[str]:
        """File names of every blob stored for `project`: keyed names, and the SHA-256s of
        blobs still under legacy names."""
        _check_project(project)
        prefix = f"{self.root}/blobs/{project}"
        self._fs.invalidate_cache(prefix)
        try:
            paths: list[str] = self._fs.find(prefix)
        except FileNotFoundError:
            return
        for path in sorted(paths):
            parent, _, name = path.rstrip("/").rpartition("/")
            if _SHA256.fullmatch(name) and parent.endswith(f"/{name[:2]}"):
                yield name


def _header_key_id(head: bytes, sha256: str) -> str | None:
    """The data key id a blob's header names (None for a plain blob), checked by the decoder
    itself so the header's rules live in one place."""
    decoder = BlobDecoder(io.BytesIO(head).read, _no_keys, f"blob {sha256[:12]}")
    mode, key_id = decoder._header()
    return key_id.decode("ascii") if mode == MODE_AES_GCM else None


def _no_keys(key_id: str) -> bytes:
    raise AssertionError("only the header is read")


def _modified_at(entry: dict[str, Any]) -> float | None:
    """Modification time as epoch seconds from an fsspec `ls(detail=True)` entry."""
    for field in ("mtime", "LastModified", "last_modified", "created"):
        value = entry.get(field)
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
    return None


def open_store(
    url: str,
    s3_endpoint_url: str | None = None,
    *,
    name_key: bytes | None = None,
    timeouts: StoreTimeouts | None = None,
    credentials: tuple[str, str] | None = None,
) -> BlobStore:
    """A BlobStore for a local path (or file:// URL) or an `s3://bucket/prefix` URL; with
    `name_key`, blobs are named by a keyed hash (see `BlobStore`). Requests to S3 are bounded
    by `timeouts`, and signed with `credentials` (key id, secret) when given."""
    timeouts = timeouts or StoreTimeouts()
    protocol, _ = fsspec.core.split_protocol(url)
    protocol = (protocol or "file").lower()
    kwargs: dict[str, Any] = {}
    if protocol in _LOCAL_PROTOCOLS:
        path = url.split("://", 1)[1] if "://" in url else url
        if not path:
            raise InvalidInput(f"blob store URL {url!r} names no directory")
        url = os.path.abspath(os.path.expanduser(path))
    elif protocol in _S3_PROTOCOLS:
        # Listings are not cached: other processes add and delete blobs behind our back.
        kwargs["use_listings_cache"] = False
        kwargs.update(timeouts.s3_options())
        if s3_endpoint_url:
            kwargs["client_kwargs"] = {"endpoint_url": s3_endpoint_url}
        if credentials is not None:  # else the AWS credential chain
            kwargs["key"], kwargs["secret"] = credentials
    else:
        raise InvalidInput(
            f"blob store URL {url!r} has an unsupported protocol {protocol!r} "
            f"(use a local path or s3://bucket/prefix)"
        )
    try:
        fs, root = fsspec.core.url_to_fs(url, **kwargs)
    except (ImportError, ValueError) as exc:
        raise InvalidInput(f"blob store URL {url!r} cannot be opened: {exc}") from exc
    root = str(root).rstrip("/")
    if protocol in _S3_PROTOCOLS and not root:
        raise InvalidInput(f"blob store URL {url!r} names no bucket")
    if protocol in _S3_PROTOCOLS:
        timeouts.apply(fs)
    return BlobStore(fs, root, name_key=name_key)
