"""Settings: flags, then STRATUS_* environment variables, then stratus.toml in the home.

Read once by `stratus up` (`load_settings`) and passed down explicitly; no other module reads
the environment. Groups: `server`, `tls`, `db`, `store`, `security`, `serving`, `compute`,
`monitoring`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_PORT = 8700
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def text_list(value: Any) -> Any:
    """A list setting from the environment: a comma-separated list, or a JSON array."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def networks(value: list[str]) -> list[str]:
    try:
        return [str(ipaddress.ip_network(cidr.strip(), strict=False)) for cidr in value]
    except ValueError as exc:
        raise ValueError(f"not a network (CIDR such as 10.1.0.0/16): {exc}") from None


# CIDRs, written as `ipaddress` writes them
Networks = Annotated[list[str], NoDecode, BeforeValidator(text_list), AfterValidator(networks)]


class ServerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="port to listen on")
    lease_ttl_seconds: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="one control plane runs per database: it renews its lease every third of "
        "this; a crashed one's lease is taken over once this has passed",
    )
    max_request_bytes: int = Field(
        1 << 20,
        gt=0,
        description="largest request body accepted, whatever its content type (uploads stream "
        "apart)",
    )


class TlsSettings(BaseModel):
    """https for the control plane (docs/tls.md): a certificate the user brings, or one from a
    local CA that `stratus up --tls` makes in the home's `tls` folder."""

    enabled: bool = Field(
        False,
        description="serve https; without cert_file, with a certificate from a local CA kept in "
        "the home's tls folder (made at the first start)",
    )
    cert_file: Path | None = Field(
        None, description="PEM certificate (its chain after it) to serve; implies enabled"
    )
    key_file: Path | None = Field(None, description="the PEM private key of cert_file")
    ca_file: Path | None = Field(
        None,
        description="with cert_file: the PEM CA that signed it, which this machine's clients "
        "(the credentials file, job runners) trust; default: the system trust store",
    )
    hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="more host names and addresses the local CA's server certificate names "
        "(e.g. the name other machines reach this one by). In the environment: a "
        "comma-separated list or a JSON array",
    )

    @field_validator("cert_file", "key_file", "ca_file")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()

    _hosts_list = field_validator("hosts", mode="before")(text_list)

    @field_validator("hosts")
    @classmethod
    def _hosts_names(cls, value: list[str]) -> list[str]:
        for host in value:
            if not _HOST_NAME.fullmatch(host):
                try:
                    ipaddress.ip_address(host)
                except ValueError:
                    raise ValueError(f"{host!r} is neither a host name nor an IP address") from None
        return value

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "tls.cert_file and tls.key_file go together: give both (--tls-cert and --tls-key)"
            )
        if self.cert_file is not None:
            self.enabled = True
        return self


class DatabaseSettings(BaseModel):
    url: str | None = Field(
        None,
        description="SQLAlchemy URL; default: SQLite file stratus.db in the home",
    )
    echo: bool = False


class StoreSettings(BaseModel):
    url: str | None = Field(
        None, description="fsspec URL of the object store; default: the 'store' folder in the home"
    )
    s3_endpoint_url: str | None = Field(None, description="endpoint of an S3-compatible server")
    s3_access_key_id: str | None = Field(
        None,
        description="the S3 key id, or secret:NAME for a platform secret (`stratus secrets set "
        "NAME --platform`); default: the AWS credential chain (AWS_ACCESS_KEY_ID, ...)",
    )
    s3_secret_access_key: SecretStr | None = Field(
        None, description="the S3 secret key, or secret:NAME for a platform secret"
    )
    encryption: bool = Field(True, description="encrypt objects at rest (AES-256-GCM)")
    tmp_max_age_seconds: float = Field(
        3600.0, ge=0, description="unfinished uploads older than this are swept away"
    )
    sweep_interval_seconds: float = Field(600.0, gt=0)
    connect_timeout_seconds: float = Field(
        5.0, gt=0, le=300, description="longest wait to connect to an S3-compatible server"
    )
    read_timeout_seconds: float = Field(
        20.0, gt=0, le=3600, description="longest wait for an S3-compatible server's answer"
    )
    attempts: int = Field(
        2,
        ge=1,
        le=10,
        description="tries of one S3 request before the store is reported unavailable (503)",
    )


