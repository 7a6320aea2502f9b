"""The SDK: `Client` and one small API object per resource collection.

Every call is one HTTP request through httpx; a problem+json error comes back as the same
`stratus.errors` class the server raised. Uploads and downloads stream in chunks, so memory
stays flat whatever the object's size.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from stratus.client.credentials import DEFAULT_URL, read_credentials
from stratus.core.errors import (
    DataCorrupted,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    StratusError,
    error_from_problem,
)
from stratus.iam import schemas as iam
from stratus.registry import schemas as rg
from stratus.registry.flavors import base as _flavor_errors  # noqa: F401 (registers errors)
from stratus.registry.references import ModelRef, parse_ref
from stratus.storage import schemas as st

M = TypeVar("M", bound=BaseModel)
Progress = Callable[[int], None]  # called with the number of bytes just moved
CHUNK = 1 << 20


class Client:
    """A connection to a Stratus platform.

    Args:
        url: the platform's address; default `STRATUS_URL`, then the credentials file, then
            http://127.0.0.1:8700.
        api_key: an API key or login token; default `STRATUS_API_KEY`, then the credentials
            file in `STRATUS_HOME` (written by `stratus up` and `stratus login`).
        home: the Stratus home whose credentials file to read.
        timeout: seconds to wait for the server on each request.

    Raises:
        stratus.errors.StratusError: every method raises the server's error class on failure.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        home: str | Path | None = None,
        timeout: float = 60.0,
    ) -> None:
        creds = read_credentials(Path(home) if home else None)
        self.url = (
            url or os.environ.get("STRATUS_URL") or (creds.url if creds else None) or DEFAULT_URL
        ).rstrip("/")
        self.api_key = (
            api_key or os.environ.get("STRATUS_API_KEY") or (creds.secret if creds else None)
        )
        self.default_project = (creds.project if creds else None) or "default"
        headers = {"user-agent": "stratus-sdk"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.projects = Projects(self)
        self.users = Users(self)
        self.keys = Keys(self)
        self.service_accounts = ServiceAccounts(self)
        self.buckets = Buckets(self)
        self.models = Models(self)
        self.audit = Audit(self)

    # --- plumbing ------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"cannot reach Stratus at {self.url} ({type(exc).__name__}): "
                "is it running? Start it with `stratus up`"
            ) from exc
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        return response.json() if response.content else None

    def _model(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate(self._json(method, path, **kwargs))

    def _pages(self, model: type[M], path: str, params: dict[str, Any]) -> Iterator[M]:
        params = {k: v for k, v in params.items() if v is not None}
        while True:
            page = self._json("GET", path, params=params)
            for item in page["items"]:
                yield model.model_validate(item)
            token = page.get("next_page_token")
            if not token:
                return
            params["page_token"] = token

    # --- platform ------------------------------------------------------------------------------

    def _stream_verified(
        self, path: str, what: str, params: dict[str, str] | None = None
    ) -> Iterator[bytes]:
        """GET bytes chunk by chunk, checking them against the X-Stratus-Sha256 header."""
        try:
            with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                expected = response.headers.get("x-stratus-sha256")
                hasher = hashlib.sha256()
                for chunk in response.iter_bytes(CHUNK):
                    hasher.update(chunk)
                    yield chunk
        except httpx.TransportError as exc:
            raise DataCorrupted(
                f"the download of {what!r} was cut short ({type(exc).__name__}): the server "
                "stopped sending, which it does when stored bytes fail verification"
            ) from exc
        if expected and hasher.hexdigest() != expected:
            raise DataCorrupted(f"the bytes of {what!r} do not match their SHA-256 {expected}")

    def health(self) -> dict[str, Any]:
        """The readiness report (`/readyz`): database and store checks."""
        try:
            response = self._http.get("/readyz")
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"cannot reach Stratus at {self.url}: is it running?") from exc
        result: dict[str, Any] = response.json()
        return result

    def whoami(self) -> iam.WhoAmI:
        return self._model(iam.WhoAmI, "GET", "/api/v1/auth/whoami")

    def login(self, username: str, password: str) -> iam.TokenRead:
        """Exchange a password for a short-lived token, and use it from now on."""
        token = self._model(
            iam.TokenRead,
            "POST",
            "/api/v1/auth/login",
            json={"username": username, "password": password},
        )
        self.api_key = token.token
        self._http.headers["authorization"] = f"Bearer {token.token}"
        return token


