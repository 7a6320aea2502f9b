"""Artifact grants: how a worker gets a model or dataset version with no database at hand.

The control plane (`Blobs.grant`) lists an artifact's files and gives, for each, a URL that
reads that one blob (a presigned GET on S3, a file:// URL on a local store) and the data keys
those blobs are encrypted under, for a short time. On the worker, `fetch` downloads, decrypts
and verifies each file into a per-node cache keyed by content: each plaintext once under
`blobs/<sha256>`, each artifact a folder of hard links under `artifacts/<digest>/`, renamed into
place only when complete, so a second replica on the node downloads nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_serializer,
    model_validator,
)

from stratus.core.clock import utcnow
from stratus.core.errors import DataCorrupted, PermissionDenied, ServiceUnavailable
from stratus.storage.encryption import CHUNK_BYTES, KEY_BYTES, decode_blob

DEFAULT_TTL_SECONDS = 15 * 60
MAX_TTL_SECONDS = 7 * 24 * 3600  # the longest an S3 (SigV4) presigned URL may live
COMPLETE_MARKER = ".stratus-artifact.json"
STALE_TEMP_SECONDS = 24 * 3600  # what a killed fetch left in the cache's tmp/ is removed after
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class GrantExpired(PermissionDenied):
    """The grant's time is up: ask the control plane for a new one."""

    code = "grant-expired"
    title = "Artifact grant expired"


class FetchFailed(ServiceUnavailable):
    """A file of a grant could not be downloaded (unreachable, refused, or cut off)."""

    code = "artifact-fetch-failed"
    title = "Artifact download failed"


# --- the grant ----------------------------------------------------------------------------------


class GrantedFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(min_length=1, max_length=1024, description="relative, in the artifact")
    sha256: str = Field(pattern=_SHA256.pattern, description="of the plaintext")
    size: int = Field(ge=0, description="plaintext bytes")
    url: str = Field(repr=False, description="reads this blob only (a credential until expiry)")
    key_id: str | None = Field(None, description="the grant's key for it; None: not encrypted")


