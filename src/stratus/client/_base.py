"""Plumbing the SDK's API objects share: errors from responses, path quoting, file streaming."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from stratus.core.errors import InvalidInput, StratusError, error_from_problem
from stratus.registry.flavors import base as _flavor_errors  # noqa: F401 (registers errors)

if TYPE_CHECKING:
    from stratus.client._client import Client

Progress = Callable[[int], None]  # called with the number of bytes just moved
CHUNK = 1 << 20


def error_of(response: httpx.Response) -> StratusError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if "detail" not in body:
        error = body.get("error")  # the Open Inference Protocol's error body, on v2 paths
        body["detail"] = (
            error
            if isinstance(error, str)
            else f"HTTP {response.status_code}: {response.text[:200]}"
        )
    return error_from_problem(response.status_code, body)


def read_yaml(path: str | Path) -> Any:
    """A YAML file's document, with a one-line InvalidInput naming the file when it cannot be
    read or parsed (rules, job specs and pipeline specs all come this way)."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}") from None


def seg(value: str) -> str:
    return quote(value, safe="")


def key_path(key: str) -> str:
    """An object key as a URL path; '.' and '..' segments are percent-encoded, else the HTTP
    client would drop them and send the request to another key (or another bucket)."""
    segments = [quote(part, safe="") for part in key.split("/")]
    return "/".join(s.replace(".", "%2E") if s in (".", "..") else s for s in segments)


def labels_of(labels: dict[str, str] | None) -> dict[str, str]:
    return dict(labels or {})


class API:
    def __init__(self, client: Client) -> None:
        self._c = client

    def _project(self, project: str | None) -> str:
        return seg(project or self._c.default_project)


def write_atomically(
    target: Path, chunks: Iterable[bytes], progress: Progress | None = None
) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                if progress:
                    progress(len(chunk))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


LocalFile = tuple[str, Path, str, int]  # (relative posix path, local path, sha256, size)


def local_files(path: Path, keep: Callable[[str], bool] | None = None) -> list[LocalFile]:
    """A file, or every file of a folder (those `keep` accepts), with its SHA-256 and size."""
    if not path.exists():
        raise InvalidInput(f"{path} does not exist")
    if path.is_file():
        candidates = [(path.name, path)]
    else:
        candidates = [
            (p.relative_to(path).as_posix(), p)
            for p in sorted(path.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts
        ]
        if keep is not None:
            candidates = [(rel, p) for rel, p in candidates if keep(rel)]
    if not candidates:
        raise InvalidInput(f"{path} holds no files")
    out = []
    for rel, local in candidates:
        hasher = hashlib.sha256()
        for chunk in read_file(local):
            hasher.update(chunk)
        out.append((rel, local, hasher.hexdigest(), local.stat().st_size))
    return out


def upload_files(
    client: Client,
    files_url: str,
    files: Iterable[LocalFile],
    stored: set[str],
    progress: Progress | None = None,
) -> None:
    """PUT each file the server does not hold yet to `files_url/<path>`, streamed; `progress`
    counts the bytes of the ones skipped too, so a bar reaches its end."""
    for rel, local, _, size in files:
        if rel in stored:
            if progress:
                progress(size)
            continue

        def chunks(local: Path = local) -> Iterator[bytes]:
            for chunk in read_file(local):
                if progress:
                    progress(len(chunk))
                yield chunk

        client._send(
            "PUT",
            f"{files_url}/{key_path(rel)}",
            content=chunks(),
            headers={"content-length": str(size)},
        )