def _error(response: httpx.Response) -> StratusError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if "detail" not in body:
        body["detail"] = f"HTTP {response.status_code}: {response.text[:200]}"
    return error_from_problem(response.status_code, body)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _key_path(key: str) -> str:
    """An object key as a URL path; '.' and '..' segments are percent-encoded, else the HTTP
    client would drop them and send the request to another key (or another bucket)."""
    segments = [quote(part, safe="") for part in key.split("/")]
    return "/".join(s.replace(".", "%2E") if s in (".", "..") else s for s in segments)


def _labels(labels: dict[str, str] | None) -> dict[str, str]:
    return dict(labels or {})


class _API:
    def __init__(self, client: Client) -> None:
        self._c = client

    def _project(self, project: str | None) -> str:
        return _seg(project or self._c.default_project)


class Projects(_API):
    def create(
        self, name: str, description: str = "", labels: dict[str, str] | None = None
    ) -> iam.ProjectRead:
        body = {"name": name, "description": description, "labels": _labels(labels)}
        return self._c._model(iam.ProjectRead, "POST", "/api/v1/projects", json=body)

    def list(self, selector: str | None = None) -> builtins.list[iam.ProjectRead]:
        return list(self._c._pages(iam.ProjectRead, "/api/v1/projects", {"selector": selector}))

    def get(self, name: str) -> iam.ProjectRead:
        return self._c._model(iam.ProjectRead, "GET", f"/api/v1/projects/{_seg(name)}")

    def update(
        self,
        name: str,
        *,
        description: str | None = None,
        labels: dict[str, str] | None = None,
        resource_version: int | None = None,
    ) -> iam.ProjectRead:
        body = {"description": description, "labels": labels, "resource_version": resource_version}
        body = {k: v for k, v in body.items() if v is not None}
        return self._c._model(iam.ProjectRead, "PATCH", f"/api/v1/projects/{_seg(name)}", json=body)

    def delete(self, name: str) -> None:
        self._c._send("DELETE", f"/api/v1/projects/{_seg(name)}")

    def members(self, name: str) -> builtins.list[iam.MemberRead]:
        data = self._c._json("GET", f"/api/v1/projects/{_seg(name)}/members")
        return [iam.MemberRead.model_validate(m) for m in data]

    def set_member(
        self,
        name: str,
        role: str,
        *,
        user: str | None = None,
        service_account: str | None = None,
    ) -> iam.MemberRead:
        body = {"role": role, "user": user, "service_account": service_account}
        body = {k: v for k, v in body.items() if v is not None}
        path = f"/api/v1/projects/{_seg(name)}/members"
        return self._c._model(iam.MemberRead, "PUT", path, json=body)

    def remove_member(self, name: str, subject: str) -> None:
        self._c._send("DELETE", f"/api/v1/projects/{_seg(name)}/members/{_seg(subject)}")


class Users(_API):
    def create(
        self,
        name: str,
        password: str | None = None,
        *,
        email: str | None = None,
        is_admin: bool = False,
        labels: dict[str, str] | None = None,
    ) -> iam.UserRead:
        body = {
            "name": name,
            "password": password,
            "email": email,
            "is_admin": is_admin,
            "labels": _labels(labels),
        }
        body = {k: v for k, v in body.items() if v is not None}
        return self._c._model(iam.UserRead, "POST", "/api/v1/users", json=body)

    def list(self, selector: str | None = None) -> list[iam.UserRead]:
        return list(self._c._pages(iam.UserRead, "/api/v1/users", {"selector": selector}))

    def get(self, name: str) -> iam.UserRead:
        return self._c._model(iam.UserRead, "GET", f"/api/v1/users/{_seg(name)}")

    def update(self, name: str, **changes: Any) -> iam.UserRead:
        body = {k: v for k, v in changes.items() if v is not None}
        return self._c._model(iam.UserRead, "PATCH", f"/api/v1/users/{_seg(name)}", json=body)

    def delete(self, name: str) -> None:
        self._c._send("DELETE", f"/api/v1/users/{_seg(name)}")