class ArtifactGrant(BaseModel):
    """Everything a worker needs to fetch one artifact, and nothing more: a URL per file and
    the data keys those files are encrypted under (`keys` shows as `**********` in reprs and
    logs; `model_dump_json` writes it out, for handing the grant to the worker)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    expires_at: AwareDatetime
    files: list[GrantedFile]
    keys: dict[str, SecretStr] = Field(
        default_factory=dict, description="data key id -> the key, base64"
    )

    @field_serializer("keys", when_used="json")
    def _reveal_keys(self, keys: dict[str, SecretStr]) -> dict[str, str]:
        return {key_id: key.get_secret_value() for key_id, key in keys.items()}

    @model_validator(mode="after")
    def _check(self) -> ArtifactGrant:
        paths = [f.path for f in self.files]
        for path in paths:
            _check_path(path)
        if len(set(paths)) != len(paths):
            raise ValueError("the same file path is listed twice")
        folders = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
        clash = folders & set(paths)
        if clash:
            raise ValueError(f"{sorted(clash)[0]!r} is listed both as a file and as a folder")
        needed = {f.key_id for f in self.files if f.key_id is not None}
        if needed - set(self.keys):
            raise ValueError(f"the grant holds no data key {sorted(needed - set(self.keys))[0]}")
        if set(self.keys) - needed:  # a grant carries the keys its files need, no others
            raise ValueError(f"no file needs data key {sorted(set(self.keys) - needed)[0]}")
        for key_id, key in self.keys.items():
            _decode_key(key_id, key)
        return self

    @property
    def digest(self) -> str:
        """One SHA-256 of the artifact's paths, hashes and sizes (for a dataset version this is
        its `content_sha256`): the name of its folder in the cache."""
        digest = hashlib.sha256()
        for f in sorted(self.files, key=lambda f: f.path):
            digest.update(f"{f.path}\0{f.sha256}\0{f.size}\n".encode())
        return digest.hexdigest()


def _check_path(path: str) -> None:
    if path.startswith("/") or "\\" in path or _CONTROL.search(path):
        raise ValueError(f"file path {path!r} must be a relative posix path")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise ValueError(f"file path {path!r} must not contain empty, '.' or '..' segments")
    if path == COMPLETE_MARKER:
        raise ValueError(f"file path {path!r} is the cache's own marker")


def _decode_key(key_id: str, key: SecretStr) -> bytes:
    try:
        raw = base64.b64decode(key.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise ValueError(f"data key {key_id} is not base64 of {KEY_BYTES} bytes")
    return raw


# --- the worker's side ---------------------------------------------------------------------------


def fetch(grant: ArtifactGrant, cache_root: Path, *, http: httpx.Client | None = None) -> Path:
    """The grant's artifact as a folder in the node's cache, downloading only what the cache
    lacks. Files are checked against their SHA-256 before they are kept; the folder appears
    whole or not at all, and concurrent fetches of it (threads or processes) agree on one.

    Args:
        grant: from the control plane (`Blobs.grant`, or a service's `grant`).
        cache_root: the node's cache (created 0700).
        http: a client for presigned URLs (default: one made for this call).

    Returns:
        `cache_root/artifacts/<grant.digest>`, holding the files (read-only: they are hard
        links shared with every cached artifact that holds the same bytes) and a marker.

    Raises:
        GrantExpired: the grant's time is up (even when the artifact is cached: ask again).
        FetchFailed: a file could not be downloaded; the message names it.
        DataCorrupted: a file's bytes do not match the grant (nothing of it is kept).
    """
    if utcnow() >= grant.expires_at:
        raise GrantExpired(
            f"the grant expired at {grant.expires_at.isoformat()}; ask for a new one"
        )
    cache = _Cache(cache_root)
    digest = grant.digest
    target = cache.artifacts / digest
    if (target / COMPLETE_MARKER).is_file():
        return target
    cache.sweep()
    pending = {f.sha256: f for f in grant.files if not cache.has_blob(f.sha256, f.size)}
    if pending:
        with contextlib.ExitStack() as stack:
            client = http or stack.enter_context(_client())
            for file in pending.values():
                # One download per blob on the node: two replicas starting together share it.
                with cache.locked(file.sha256):
                    if not cache.has_blob(file.sha256, file.size):
                        cache.download(grant, file, client)
    return cache.assemble(grant, digest, target)


def _client() -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0))


class _Cache:
    """`root/blobs/<sha256>` (plaintexts), `root/artifacts/<digest>/` (folders of links to
    them), `root/tmp/` (downloads and folders being built; renamed from there into place)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.artifacts = root / "artifacts"
        self.tmp = root / "tmp"
        # Decrypted artifacts: private to this user, however the folders were made before.
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        root.chmod(0o700)
        for folder in (self.blobs, self.artifacts, self.tmp):
            folder.mkdir(mode=0o700, exist_ok=True)

    @contextlib.contextmanager
    def locked(self, sha256: str) -> Iterator[None]:
        """Hold the node's lock on one blob (`tmp/<sha256>.lock`, removed when released)."""
        path = self.tmp / f"{sha256}.lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # The holder before us removes the file as it lets go: lock the one in place.
                with contextlib.suppress(FileNotFoundError):
                    if os.fstat(fd).st_ino == os.stat(path).st_ino:
                        break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.close(fd)

    def has_blob(self, sha256: str, size: int) -> bool:
        try:
            return (self.blobs / sha256).stat().st_size == size
        except FileNotFoundError:
            return False

    def download(self, grant: ArtifactGrant, file: GrantedFile, client: httpx.Client) -> None:
        """Fetch, decrypt and verify one file into `blobs/<sha256>` (via a temp file)."""
        if utcnow() >= grant.expires_at:
            raise GrantExpired(
                f"the grant expired at {grant.expires_at.isoformat()} before {file.path} was "
                "downloaded; ask for a new one (the files already fetched stay cached)"
            )
        what = f"{file.path} (blob {file.sha256[:12]})"

        def keys(key_id: str) -> bytes:
            if key_id != file.key_id:
                raise DataCorrupted(
                    f"{what} is encrypted under data key {key_id}, which the grant does not "
                    "give for it"
                )
            return _decode_key(key_id, grant.keys[key_id])

        fd, name = tempfile.mkstemp(prefix=f".{file.sha256[:12]}.", dir=self.tmp)  # 0600
        try:
            with os.fdopen(fd, "wb") as out, _source(file, client) as read:
                digest, size = hashlib.sha256(), 0
                for chunk in decode_blob(read, keys, what):
                    size += len(chunk)
                    if size > file.size:
                        raise DataCorrupted(f"{what} is longer than the {file.size} bytes granted")
                    digest.update(chunk)
                    out.write(chunk)
                if size != file.size or digest.hexdigest() != file.sha256:
                    raise DataCorrupted(
                        f"{what} is corrupted: its content does not match the SHA-256 granted"
                    )
                out.flush()
                os.fsync(out.fileno())
            os.chmod(name, 0o400)
            os.replace(name, self.blobs / file.sha256)  # a rival's copy holds the same bytes
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise

    def assemble(self, grant: ArtifactGrant, digest: str, target: Path) -> Path:
        """Link the blobs into a folder built in tmp/ and renamed to `target` once complete;
        when another fetch got there first, its folder is the answer."""
        staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}.", dir=self.tmp))  # 0700
        try:
            for file in grant.files:
                destination = staging / file.path
                _make_folders(staging, destination.parent)
                _link_or_copy(self.blobs / file.sha256, destination)
            listing = [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in grant.files]
            fd = os.open(staging / COMPLETE_MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as marker:
                json.dump({"digest": digest, "files": listing}, marker)
            try:
                staging.rename(target)
            except OSError:
                if not (target / COMPLETE_MARKER).is_file():
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return target

    def sweep(self) -> None:
        """Remove what fetches killed mid-way left in tmp/ (a live fetch keeps its files fresh)."""
        cutoff = time.time() - STALE_TEMP_SECONDS
        with os.scandir(self.tmp) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)


