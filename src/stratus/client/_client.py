"""The SDK: `Client`, and through it one small API object per resource collection
(`_iam.py`, `_storage.py`, `_registry.py`, `_data.py`, `_tracking.py`, `_endpoints.py`,
`_functions.py`, …).

Every call is one HTTP request through httpx; a problem+json error comes back as the same
`stratus.errors` class the server raised. Uploads and downloads stream in chunks, so memory
stays flat whatever the object's size.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import httpx
from pydantic import BaseModel

from stratus.client._base import CHUNK, error_of
from stratus.client.credentials import (
    DEFAULT_URL,
    chosen_profile,
    credentials_path,
    read_credentials,
)
from stratus.core.errors import DataCorrupted, InvalidInput, ServiceUnavailable

if TYPE_CHECKING:
    from stratus.client._admin import Admin
    from stratus.client._alerts import Alerts
    from stratus.client._batch import BatchJobs
    from stratus.client._billing import Budgets, Cost, Prices, Quotas, Reservations
    from stratus.client._data import Datasets
    from stratus.client._endpoints import Endpoints
    from stratus.client._functions import Functions
    from stratus.client._iac import Iac
    from stratus.client._iam import Audit, Keys, Projects, ServiceAccounts, Users
    from stratus.client._jobs import Jobs
    from stratus.client._monitors import Monitors
    from stratus.client._pipelines import Pipelines
    from stratus.client._registry import Models
    from stratus.client._secrets import Secrets
    from stratus.client._storage import Buckets
    from stratus.client._tracking import Experiments
    from stratus.iam import schemas as iam

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F")


class _Family(Generic[F]):
    """A resource family of the client (`client.endpoints`, ...), imported and made on first
    use: a command that calls one family loads only its module and schemas."""

    def __init__(self, where: str) -> None:
        self.where = where  # module:class
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, client: None, owner: type) -> _Family[F]: ...
    @overload
    def __get__(self, client: Client, owner: type) -> F: ...
    def __get__(self, client: Client | None, owner: type) -> _Family[F] | F:
        if client is None:
            return self
        module, _, name = self.where.partition(":")
        family: F = getattr(importlib.import_module(module), name)(client)
        client.__dict__[self.name] = family  # from now on an attribute like any other
        return family


def _verify(url: str, ca_file: str | None = None) -> ssl.SSLContext | bool:
    """What httpx checks certificates with: for https, the CA in `ca_file` alone when given,
    else the system's trust store. Plain http needs none, and loading one costs every command
    tens of milliseconds; the context given instead trusts no certificate at all, so nothing is
    ever accepted unverified."""
    if url.startswith("http://"):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, against no authority
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=ca_file)  # host names checked too
    except (OSError, ssl.SSLError) as exc:
        reason = (
            exc.strerror
            if isinstance(exc, OSError) and exc.strerror
            else getattr(exc, "reason", None) or exc
        )
        raise InvalidInput(
            f"cannot trust the CA file {ca_file} for {url} ({reason}): give the PEM file of the "
            "CA that signed the platform's certificate (--ca-file, STRATUS_CA_FILE)"
        ) from None


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The TLS failure under an httpx error (httpx and httpcore chain theirs from it)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def certificate_rejected(exc: BaseException) -> bool:
    """Whether `exc` (an SDK error) came from a server certificate that did not verify."""
    return isinstance(_ssl_cause(exc), ssl.SSLCertVerificationError)


def unreachable(url: str, exc: httpx.TransportError) -> ServiceUnavailable:
    """The one line a failed connection to the platform becomes: a certificate that does not
    verify says how to trust it, a handshake that fails asks whether the scheme is right."""
    cause = _ssl_cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = cause.verify_message or cause.reason or str(cause)
        return ServiceUnavailable(
            f"cannot verify the TLS certificate of Stratus at {url} ({reason.rstrip('.')}): "
            "trust the CA that signed it with `stratus login --ca-file CA.pem` (or --ca-file, "
            "STRATUS_CA_FILE, Client(ca_file=...)); `stratus up --tls` keeps its CA in its "
            "home, as tls/ca.pem"
        )
    if cause is not None:
        return ServiceUnavailable(
            f"the TLS handshake with Stratus at {url} failed ({cause.reason or cause}): does it "
            "serve https? A platform started without --tls is at http://"
        )
    hint = ""
    if url.startswith("http://") and isinstance(exc, httpx.ReadError | httpx.RemoteProtocolError):
        hint = " (a platform started with --tls is at https://)"
    return ServiceUnavailable(
        f"cannot reach Stratus at {url} ({type(exc).__name__}): is it running? Start it with "
        f"`stratus up`{hint}"
    )


class Client:
    """A connection to a Stratus platform.

    Args:
        url: the platform's address; default `STRATUS_URL`, then the credentials file, then
            http://127.0.0.1:8700.
        api_key: an API key or login token; default `STRATUS_API_KEY`, then the credentials
            file in `STRATUS_HOME` (written by `stratus up` and `stratus login`).
        home: the Stratus home whose credentials file to read.
        timeout: seconds to wait for the server on each request.
        profile: the credentials file's profile to use; default `STRATUS_PROFILE`, then the
            file's current profile (`stratus profiles use`). `STRATUS_URL`,
            `STRATUS_API_KEY` and `STRATUS_PROJECT` still win over the profile's values.
        ca_file: PEM file of the CA whose certificates an https platform is trusted with
            (and no other); default `STRATUS_CA_FILE`, then the profile's `ca_file` when
            `url` is the profile's, else the system trust store.

    Raises:
        stratus.errors.InvalidInput: `profile` (or `STRATUS_PROFILE`) names no profile of
            the file, and no key was given otherwise; or the CA file cannot be read.
        stratus.errors.ServiceUnavailable: the platform cannot be reached, or its
            certificate does not verify (the message says how to trust it).
        stratus.errors.StratusError: every method raises the server's error class on failure.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        home: str | Path | None = None,
        timeout: float = 60.0,
        profile: str | None = None,
        ca_file: str | Path | None = None,
    ) -> None:
        creds = read_credentials(Path(home) if home else None, profile)
        wanted = chosen_profile(profile)
        if creds is None and wanted and api_key is None and not os.environ.get("STRATUS_API_KEY"):
            where = credentials_path(Path(home) if home else None)
            raise InvalidInput(
                f"no profile {wanted!r} in {where}: log in to it with "
                f"`stratus login --profile {wanted}`, or see `stratus profiles list`"
            )
        self.url = (
            url or os.environ.get("STRATUS_URL") or (creds.url if creds else None) or DEFAULT_URL
        ).rstrip("/")
        self.api_key = (
            api_key or os.environ.get("STRATUS_API_KEY") or (creds.secret if creds else None)
        )
        self.default_project = (
            os.environ.get("STRATUS_PROJECT") or (creds.project if creds else None) or "default"
        )
        # the profile's CA belongs to the profile's platform, not to another --url
        own_ca = creds.ca_file if creds and creds.url.rstrip("/") == self.url else None
        found_ca = ca_file or os.environ.get("STRATUS_CA_FILE") or own_ca
        self.ca_file = str(found_ca) if found_ca else None
        headers = {"user-agent": "stratus-sdk"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        self._tls = _verify(self.url, self.ca_file)
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, verify=self._tls
        )

    projects: _Family[Projects] = _Family("stratus.client._iam:Projects")
    users: _Family[Users] = _Family("stratus.client._iam:Users")
    keys: _Family[Keys] = _Family("stratus.client._iam:Keys")
    service_accounts: _Family[ServiceAccounts] = _Family("stratus.client._iam:ServiceAccounts")
    buckets: _Family[Buckets] = _Family("stratus.client._storage:Buckets")
    models: _Family[Models] = _Family("stratus.client._registry:Models")
    datasets: _Family[Datasets] = _Family("stratus.client._data:Datasets")
    experiments: _Family[Experiments] = _Family("stratus.client._tracking:Experiments")
    endpoints: _Family[Endpoints] = _Family("stratus.client._endpoints:Endpoints")
    functions: _Family[Functions] = _Family("stratus.client._functions:Functions")
    jobs: _Family[Jobs] = _Family("stratus.client._jobs:Jobs")
    batch: _Family[BatchJobs] = _Family("stratus.client._batch:BatchJobs")
    pipelines: _Family[Pipelines] = _Family("stratus.client._pipelines:Pipelines")
    monitors: _Family[Monitors] = _Family("stratus.client._monitors:Monitors")
    alerts: _Family[Alerts] = _Family("stratus.client._alerts:Alerts")
    audit: _Family[Audit] = _Family("stratus.client._iam:Audit")
    cost: _Family[Cost] = _Family("stratus.client._billing:Cost")
    prices: _Family[Prices] = _Family("stratus.client._billing:Prices")
    quotas: _Family[Quotas] = _Family("stratus.client._billing:Quotas")
    budgets: _Family[Budgets] = _Family("stratus.client._billing:Budgets")
    reservations: _Family[Reservations] = _Family("stratus.client._billing:Reservations")
    secrets: _Family[Secrets] = _Family("stratus.client._secrets:Secrets")
    admin: _Family[Admin] = _Family("stratus.client._admin:Admin")
    iac: _Family[Iac] = _Family("stratus.client._iac:Iac")

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
            raise unreachable(self.url, exc) from exc
        if response.status_code >= 400:
            raise error_of(response)
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
                    raise error_of(response)
                expected = response.headers.get("x-stratus-sha256")
                hasher = hashlib.sha256()
                for chunk in response.iter_bytes(CHUNK):
                    hasher.update(chunk)
                    yield chunk
        except httpx.ConnectError as exc:
            raise unreachable(self.url, exc) from exc
        except httpx.TransportError as exc:
            raise DataCorrupted(
                f"the download of {what!r} was cut short ({type(exc).__name__}): the server "
                "stopped sending, which it does when stored bytes fail verification"
            ) from exc
        if expected and hasher.hexdigest() != expected:
            raise DataCorrupted(f"the bytes of {what!r} do not match their SHA-256 {expected}")

    def _stream(self, path: str, params: dict[str, Any]) -> Iterator[bytes]:
        """GET a body chunk by chunk as it arrives, with no read timeout (a followed log may
        be quiet for a long time)."""
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_of(response)
                yield from response.iter_raw()
        except httpx.ConnectError as exc:
            raise unreachable(self.url, exc) from exc
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"the connection to Stratus at {self.url} broke ({type(exc).__name__})"
            ) from exc

    def health(self) -> dict[str, Any]:
        """The readiness report (`/readyz`): database and store checks."""
        try:
            response = self._http.get("/readyz")
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc
        result: dict[str, Any] = response.json()
        return result

    def whoami(self) -> iam.WhoAmI:
        from stratus.iam import schemas as iam

        return self._model(iam.WhoAmI, "GET", "/api/v1/auth/whoami")

    def login(self, username: str, password: str) -> iam.TokenRead:
        """Exchange a password for a short-lived token, and use it from now on."""
        from stratus.iam import schemas as iam

        token = self._model(
            iam.TokenRead,
            "POST",
            "/api/v1/auth/login",
            json={"username": username, "password": password},
        )
        self.api_key = token.token
        self._http.headers["authorization"] = f"Bearer {token.token}"
        return token