class Keys(_API):
    def create(
        self,
        name: str = "default",
        *,
        user: str | None = None,
        project: str | None = None,
        expires_in_days: float | None = None,
    ) -> iam.KeyCreated:
        """A new API key (its `secret` is shown this once)."""
        body = {"name": name, "user": user, "project": project, "expires_in_days": expires_in_days}
        body = {k: v for k, v in body.items() if v is not None}
        return self._c._model(iam.KeyCreated, "POST", "/api/v1/keys", json=body)

    def list(self, all: bool = False) -> list[iam.KeyRead]:
        data = self._c._json("GET", "/api/v1/keys", params={"all": str(all).lower()})
        return [iam.KeyRead.model_validate(k) for k in data]

    def revoke(self, key_id: str) -> iam.KeyRead:
        return self._c._model(iam.KeyRead, "DELETE", f"/api/v1/keys/{_seg(key_id)}")


class ServiceAccounts(_API):
    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/serviceaccounts"

    def create(
        self,
        name: str,
        *,
        project: str | None = None,
        role: str | None = None,
        description: str = "",
    ) -> iam.ServiceAccountRead:
        body = {"name": name, "role": role, "description": description}
        body = {k: v for k, v in body.items() if v is not None}
        return self._c._model(iam.ServiceAccountRead, "POST", self._base(project), json=body)

    def list(self, project: str | None = None) -> builtins.list[iam.ServiceAccountRead]:
        return list(self._c._pages(iam.ServiceAccountRead, self._base(project), {}))

    def delete(self, name: str, project: str | None = None) -> None:
        self._c._send("DELETE", f"{self._base(project)}/{_seg(name)}")

    def create_key(
        self,
        name: str,
        *,
        project: str | None = None,
        key_name: str = "default",
        expires_in_days: float | None = None,
    ) -> iam.KeyCreated:
        body = {"name": key_name, "expires_in_days": expires_in_days}
        body = {k: v for k, v in body.items() if v is not None}
        path = f"{self._base(project)}/{_seg(name)}/keys"
        return self._c._model(iam.KeyCreated, "POST", path, json=body)

    def list_keys(self, name: str, project: str | None = None) -> builtins.list[iam.KeyRead]:
        data = self._c._json("GET", f"{self._base(project)}/{_seg(name)}/keys")
        return [iam.KeyRead.model_validate(k) for k in data]

    def revoke_key(self, name: str, key_id: str, project: str | None = None) -> iam.KeyRead:
        path = f"{self._base(project)}/{_seg(name)}/keys/{_seg(key_id)}"
        return self._c._model(iam.KeyRead, "DELETE", path)


Source = bytes | str | Path | IO[bytes] | Iterable[bytes]


class Buckets(_API):
    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/buckets"

    def _object(self, project: str | None, bucket: str, key: str) -> str:
        return f"{self._base(project)}/{_seg(bucket)}/objects/{_key_path(key)}"

    def create(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str = "",
        labels: dict[str, str] | None = None,
    ) -> st.BucketRead:
        body = {"name": name, "description": description, "labels": _labels(labels)}
        return self._c._model(st.BucketRead, "POST", self._base(project), json=body)

    def list(self, project: str | None = None, selector: str | None = None) -> list[st.BucketRead]:
        return list(self._c._pages(st.BucketRead, self._base(project), {"selector": selector}))

    def get(self, name: str, project: str | None = None) -> st.BucketRead:
        return self._c._model(st.BucketRead, "GET", f"{self._base(project)}/{_seg(name)}")

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
        path = f"{self._base(project)}/{_seg(name)}"
        return self._c._model(st.BucketRead, "PATCH", path, json=body)

    def delete(self, name: str, project: str | None = None, force: bool = False) -> None:
        params = {"force": "true"} if force else None
        self._c._send("DELETE", f"{self._base(project)}/{_seg(name)}", params=params)

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
            chunks = _read_file(path)
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
                        raise _error(failed) from None
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
        _write_atomically(target, chunks, progress)
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
        path = f"{self._base(project)}/{_seg(bucket)}/objects"
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
        path = f"{self._base(project)}/{_seg(bucket)}/versions"
        return list(self._c._pages(st.ObjectVersionRead, path, {"prefix": prefix}))

    def delete_object(
        self, bucket: str, key: str, *, version_id: str | None = None, project: str | None = None
    ) -> st.ObjectVersionRead:
        params = {"version_id": version_id} if version_id else None
        return self._c._model(
            st.ObjectVersionRead, "DELETE", self._object(project, bucket, key), params=params
        )