class SecuritySettings(BaseModel):
    token_ttl_seconds: int = Field(3600, gt=0, description="lifetime of a login token")
    auth_cache_seconds: float = Field(
        5.0, ge=0, description="how long a verified credential is trusted without a lookup"
    )
    audit_checkpoint_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="how often the audit chain's head is anchored in the object store; entries "
        "newer than the last checkpoint could be removed from the end unnoticed",
    )
    login_failures_per_user: int = Field(
        5, ge=1, le=10_000, description="failed logins a user may have in the window"
    )
    login_failures_per_address: int = Field(
        20, ge=1, le=100_000, description="failed logins one source address may have in the window"
    )
    login_failure_window_seconds: float = Field(
        300.0,
        gt=0,
        le=86400,
        description="past the failures allowed in this window, logins are refused (429) until "
        "the window's share of failures has passed",
    )
    trusted_proxies: Networks = Field(
        default_factory=list,
        description="networks of the reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed (CIDRs; empty: none, the source address is the peer's). "
        "In the environment: a comma-separated list or a JSON array",
    )


class RegistrySettings(BaseModel):
    load_check_memory_mib: int = Field(
        4096,
        ge=64,
        description="memory a push's load check may take to load a model (on top of what its "
        "process holds when it starts)",
    )
    load_check_seconds: float = Field(
        120.0, gt=0, description="wall-clock and CPU time a push's load check may take to load"
    )


class ServingSettings(BaseModel):
    max_request_bytes: int = Field(
        32 << 20, gt=0, description="largest inference request body accepted"
    )
    timeout_seconds: float = Field(60.0, gt=0, description="longest wait for a replica's answer")
    reconcile_interval_seconds: float = Field(
        1.0, gt=0, description="how often the endpoint controller checks every endpoint"
    )
    start_timeout_seconds: float = Field(
        120.0, gt=0, description="a replica not ready by then is replaced"
    )
    drain_seconds: float = Field(
        10.0, ge=0, description="how long a stopping replica gets to answer what it holds"
    )
    fork_server: bool = Field(
        True, description="fork replicas from a warm process that has the ML libraries loaded"
    )
    prewarm: bool = Field(
        True,
        description="warm the fork server at start (else at the first endpoint): fast first deploy",
    )
    cold_start_queue: int = Field(
        100, ge=0, le=100_000,
        description="requests an endpoint at zero replicas holds while one starts (then 503)",
    )  # fmt: skip
    cold_start_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="how long a request waits for a replica from zero"
    )
    stop_replicas_on_shutdown: bool = Field(
        True, description="stop replicas when the control plane stops (a crash leaves them)"
    )
    runtime_dir: Path | None = Field(
        None, description="where replica sockets live; default: a short folder in /tmp"
    )


class RaySettings(BaseModel):
    address: str | None = Field(
        None,
        description="the Ray cluster's GCS address (HOST:PORT of `ray start --head`); "
        'required with backend = "ray"',
    )
    namespace: str = Field(
        "stratus",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="the Ray namespace this platform's actors live in (one per platform)",
    )
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="custom Ray resources every replica and job asks for, to keep them on the "
        'nodes that have them (e.g. {"stratus": 0.01}; the head is left alone)',
    )
    replica_cpus: float = Field(0.25, gt=0, le=1024, description="CPUs Ray reserves per replica")
    node_dir: Path | None = Field(
        None, description="on every node: logs and job folders; default: stratus-ray in its /tmp"
    )
    preload: list[str] | None = Field(
        None,
        description="modules each node's replica fork server imports once; default: numpy, "
        "sklearn, skops.io, onnxruntime, s3fs",
    )
    fork_server_idle_seconds: float = Field(
        600.0, gt=0, description="a node's fork server exits after this long without replicas"
    )


class ComputeSettings(BaseModel):
    backend: str = Field(
        "local",
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="where replicas and jobs run: local (processes of this machine) or ray",
    )
    ray: RaySettings = RaySettings()
    capacity_vcpus: float | None = Field(
        None, gt=0, description="vCPUs training jobs may use in all; default: this machine's"
    )
    capacity_memory_gib: float | None = Field(
        None, gt=0, description="memory training jobs may use in all; default: this machine's"
    )
    instance_types: Path | None = Field(
        None,
        description="a YAML file of extra instance types; default: instance_types.yaml in "
        "the home, when it exists",
    )
    scheduler_interval_seconds: float = Field(
        1.0, gt=0, le=60, description="how often the job scheduler looks at the queue"
    )
    stop_jobs_on_shutdown: bool = Field(
        True,
        description="stop running jobs when the control plane stops; they queue again and "
        "resume from their checkpoints at the next start (a crash leaves them running)",
    )


