"""The SDK's identity API objects: projects, users, keys, service accounts, the audit log."""

from __future__ import annotations

import builtins
from typing import Any

from stratus.client._base import API, labels_of, seg
from stratus.iam import schemas as iam


class Projects(API):
    def create(
        self, name: str, description: str = "", labels: dict[str, str] | None = None
    ) -> iam.ProjectRead:
        body = {"name": name, "description": description, "labels": labels_of(labels)}
        return self._c._model(iam.ProjectRead, "POST", "/api/v1/projects", json=body)

    def list(self, selector: str | None = None) -> builtins.list[iam.ProjectRead]:
        return list(self._c._pages(iam.ProjectRead, "/api/v1/projects", {"selector": selector}))

    def get(self, name: str) -> iam.ProjectRead:
        return self._c._model(iam.ProjectRead, "GET", f"/api/v1/projects/{seg(name)}")

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
        return self._c._model(iam.ProjectRead, "PATCH", f"/api/v1/projects/{seg(name)}", json=body)

    def delete(self, name: str) -> None:
        self._c._send("DELETE", f"/api/v1/projects/{seg(name)}")

    def set_rate_limit(
        self, name: str, requests_per_second: float | None, burst: int | None = None
    ) -> iam.ProjectRead:
        """Limit each caller's requests into the project (admins only); None lifts it.

        Raises:
            stratus.errors.PermissionDenied: the caller is not a platform admin.
        """
        path = f"/api/v1/projects/{seg(name)}/rate-limit"
        if requests_per_second is None:
            return self._c._model(iam.ProjectRead, "DELETE", path)
        body = {"requests_per_second": requests_per_second, "burst": burst}
        return self._c._model(iam.ProjectRead, "PUT", path, json=body)

    def members(self, name: str) -> builtins.list[iam.MemberRead]:
        path = f"/api/v1/projects/{seg(name)}/members"
        return list(self._c._pages(iam.MemberRead, path, {}))

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
        path = f"/api/v1/projects/{seg(name)}/members"
        return self._c._model(iam.MemberRead, "PUT", path, json=body)

    def remove_member(self, name: str, subject: str) -> None:
        self._c._send("DELETE", f"/api/v1/projects/{seg(name)}/members/{seg(subject)}")


class Users(API):
    def create(
        self,
        name: str,
        password: str | None = None,
        *,
        email: str | None = None,
        is_admin: bool = False,
        platform_role: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> iam.UserRead:
        body = {
            "name": name,
            "password": password,
            "email": email,
            "is_admin": is_admin,
            "platform_role": platform_role,
            "labels": labels_of(labels),
        }
        body = {k: v for k, v in body.items() if v is not None}
        return self._c._model(iam.UserRead, "POST", "/api/v1/users", json=body)

    def list(self, selector: str | None = None) -> list[iam.UserRead]:
        return list(self._c._pages(iam.UserRead, "/api/v1/users", {"selector": selector}))

    def get(self, name: str) -> iam.UserRead:
        return self._c._model(iam.UserRead, "GET", f"/api/v1/users/{seg(name)}")

    def update(self, name: str, **changes: Any) -> iam.UserRead:
        body = {k: v for k, v in changes.items() if v is not None}
        return self._c._model(iam.UserRead, "PATCH", f"/api/v1/users/{seg(name)}", json=body)

    def delete(self, name: str) -> None:
        self._c._send("DELETE", f"/api/v1/users/{seg(name)}")


class Keys(API):
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
        return list(self._c._pages(iam.KeyRead, "/api/v1/keys", {"all": str(all).lower()}))

    def revoke(self, key_id: str) -> iam.KeyRead:
        return self._c._model(iam.KeyRead, "DELETE", f"/api/v1/keys/{seg(key_id)}")

    def rotate(self, key_id: str, *, overlap_seconds: float = 86400.0) -> iam.KeyRotated:
        """A new key like this one, for the same owner (its `secret` is shown this once); the
        old key keeps working for `overlap_seconds` (0: it stops now), then expires.

        Raises:
            stratus.errors.NotFound: no such key of yours (admins may rotate anyone's).
            stratus.errors.Conflict: the key is already revoked or expired.
        """
        path = f"/api/v1/keys/{seg(key_id)}/rotate"
        body = {"overlap_seconds": overlap_seconds}
        return self._c._model(iam.KeyRotated, "POST", path, json=body)

    def set_rate_limit(
        self, key_id: str, requests_per_second: float | None, burst: int | None = None
    ) -> iam.KeyRead:
        """Limit one API key's requests, wherever they go (admins only); None lifts it."""
        path = f"/api/v1/keys/{seg(key_id)}/rate-limit"
        if requests_per_second is None:
            return self._c._model(iam.KeyRead, "DELETE", path)
        body = {"requests_per_second": requests_per_second, "burst": burst}
        return self._c._model(iam.KeyRead, "PUT", path, json=body)


class ServiceAccounts(API):
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
        self._c._send("DELETE", f"{self._base(project)}/{seg(name)}")

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
        path = f"{self._base(project)}/{seg(name)}/keys"
        return self._c._model(iam.KeyCreated, "POST", path, json=body)

    def list_keys(self, name: str, project: str | None = None) -> builtins.list[iam.KeyRead]:
        path = f"{self._base(project)}/{seg(name)}/keys"
        return list(self._c._pages(iam.KeyRead, path, {}))

    def revoke_key(self, name: str, key_id: str, project: str | None = None) -> iam.KeyRead:
        path = f"{self._base(project)}/{seg(name)}/keys/{seg(key_id)}"
        return self._c._model(iam.KeyRead, "DELETE", path)

    def rotate_key(
        self,
        name: str,
        key_id: str,
        project: str | None = None,
        *,
        overlap_seconds: float = 86400.0,
    ) -> iam.KeyRotated:
        """A new key for the service account like this one (its `secret` shown this once);
        the old key keeps working for `overlap_seconds`, then expires."""
        path = f"{self._base(project)}/{seg(name)}/keys/{seg(key_id)}/rotate"
        body = {"overlap_seconds": overlap_seconds}
        return self._c._model(iam.KeyRotated, "POST", path, json=body)


class Audit(API):
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
