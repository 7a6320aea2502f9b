"""The endpoints API's shapes: an endpoint is a set of variants, each one model version
served by some replicas; non-shadow variants split the traffic by weight, shadow variants get
a copy of it."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from stratus.core.resource_schemas import Labels, Metadata, Name, RateLimitSpec
from stratus.secrets.schemas import SecretRefs

MAX_REPLICAS = 64


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Batching(_Input):
    """Adaptive batching of a variant's replicas (on by default for flavors that take batches)."""

    max_batch_size: int = Field(64, ge=1, le=10_000)
    max_wait_ms: float = Field(0.0, ge=0, le=1000)


class Autoscaling(_Input):
    """Replicas that follow the requests in flight: `target_concurrency` per replica, between
    `min_replicas` and `max_replicas` (min 0: no replica after `scale_to_zero_after_seconds`
    without a request). The windows and limits are Knative's (docs/autoscaling.md)."""

    min_replicas: int = Field(1, ge=0, le=MAX_REPLICAS)
    max_replicas: int = Field(..., ge=1, le=MAX_REPLICAS)
    target_concurrency: float = Field(4.0, gt=0, le=10_000, description="in flight per replica")
    scale_to_zero_after_seconds: float = Field(300.0, ge=0, le=7 * 86400)
    stable_window_seconds: float = Field(60.0, ge=1, le=3600)
    panic_window_seconds: float = Field(6.0, ge=1, le=3600)
    scale_down_delay_seconds: float = Field(30.0, ge=0, le=3600)
    max_scale_up_rate: float = Field(10.0, gt=1, le=1000)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is more than max_replicas "
                f"({self.max_replicas})"
            )
        if self.panic_window_seconds > self.stable_window_seconds:
            raise ValueError("panic_window_seconds must not be longer than stable_window_seconds")
        return self


DEFAULT_INSTANCE_TYPE = "cpu.small"


class VariantSpec(_Input):
    """One model version behind an endpoint.

    `model` is a reference as users write it (`NAME`, `NAME:N`, `NAME@ALIAS`); the server pins
    it to a version number when the spec is written, so moving an alias later never changes a
    running endpoint by itself.
    """

    name: Name = "main"
    model: str = Field(..., min_length=1, max_length=200, description="NAME, NAME:N or NAME@ALIAS")
    version: int | None = Field(None, ge=1, description="the pinned version (set by the server)")
    replicas: int = Field(1, ge=0, le=MAX_REPLICAS, description="ignored when it autoscales")
    traffic: int = Field(100, ge=0, le=100, description="share of requests, in percent")
    shadow: bool = Field(False, description="gets a copy of the traffic; its answers are dropped")
    batching: Batching = Field(default_factory=Batching)
    autoscaling: Autoscaling | None = Field(
        None, description="follow the requests in flight instead of a fixed count of replicas"
    )
    instance_type: str = Field(
        DEFAULT_INSTANCE_TYPE,
        min_length=1,
        max_length=63,
        description="the size each replica is billed at (`stratus jobs instance-types`)",
    )


class CaptureSpec(_Input):
    """Data capture: a sample of the endpoint's answered requests, with their predictions,
    written off the request path as hourly Parquet files for the monitors to read.

    `pii` columns are masked (replaced by "***") or dropped before anything is written.
    `subject` names the column that identifies a data subject (a customer id, say): a model
    input or one of the endpoint's pass-through columns. Its keyed hash is kept with every
    record so that one subject's records can be erased on request, even when the column itself
    is masked or dropped.
    """

    sample: float = Field(0.0, ge=0.0, le=1.0, description="share of requests kept; 0 is off")
    pii: list[str] = Field(default_factory=list, max_length=200, description="input columns")
    pii_action: Literal["mask", "drop"] = "mask"
    subject: str | None = Field(None, min_length=1, max_length=200)
    retention_days: int = Field(30, ge=1, le=3650, description="captures older are deleted")

    @property
    def enabled(self) -> bool:
        return self.sample > 0


