"""The SDK's storage API: buckets and their versioned objects, streamed both ways."""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx

from stratus.client._base import (
    API,
    CHUNK,
    Progress,
    error_of,
    key_path,
    labels_of,
    read_file,
    seg,
    write_atomically,
)
from stratus.core.errors import DataCorrupted, StratusError
from stratus.core.resource_schemas import ALL_PROJECTS
from stratus.storage import schemas as st

Source = bytes | str | Path | IO[bytes] | Iterable[bytes]


class Buckets(API):
    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/buckets"

    def _object(self, project: str | None, bucket: str, key: str) -> str:
        return f"{self._base(project)}/{seg(bucket)}/objects/{key_path(key)}"

    def create(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str = "",
        labels: dict[str, str] | None = None,
    ) -> st.BucketRead:
        body = {"name": name, "description": description, "labels": labels_of(labels)}
        return self._c._model(st.BucketRead, "POST", self._base(project), json=body)

    def list(
        self, project: str | None = None, selector: str | None = None, *, all_projects: bool = False
    ) -> list[st.BucketRead]:
        return list(
            self._c._pages(
                st.BucketRead,
                self._base(ALL_PROJECTS if all_projects else project),
                {"selector": selector},
            )
        )

    def get(self, name: str, project: str | None = None) -> st.BucketRead:
        return self._c._model(st.BucketRead, "GET", f"{self._base(project)}/{seg(name)}")

    def update(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str | None = None,
        labels: dict[str, str] | None = None,
        resource_version: int | None = None,
    ) -> st.BucketRead:
        body = {"description": description, "labels": labels, "resource_version": resource_version}
        body = {k: v for k, v in body.items() if v is not None}
        path = f"{self._base(project)}/{seg(name)}"
        return self._c._model(st.BucketRead, "PATCH", path, json=body)

    def delete(self, name: str, project: str | None = None, force: bool = False) -> None:
        params = {"force": "true"} if force else None
        self._c._send("DELETE", f"{self._base(project)}/{seg(name)}", params=params)

    # --- objects -------------------------------------------------------------------------------

    def upload(
        self,
        bucket: str,
        key: str,
        data: Source,
        *,
        project: str | None = None,
        content_type: str | None = None,
        progress: Progress | None = None,
    ) -> st.ObjectVersionRead:
        """Upload a new version of `key` from bytes, a path, a binary file or an iterable of
        bytes. The body streams; the SHA-256 is checked end to end."""
        headers = {"content-type": content_type or "application/octet-stream"}
        hasher = hashlib.sha256()
        if isinstance(data, bytes):
            headers["x-stratus-sha256"] = hashlib.sha256(data).hexdigest()
            headers["content-length"] = str(len(data))
            chunks: Iterable[bytes] = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
        elif isinstance(data, str | Path):
            path = Path(data)
            headers["content-length"] = str(path.stat().st_size)
            chunks = read_file(path)
        elif hasattr(data, "read"):
            chunks = iter(lambda: data.read(CHUNK), b"")
        else:
            chunks = data

        def body() -> Iterator[bytes]:
            for chunk in chunks:
                hasher.update(chunk)
                if progress:
                    progress(len(chunk))
                yield chunk

        version = self._c._model(
            st.ObjectVersionRead,
            "PUT",
            self._object(project, bucket, key),
            content=body(),
            headers=headers,
        )
        if version.sha256 != hasher.hexdigest():
            self.delete_object(bucket, key, version_id=version.version_id, project=project)
            raise DataCorrupted(
                f"the server stored SHA-256 {version.sha256} for {key!r}, but {hasher.hexdigest()} "
                "was sent; the version was removed"
            )
        return version

    def head_object(
        self, bucket: str, key: str, *, version_id: str | None = None, project: str | None = None
    ) -> dict[str, str]:
        params = {"version_id": version_id} if version_id else None
        path = self._object(project, bucket, key)
        try:
            response = self._c._send("HEAD", path, params=params)
        except StratusError as exc:
            # A HEAD answer has no body to explain itself: ask with GET for the problem.
            try:
                with self._c._http.stream("GET", path, params=params) as failed:
                    if failed.status_code >= 400:
                        failed.read()
                        raise error_of(failed) from None
            except httpx.TransportError:
                raise exc from None
            raise
        return dict(response.headers)

    def stream(
        self,
        bucket: str,
        key: str,
        *,
        version_id: str | None = None,
        project: str | None = None,
    ) -> Iterator[bytes]:
        """The object's bytes, chunk by chunk; raises DataCorrupted if they do not verify."""
        params = {"version_id": version_id} if version_id else None
        return self._c._stream_verified(self._object(project, bucket, key), key, params)

    def read(
        self,
        bucket: str,
        key: str,
        *,
        version_id: str | None = None,
        project: str | None = None,
    ) -> bytes:
        """An object's bytes in memory (for small objects; use `download` for large ones)."""
        return b"".join(self.stream(bucket, key, version_id=version_id, project=project))

    def download(
        self,
        bucket: str,
        key: str,
        dest: str | Path,
        *,
        version_id: str | None = None,
        project: str | None = None,
        progress: Progress | None = None,
    ) -> Path:
        """Download an object to `dest` (a file, or a folder to put it in), written atomically:
        the file appears only once every byte has arrived and verified."""
        chunks = self.stream(bucket, key, version_id=version_id, project=project)
        target = Path(dest)
        if target.is_dir():
            target = target / Path(key).name
        write_atomically(target, chunks, progress)
        return target

    def list_objects(
        self,
        bucket: str,
        prefix: str = "",
        *,
        delimiter: str | None = None,
        project: str | None = None,
    ) -> st.ObjectListing:
        """Every live object under `prefix` (all pages); with a delimiter, rolled-up prefixes."""
        params: dict[str, Any] = {"prefix": prefix}
        if delimiter:
            params["delimiter"] = delimiter
        path = f"{self._base(project)}/{seg(bucket)}/objects"
        result = st.ObjectListing(objects=[], prefixes=[])
        while True:
            page = self._c._model(st.ObjectListing, "GET", path, params=params)
            result.objects += page.objects
            result.prefixes += page.prefixes
            if not page.next_page_token:
                return result
            params["page_token"] = page.next_page_token

    def list_versions(
        self, bucket: str, prefix: str = "", *, project: str | None = None
    ) -> builtins.list[st.ObjectVersionRead]:
        path = f"{self._base(project)}/{seg(bucket)}/versions"
        return list(self._c._pages(st.ObjectVersionRead, path, {"prefix": prefix}))

    def delete_object(
        self, bucket: str, key: str, *, version_id: str | None = None, project: str | None = None
    ) -> st.ObjectVersionRead:
        params = {"version_id": version_id} if version_id else None
        return self._c._model(
            st.ObjectVersionRead, "DELETE", self._object(project, bucket, key), params=params
        )
