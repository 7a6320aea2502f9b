"""Roles and the permissions they grant; the one table authorization consults."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    PROJECT_READ = "project.read"  # see the project and its members
    PROJECT_ADMIN = "project.admin"  # change or delete the project, manage members and accounts
    RESOURCE_READ = "resource.read"  # read resources (buckets, objects, models, ...)
    RESOURCE_WRITE = "resource.write"  # create, change and delete resources
    ENDPOINT_INVOKE = "endpoint.invoke"  # call inference endpoints
    AUDIT_READ = "audit.read"  # read the project's audit log
    METRICS_READ = "metrics.read"  # scrape the project's series from /metrics


class Role(StrEnum):
    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"
    INVOKER = "invoker"
    METRICS_READER = "metrics-reader"  # a Prometheus scraper: /metrics and nothing else


class PlatformRole(StrEnum):
    """A role over the whole platform, short of admin: a user who only scrapes every
    project's series (the platform's Prometheus)."""

    METRICS_READER = "metrics-reader"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.INVOKER: frozenset({Permission.ENDPOINT_INVOKE}),
    Role.METRICS_READER: frozenset({Permission.METRICS_READ}),
    Role.VIEWER: frozenset(
        {Permission.PROJECT_READ, Permission.RESOURCE_READ, Permission.ENDPOINT_INVOKE}
    ),
    Role.EDITOR: frozenset(
        {
            Permission.PROJECT_READ,
            Permission.RESOURCE_READ,
            Permission.RESOURCE_WRITE,
            Permission.ENDPOINT_INVOKE,
        }
    ),
    Role.OWNER: frozenset(Permission),
}


def grants(role: Role | str, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[Role(role)]