@contextlib.contextmanager
def _source(file: GrantedFile, client: httpx.Client) -> Iterator[Callable[[int], bytes]]:
    """A `read(n)` over the file's stored bytes, from a file:// or an http(s) URL; failures
    reading them are `FetchFailed` naming the file (never the URL: it is a credential)."""
    parts = urlsplit(file.url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise FetchFailed(f"{file.path}: a file URL on another host cannot be read")
        path = url2pathname(parts.path)
        try:
            stream = open(path, "rb")  # closed below, once read
        except FileNotFoundError:
            raise FetchFailed(
                f"{file.path} cannot be read: {path} does not exist (a local store's grant "
                "works only on the machine that holds the store)"
            ) from None
        except OSError as exc:
            raise FetchFailed(f"{file.path} cannot be read: {exc}") from exc
        with stream:
            yield _guarded(stream.read, file.path)
        return
    if parts.scheme not in ("http", "https"):
        raise FetchFailed(
            f"{file.path} has a URL of scheme {parts.scheme!r}, which Stratus cannot read"
        )
    try:
        with client.stream("GET", file.url) as response:
            if response.status_code != 200:
                raise FetchFailed(
                    f"{file.path} could not be downloaded: the store answered HTTP "
                    f"{response.status_code}{_HINTS.get(response.status_code, '')}"
                )
            yield _guarded(_Reader(response.iter_bytes(CHUNK_BYTES)).read, file.path)
    except httpx.HTTPError as exc:
        raise FetchFailed(f"{file.path} could not be downloaded: {_reason(exc)}") from exc


_HINTS = {
    403: " (the URL expired or does not grant this object: ask for a new grant)",
    404: " (the object is not in the store)",
}


def _reason(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


def _guarded(read: Callable[[int], bytes], path: str) -> Callable[[int], bytes]:
    def guarded(size: int) -> bytes:
        try:
            return read(size)
        except (httpx.HTTPError, OSError) as exc:
            raise FetchFailed(f"{path}: the download broke off ({_reason(exc)})") from exc

    return guarded


class _Reader:
    """`read(n)` over an iterator of chunks: at most `n` bytes, b"" at the end."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._view = memoryview(b"")

    def read(self, size: int) -> bytes:
        while not self._view:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._view = memoryview(chunk)
        piece, self._view = self._view[:size], self._view[size:]
        return bytes(piece)


def _make_folders(root: Path, folder: Path) -> None:
    """`folder` and its parents under `root`, each 0700 (`mkdir(parents=True)` gives parents
    the umask's mode)."""
    missing: list[Path] = []
    while folder != root and not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700)


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another filesystem, no hard links there, or too many links
        shutil.copyfile(source, destination)
        os.chmod(destination, 0o400)


__all__ = [
    "DEFAULT_TTL_SECONDS",
    "MAX_TTL_SECONDS",
    "ArtifactGrant",
    "FetchFailed",
    "GrantExpired",
    "GrantedFile",
    "fetch",
]
