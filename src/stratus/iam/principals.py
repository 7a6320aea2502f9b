"""Who is calling: the principal a credential resolves to, and what it may do where."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from stratus.core.token_buckets import Limit
from stratus.iam.roles import Permission, PlatformRole, Role, grants

PrincipalKind = Literal["user", "serviceaccount"]


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    uid: str
    name: str  # "alice", or "project/account" for a service account
    is_admin: bool = False
    roles: Mapping[str, Role] = field(default_factory=dict)  # project name -> role
    key_project: str | None = None  # the key works in this project only
    key_id: str | None = None
    platform_role: PlatformRole | None = None  # a user's role over every project
    rate_limit: Limit | None = None  # the key's own limit, set by an admin

    @property
    def caller(self) -> str:
        """Whom per-caller limits count: the key, else the principal (a login token)."""
        return self.key_id or self.subject

    @property
    def reads_all_metrics(self) -> bool:
        if self.key_project is not None:
            return False
        return self.is_admin or self.platform_role is PlatformRole.METRICS_READER

    @property
    def subject(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def acts_as_admin(self) -> bool:
        return self.is_admin and self.key_project is None

    def role_in(self, project: str) -> Role | None:
        if self.key_project is not None and project != self.key_project:
            return None
        if self.is_admin:
            return Role.OWNER
        return self.roles.get(project)

    def can_see(self, project: str) -> bool:
        return self.role_in(project) is not None

    def can(self, permission: Permission, project: str) -> bool:
        role = self.role_in(project)
        return role is not None and grants(role, permission)
