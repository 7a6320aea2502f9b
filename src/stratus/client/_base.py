"""Plumbing the SDK's API objects share: errors from responses, path quoting, file streaming."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx

from stratus.core.errors import StratusError, error_from_problem
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
        body["detail"] = f"HTTP {response.status_code}: {response.text[:200]}"
    return error_from_problem(response.status_code, body)


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
