"""The role table: exactly which permission each role grants."""

from __future__ import annotations

import itertools

import pytest

from stratus.iam.roles import ROLE_PERMISSIONS, Permission, Role, grants

P = Permission
MATRIX: dict[Role, set[Permission]] = {
    Role.OWNER: {
        P.PROJECT_READ,
        P.PROJECT_ADMIN,
        P.RESOURCE_READ,
        P.RESOURCE_WRITE,
        P.ENDPOINT_INVOKE,
        P.AUDIT_READ,
        P.METRICS_READ,
    },
    Role.EDITOR: {P.PROJECT_READ, P.RESOURCE_READ, P.RESOURCE_WRITE, P.ENDPOINT_INVOKE},
    Role.VIEWER: {P.PROJECT_READ, P.RESOURCE_READ, P.ENDPOINT_INVOKE},
    Role.INVOKER: {P.ENDPOINT_INVOKE},
    Role.METRICS_READER: {P.METRICS_READ},  # a scraper reads /metrics and nothing else
}
CASES = [
    (role, permission, permission in MATRIX[role])
    for role, permission in itertools.product(Role, Permission)
]


@pytest.mark.parametrize(
    ("role", "permission", "expected"),
    CASES,
    ids=[f"{r.value}-{p.value}-{'yes' if e else 'no'}" for r, p, e in CASES],
)
def test_role_grants_permission(role: Role, permission: Permission, expected: bool) -> None:
    assert grants(role, permission) is expected
    assert grants(role.value, permission) is expected  # stored roles are plain strings


def test_the_matrix_covers_every_role_and_permission() -> None:
    assert set(MATRIX) == set(Role) == set(ROLE_PERMISSIONS)
    assert len(CASES) == len(Role) * len(Permission) == 35


def test_roles_are_ordered_by_power() -> None:
    order = [Role.INVOKER, Role.VIEWER, Role.EDITOR, Role.OWNER]
    for weaker, stronger in itertools.pairwise(order):
        assert ROLE_PERMISSIONS[weaker] < ROLE_PERMISSIONS[stronger]


def test_owner_has_every_permission() -> None:
    assert ROLE_PERMISSIONS[Role.OWNER] == frozenset(Permission)


def test_values_are_the_wire_names() -> None:
    assert [r.value for r in Role] == ["owner", "editor", "viewer", "invoker", "metrics-reader"]
    assert {p.value for p in Permission} == {
        "project.read",
        "project.admin",
        "resource.read",
        "resource.write",
        "endpoint.invoke",
        "audit.read",
        "metrics.read",
    }


@pytest.mark.parametrize("role", ["admin", "Owner", "", "root"])
def test_unknown_role_is_refused(role: str) -> None:
    with pytest.raises(ValueError):
        grants(role, Permission.PROJECT_READ)