def check_cidrs(cidrs: list[str]) -> list[str]:
    """Networks as written by `ipaddress` (`10.0.0.0/8`, `2001:db8::/32`; a bare address is
    its /32 or /128), each once."""
    kept: list[str] = []
    for text in cidrs:
        try:
            network = str(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{text!r} is not an IP network: write it as 10.0.0.0/8, 192.168.1.7 or "
                "2001:db8::/32"
            ) from None
        if network not in kept:
            kept.append(network)
    return kept


class AccessSpec(_Input):
    """Who may reach the endpoint from where: source networks and a rate limit. Whether a
    credential is needed is `public`."""

    allowed_cidrs: Annotated[list[str], AfterValidator(check_cidrs)] = Field(
        default_factory=list,
        max_length=200,
        description="source networks that may call the endpoint (like a security group); "
        "empty: any",
    )
    rate_limit: RateLimitSpec | None = Field(None, description="requests per second, for all")


def check_passthrough(names: list[str]) -> list[str]:
    for name in names:
        if not name or len(name) > 200 or name != name.strip():
            raise ValueError(
                f"pass-through column {name!r}: names are 1 to 200 characters, no outer spaces"
            )
    if len(set(names)) != len(names):
        twice = next(n for i, n in enumerate(names) if n in names[:i])
        raise ValueError(f"pass-through column {twice!r} is named twice")
    return names


Passthrough = Annotated[
    list[str],
    Field(
        max_length=50,
        description="columns a request may carry beside the model's inputs (ids, subjects, "
        "timestamps): captured and echoed in the answer, never given to the model",
    ),
    AfterValidator(check_passthrough),
]


class EndpointSpec(BaseModel):
    description: str = ""
    public: bool = False
    variants: list[VariantSpec]
    capture: CaptureSpec = Field(default_factory=CaptureSpec)
    passthrough: list[str] = Field(
        default_factory=list,
        description="columns a request may carry beside the model's inputs (ids, subjects, "
        "timestamps): captured and echoed in the answer, never given to the model",
    )
    access: AccessSpec = Field(default_factory=AccessSpec)
    secrets: list[str] = Field(
        default_factory=list, description="secrets the replicas get: VARIABLE=NAME or NAME"
    )
    revision: int = Field(1, description="set by the server; every change adds one")


def check_variants(variants: list[VariantSpec]) -> list[VariantSpec]:
    names = [v.name for v in variants]
    if not variants:
        raise ValueError("an endpoint needs at least one variant")
    if len(set(names)) != len(names):
        raise ValueError("variant names must be unique")
    live = [v for v in variants if not v.shadow]
    if not live:
        raise ValueError("an endpoint needs at least one variant that is not a shadow")
    total = sum(v.traffic for v in live)
    if total != 100:
        raise ValueError(f"the traffic of the non-shadow variants must add up to 100, not {total}")
    return variants


class EndpointCreate(_Input):
    name: Name
    description: str = Field("", max_length=5000)
    labels: Labels = Field(default_factory=dict)
    public: bool = Field(False, description="callable without a credential")
    variants: list[VariantSpec] = Field(..., min_length=1, max_length=8)
    capture: CaptureSpec = Field(default_factory=CaptureSpec)
    passthrough: Passthrough = Field(default_factory=list)
    access: AccessSpec = Field(default_factory=AccessSpec)
    secrets: SecretRefs = Field(default_factory=list)
    reason: str = Field("", max_length=1000)

    @model_validator(mode="after")
    def _variants(self) -> EndpointCreate:
        check_variants(self.variants)
        return self