class MonitoringSettings(BaseModel):
    capture_flush_seconds: float = Field(
        2.0, gt=0, le=300, description="how often captured requests are written out as Parquet"
    )
    capture_buffer_records: int = Field(
        200_000,
        ge=1000,
        description="captured requests held in memory before writing; beyond it new ones are "
        "dropped and counted (stratus_capture_dropped_total)",
    )
    interval_seconds: float = Field(
        15.0, gt=0, le=3600, description="how often the monitor controller looks for due monitors"
    )
    alert_interval_seconds: float = Field(
        5.0, gt=0, le=3600, description="how often alert rules are evaluated"
    )
    notification_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="longest wait for a webhook or mail server"
    )
    allowed_notification_networks: Networks = Field(
        default_factory=list,
        description="networks (CIDRs, e.g. 127.0.0.0/8) notification channels may reach "
        "besides public addresses; loopback, private, link-local and other internal addresses "
        "are refused otherwise. In the environment: a comma-separated list or a JSON array",
    )


class OutboxSettings(BaseModel):
    """Work queued in the database with its cause: notifications and triggered pipeline runs."""

    hold_seconds: float = Field(
        0.0,
        ge=0,
        description="how long a queued notification or triggered pipeline start waits before "
        "it is first delivered (a grace period; 0: at once)",
    )


class BillingSettings(BaseModel):
    """Metering and cost (docs/cost.md)."""

    meter_interval_seconds: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="how often usage is metered and priced (cost shows within this and a pass)",
    )
    raw_retention_days: int = Field(
        35, ge=1, le=3650, description="how long raw usage records are kept (hourly lines stay)"
    )


class Settings(BaseSettings):
    """The root of all settings."""

    model_config = SettingsConfigDict(
        env_prefix="STRATUS_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
    )

    home: Path = Field(Path("~/.stratus"), description="where Stratus keeps its state")
    master_key: SecretStr | None = Field(
        None, description="base64 of the 32-byte master key; default: a key file in the home"
    )
    server: ServerSettings = ServerSettings()
    tls: TlsSettings = TlsSettings()
    db: DatabaseSettings = DatabaseSettings()
    store: StoreSettings = StoreSettings()
    security: SecuritySettings = SecuritySettings()
    registry: RegistrySettings = RegistrySettings()
    serving: ServingSettings = ServingSettings()
    compute: ComputeSettings = ComputeSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    outbox: OutboxSettings = OutboxSettings()
    billing: BillingSettings = BillingSettings()

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _toml_path.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None and toml_file.exists():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @property
    def database_url(self) -> str:
        return self.db.url or f"sqlite:///{self.home / 'stratus.db'}"

    @property
    def store_url(self) -> str:
        return self.store.url or str(self.home / "store")

    @property
    def internal_url(self) -> str:
        """Where this machine's workers (job runners) reach the control plane."""
        host = self.server.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.tls.enabled else "http"
        return f"{scheme}://{host}:{self.server.port}"

    @property
    def tls_dir(self) -> Path:
        """The local CA and the server certificate it signed (`stratus up --tls`)."""
        return self.home / "tls"

    @property
    def lock_path(self) -> Path:
        return self.home / "stratus.lock"

    @property
    def credentials_path(self) -> Path:
        return self.home / "credentials"

    @property
    def master_key_path(self) -> Path:
        return self.home / "master.key"

    @property
    def runtime_dir(self) -> Path:
        """Replica sockets: unix socket paths must be short, so not in a deep home."""
        if self.serving.runtime_dir is not None:
            return self.serving.runtime_dir
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"stratus-{digest}"


_toml_path: dict[str, Path | None] = {}


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Build the settings once, at start-up.

    `overrides` are the command-line flags, as nested dicts (`{"db": {"url": ...}}`). The home
    is resolved first (flag, then STRATUS_HOME) because stratus.toml lives in it.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    home = overrides.get("home") or os.environ.get("STRATUS_HOME") or "~/.stratus"
    _toml_path["path"] = Path(home).expanduser() / "stratus.toml"
    try:
        return Settings(**overrides)
    finally:
        _toml_path.pop("path", None)
