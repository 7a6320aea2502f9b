"""The IAM API's shapes: what clients send and what they get back."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stratus.core.resource_schemas import ALL_PROJECTS as ALL_PROJECTS
from stratus.core.resource_schemas import Labels, Metadata, Name, RateLimitSpec
from stratus.iam.roles import PlatformRole, Role


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- projects --------------------------------------------------------------------------------


class ProjectCreate(_Input):
    name: Name
    description: str = Field("", max_length=2000)
    labels: Labels = Field(default_factory=dict)


class ProjectUpdate(_Input):
    description: str | None = Field(None, max_length=2000)
    labels: Labels | None = None
    resource_version: int | None = Field(None, description="the version you read (409 if stale)")


class ProjectSpec(BaseModel):
    description: str
    rate_limit: RateLimitSpec | None = Field(
        None, description="each caller's requests per second into the project (set by an admin)"
    )


class ProjectStatus(BaseModel):
    your_role: Role | None = Field(None, description="the caller's role in this project")


class ProjectRead(BaseModel):
    kind: Literal["Project"] = "Project"
    metadata: Metadata
    spec: ProjectSpec
    status: ProjectStatus


# --- users -----------------------------------------------------------------------------------


class UserCreate(_Input):
    name: Name
    password: str | None = Field(None, min_length=8, max_length=1024)
    email: str | None = Field(None, max_length=254)
    is_admin: bool = False
    platform_role: PlatformRole | None = Field(
        None, description="a role over every project short of admin: metrics-reader"
    )
    labels: Labels = Field(default_factory=dict)


class UserUpdate(_Input):
    password: str | None = Field(None, min_length=8, max_length=1024)
    email: str | None = Field(None, max_length=254)
    is_admin: bool | None = None
    platform_role: PlatformRole | Literal["none"] | None = Field(
        None, description="metrics-reader, or none to take it away"
    )
    disabled: bool | None = None
    labels: Labels | None = None
    resource_version: int | None = None


class UserSpec(BaseModel):
    email: str | None
    is_admin: bool
    platform_role: PlatformRole | None = None
    disabled: bool


class UserStatus(BaseModel):
    has_password: bool


class UserRead(BaseModel):
    kind: Literal["User"] = "User"
    metadata: Metadata
    spec: UserSpec
    status: UserStatus


# --- service accounts ------------------------------------------------------------------------


class ServiceAccountCreate(_Input):
    name: Name
    description: str = Field("", max_length=2000)
    role: Role | None = Field(None, description="bind this role in the project at once")
    labels: Labels = Field(default_factory=dict)


class ServiceAccountUpdate(_Input):
    description: str | None = Field(None, max_length=2000)
    labels: Labels | None = None
    resource_version: int | None = None


class ServiceAccountSpec(BaseModel):
    description: str


class ServiceAccountStatus(BaseModel):
    role: Role | None


class ServiceAccountRead(BaseModel):
    kind: Literal["ServiceAccount"] = "ServiceAccount"
    metadata: Metadata
    spec: ServiceAccountSpec
    status: ServiceAccountStatus


# --- members (role bindings) -----------------------------------------------------------------


class MemberSet(_Input):
    user: Name | None = Field(None, description="a user's name")
    service_account: Name | None = Field(None, description="a service account of this project")
    role: Role


class MemberRead(BaseModel):
    kind: Literal["RoleBinding"] = "RoleBinding"
    subject: str = Field(description="user:NAME or serviceaccount:NAME")
    role: Role
    created_at: datetime


# --- keys ------------------------------------------------------------------------------------


class KeyCreate(_Input):
    name: Name = "default"
    user: Name | None = Field(None, description="whose key (admins only; default: yourself)")
    project: Name | None = Field(None, description="restrict the key to this project")
    expires_in_days: float | None = Field(None, gt=0, le=3650)


class ServiceAccountKeyCreate(_Input):
    name: Name = "default"
    expires_in_days: float | None = Field(None, gt=0, le=3650)


class KeyRead(BaseModel):
    kind: Literal["ApiKey"] = "ApiKey"
    key_id: str
    name: str
    owner: str = Field(description="user:NAME or serviceaccount:PROJECT/NAME")
    project: str | None
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    state: Literal["active", "expired", "revoked"]
    rate_limit: RateLimitSpec | None = Field(None, description="the key's own limit")


class KeyCreated(KeyRead):
    secret: str = Field(description="the API key; shown this once, never again")


DEFAULT_OVERLAP_SECONDS = 86400.0
MAX_OVERLAP_SECONDS = 30 * 86400.0


class KeyRotate(_Input):
    overlap_seconds: float = Field(
        DEFAULT_OVERLAP_SECONDS,
        ge=0,
        le=MAX_OVERLAP_SECONDS,
        description="how long the old key keeps working beside the new one (0: it stops now)",
    )


class KeyRotated(KeyCreated):
    """The new key (its secret shown this once), and the key it replaces, as it is now."""

    replaced: KeyRead


# --- login -----------------------------------------------------------------------------------


class LoginRequest(_Input):
    username: str = Field(min_length=1, max_length=63)
    password: str = Field(min_length=1, max_length=1024)


class TokenRead(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    user: str


class WhoAmI(BaseModel):
    subject: str
    kind: Literal["user", "serviceaccount"]
    name: str
    is_admin: bool
    key_id: str | None
    key_project: str | None
    roles: dict[str, Role]


# --- audit -----------------------------------------------------------------------------------


class AuditEventRead(BaseModel):
    seq: int
    time: datetime
    actor: str
    action: str
    resource: str
    project: str | None
    outcome: Literal["success", "denied", "failure"]
    status_code: int
    request_id: str
    source: str
    details: dict[str, Any]
    hash: str


class AuditVerification(BaseModel):
    ok: bool
    checked: int = Field(description="entries checked")
    first_bad_seq: int | None = None
    problem: str | None = None
    checkpoint_seq: int | None = Field(
        None,
        description="the newest entry anchored by the signed checkpoint in the object store: "
        "entries after it could still be removed from the end unnoticed",
    )