class EndpointUpdate(_Input):
    """A change of the spec; `variants`, when given, replaces them all (a rolling update)."""

    description: str | None = Field(None, max_length=5000)
    labels: Labels | None = None
    public: bool | None = None
    variants: list[VariantSpec] | None = Field(None, min_length=1, max_length=8)
    capture: CaptureSpec | None = Field(None, description="replaces the capture settings")
    passthrough: Passthrough | None = Field(None, description="replaces the pass-through columns")
    access: AccessSpec | None = Field(None, description="replaces the network rules and limit")
    secrets: SecretRefs | None = Field(None, description="replaces the secrets replicas get")
    reason: str = Field("", max_length=1000)
    resource_version: int | None = None

    @model_validator(mode="after")
    def _variants(self) -> EndpointUpdate:
        if self.variants is not None:
            check_variants(self.variants)
        return self


class CanaryCreate(_Input):
    """Add (or replace) the `canary` variant, taking `traffic` percent from the main one."""

    model: str = Field(..., min_length=1, max_length=200)
    traffic: int = Field(10, ge=1, le=99)
    replicas: int | None = Field(None, ge=1, le=MAX_REPLICAS, description="default: main's")
    reason: str = Field("", max_length=1000)
    resource_version: int | None = None


class ShadowCreate(_Input):
    """Add (or replace) the `shadow` variant: a copy of the traffic, answers dropped."""

    model: str = Field(..., min_length=1, max_length=200)
    replicas: int = Field(1, ge=1, le=MAX_REPLICAS)
    reason: str = Field("", max_length=1000)
    resource_version: int | None = None


class RolloutAction(_Input):
    """Promote the canary, or roll back (drop the canary; with none, return to the revision
    before the current one, or to `to_revision`)."""

    reason: str = Field("", max_length=1000)
    to_revision: int | None = Field(None, ge=1)
    resource_version: int | None = None


ReplicaPhase = Literal["starting", "ready", "draining", "exited"]


class ReplicaRead(BaseModel):
    """One replica: `id` is the same on every backend; `node` says where it runs and `address`
    where the gateway reaches it; `pid` is the local backend's process id (None elsewhere)."""

    id: str
    variant: str
    model_version: int
    phase: ReplicaPhase
    node: str = ""
    address: str = ""
    pid: int | None = None
    started_at: datetime | None = None
    ready_at: datetime | None = None
    in_flight: int = 0
    detail: str = ""


class VariantStatus(BaseModel):
    name: str
    model: str
    version: int
    desired: int
    ready: int
    updated: int = Field(description="ready replicas of the current version")
    restarts: int = 0
    message: str = ""


Phase = Literal["pending", "ready", "updating", "degraded", "failed"]


class EndpointStatus(BaseModel):
    phase: Phase = "pending"
    message: str = ""
    url: str = ""
    observed_revision: int = Field(
        0, description="the spec revision this status describes (behind spec.revision: not yet)"
    )
    variants: list[VariantStatus] = Field(default_factory=list)
    replicas: list[ReplicaRead] = Field(default_factory=list)
    observed_at: datetime | None = None


class EndpointRead(BaseModel):
    kind: Literal["Endpoint"] = "Endpoint"
    metadata: Metadata
    spec: EndpointSpec
    status: EndpointStatus


class RevisionRead(BaseModel):
    """One change of an endpoint's spec: who, when, what, why."""

    revision: int
    action: str
    actor: str
    reason: str
    time: datetime
    spec: EndpointSpec


class LogLines(BaseModel):
    replica: str
    lines: list[str]


class VariantTraffic(BaseModel):
    """One variant's answered requests since the control plane started (all its versions)."""

    requests: int
    errors: int = Field(description="server errors: status 500 and above")
    client_errors: int = Field(description="status 400 to 499: the callers' mistakes")
    p50_ms: float | None = Field(description="latency quantiles at the gateway; None: no request")
    p95_ms: float | None
    p99_ms: float | None


class EndpointEventRead(BaseModel):
    """Something the controller did to an endpoint by itself (a scaling step), and why."""

    time: datetime
    variant: str
    kind: Literal["scaled"]
    from_replicas: int
    to_replicas: int
    reason: str