class Models(_API):
    """The model registry: push versions, read them, move aliases."""

    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/models"

    def _version_path(self, ref: ModelRef, project: str | None) -> str:
        return f"{self._base(project)}/{_seg(ref.model)}/versions/{_seg(ref.selector)}"

    def create(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str = "",
        labels: dict[str, str] | None = None,
    ) -> rg.ModelRead:
        body = {"name": name, "description": description, "labels": _labels(labels)}
        return self._c._model(rg.ModelRead, "POST", self._base(project), json=body)

    def list(
        self, project: str | None = None, selector: str | None = None
    ) -> builtins.list[rg.ModelRead]:
        return list(self._c._pages(rg.ModelRead, self._base(project), {"selector": selector}))

    def get(self, name: str, project: str | None = None) -> rg.ModelRead:
        return self._c._model(rg.ModelRead, "GET", f"{self._base(project)}/{_seg(name)}")

    def delete(self, name: str, project: str | None = None, force: bool = False) -> None:
        params = {"force": "true"} if force else None
        self._c._send("DELETE", f"{self._base(project)}/{_seg(name)}", params=params)

    def push(
        self,
        path: str | Path,
        name: str,
        *,
        project: str | None = None,
        flavor: str | None = None,
        trusted: bool = False,
        signature: dict[str, Any] | None = None,
        sample: Any = None,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        dataset_version: str | None = None,
        training_run: str | None = None,
        source_commit: str | None = None,
        description: str = "",
        card: str = "",
        progress: Progress | None = None,
    ) -> rg.VersionRead:
        """Push a model file or folder as a new version (the model is created if needed).

        Only files the project does not store yet are uploaded. `sample` (a DataFrame, a dict
        of columns, a list of rows or a 2-D array) infers the signature when none is given.

        Returns:
            The committed version.
        """
        files = _artifact_files(Path(path))
        if signature is None and sample is not None:
            from stratus.registry.signatures import infer_signature

            signature = infer_signature(sample).model_dump(mode="json")
        try:
            self.get(name, project)
        except NotFound:
            self.create(name, project=project)
        body: dict[str, Any] = {
            "files": [{"path": rel, "sha256": sha, "size": size} for rel, _, sha, size in files],
            "flavor": flavor,
            "trusted": trusted,
            "signature": signature,
            "metrics": metrics or {},
            "params": params or {},
            "tags": tags or {},
            "lineage": {
                "dataset_version": dataset_version,
                "training_run": training_run,
                "source_commit": source_commit,
            },
            "description": description,
            "card": card,
        }
        base = f"{self._base(project)}/{_seg(name)}/versions"
        version = self._c._model(rg.VersionRead, "POST", base, json=body)
        stored = {f.path for f in version.files if f.stored}
        for rel, local, _, _ in files:
            if rel in stored:
                if progress:
                    progress(local.stat().st_size)
                continue

            def chunks(local: Path = local) -> Iterator[bytes]:
                for chunk in _read_file(local):
                    if progress:
                        progress(len(chunk))
                    yield chunk

            self._c._send(
                "PUT",
                f"{base}/{version.version}/files/{_key_path(rel)}",
                content=chunks(),
                headers={"content-length": str(local.stat().st_size)},
            )
        return self._c._model(rg.VersionRead, "POST", f"{base}/{version.version}/commit")

    def versions(self, name: str, project: str | None = None) -> builtins.list[rg.VersionRead]:
        data = self._c._json("GET", f"{self._base(project)}/{_seg(name)}/versions")
        return [rg.VersionRead.model_validate(v) for v in data]

    def version(self, ref: str, project: str | None = None) -> rg.VersionRead:
        """A version by reference: `name` (latest), `name:3`, or `name@production`."""
        return self._c._model(rg.VersionRead, "GET", self._version_path(parse_ref(ref), project))

    def update_version(
        self,
        ref: str,
        *,
        project: str | None = None,
        trusted: bool | None = None,
        tags: dict[str, str] | None = None,
        description: str | None = None,
        card: str | None = None,
    ) -> rg.VersionRead:
        body = {"trusted": trusted, "tags": tags, "description": description, "card": card}
        body = {k: v for k, v in body.items() if v is not None}
        path = self._version_path(parse_ref(ref), project)
        return self._c._model(rg.VersionRead, "PATCH", path, json=body)

    def delete_version(self, ref: str, project: str | None = None, force: bool = False) -> None:
        params = {"force": "true"} if force else None
        self._c._send("DELETE", self._version_path(parse_ref(ref), project), params=params)

    def card(self, ref: str, project: str | None = None) -> str:
        data = self._c._json("GET", self._version_path(parse_ref(ref), project) + "/card")
        return str(data["card"])

    def set_alias(
        self, name: str, alias: str, version: int, *, project: str | None = None, reason: str = ""
    ) -> rg.AliasRead:
        path = f"{self._base(project)}/{_seg(name)}/aliases/{_seg(alias)}"
        body = {"version": version, "reason": reason}
        return self._c._model(rg.AliasRead, "PUT", path, json=body)

    def delete_alias(
        self, name: str, alias: str, *, project: str | None = None, reason: str = ""
    ) -> None:
        path = f"{self._base(project)}/{_seg(name)}/aliases/{_seg(alias)}"
        self._c._send("DELETE", path, params={"reason": reason})

    def aliases(self, name: str, project: str | None = None) -> builtins.list[rg.AliasRead]:
        data = self._c._json("GET", f"{self._base(project)}/{_seg(name)}/aliases")
        return [rg.AliasRead.model_validate(a) for a in data]

    def alias_history(
        self, name: str, alias: str | None = None, project: str | None = None
    ) -> builtins.list[rg.AliasEvent]:
        params = {"alias": alias} if alias else None
        path = f"{self._base(project)}/{_seg(name)}/alias-history"
        data = self._c._json("GET", path, params=params)
        return [rg.AliasEvent.model_validate(e) for e in data]

    def pull(self, ref: str, dest: str | Path, project: str | None = None) -> Path:
        """Download every file of a version into the folder `dest` (verified, atomic per file)."""
        version = self.version(ref, project)
        root = Path(dest)
        root.mkdir(parents=True, exist_ok=True)
        base = self._version_path(ModelRef(version.model, version=version.version), project)
        for entry in version.files:
            target = root / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            chunks = self._c._stream_verified(f"{base}/files/{_key_path(entry.path)}", entry.path)
            _write_atomically(target, chunks)
        return root


def _artifact_files(path: Path) -> builtins.list[tuple[str, Path, str, int]]:
    """(relative posix path, local path, sha256, size) of a model file or every file of a folder."""
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
    if not candidates:
        raise InvalidInput(f"{path} holds no files")
    out = []
    for rel, local in candidates:
        hasher = hashlib.sha256()
        for chunk in _read_file(local):
            hasher.update(chunk)
        out.append((rel, local, hasher.hexdigest(), local.stat().st_size))
    return out


def _write_atomically(
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


def _read_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


class Audit(_API):
    def list(
        self,
        *,
        project: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: str | None = None,
        until: str | None = None,
        order: str = "desc",
        limit: int | None = None,
    ) -> list[iam.AuditEventRead]:
        params = {
            "project": project,
            "actor": actor,
            "action": action,
            "since": since,
            "until": until,
            "order": order,
        }
        events: list[iam.AuditEventRead] = []
        for event in self._c._pages(iam.AuditEventRead, "/api/v1/audit", params):
            events.append(event)
            if limit is not None and len(events) >= limit:
                break
        return events

    def verify(self) -> iam.AuditVerification:
        return self._c._model(iam.AuditVerification, "GET", "/api/v1/audit/verify")
