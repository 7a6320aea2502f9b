"""Principals: which role a caller has where, with project-restricted keys and admins."""

from __future__ import annotations

import pytest

from stratus.iam.principals import Principal
from stratus.iam.roles import Permission, Role


def user(**kw: object) -> Principal:
    base: dict[str, object] = {"kind": "user", "uid": "u1", "name": "alice"}
    base.update(kw)
    return Principal(**base)  # type: ignore[arg-type]


def test_subject() -> None:
    assert user().subject == "user:alice"
    sa = Principal(kind="serviceaccount", uid="s1", name="fraud/ci")
    assert sa.subject == "serviceaccount:fraud/ci"


def test_role_in_comes_from_the_bindings() -> None:
    p = user(roles={"fraud": Role.EDITOR, "web": Role.VIEWER})
    assert p.role_in("fraud") is Role.EDITOR
    assert p.role_in("web") is Role.VIEWER
    assert p.role_in("other") is None
    assert p.can_see("fraud") and not p.can_see("other")


def test_a_restricted_key_works_in_its_project_only() -> None:
    p = user(roles={"fraud": Role.OWNER, "web": Role.OWNER}, key_project="fraud")
    assert p.role_in("fraud") is Role.OWNER
    assert p.role_in("web") is None
    assert not p.can_see("web")
    assert not p.can(Permission.PROJECT_READ, "web")


def test_a_restricted_key_does_not_add_a_role() -> None:
    p = user(roles={}, key_project="fraud")
    assert p.role_in("fraud") is None
    assert not p.can_see("fraud")


def test_admin_owns_every_project() -> None:
    p = user(is_admin=True)
    assert p.acts_as_admin
    for project in ("default", "anything", "x"):
        assert p.role_in(project) is Role.OWNER
        assert all(p.can(perm, project) for perm in Permission)


def test_admin_role_beats_a_weaker_binding() -> None:
    p = user(is_admin=True, roles={"fraud": Role.INVOKER})
    assert p.role_in("fraud") is Role.OWNER


def test_admin_with_a_restricted_key_is_an_owner_there_only() -> None:
    p = user(is_admin=True, key_project="fraud")
    assert not p.acts_as_admin
    assert p.role_in("fraud") is Role.OWNER
    assert p.role_in("web") is None
    assert not p.can(Permission.PROJECT_READ, "web")


def test_non_admin_does_not_act_as_admin() -> None:
    assert not user().acts_as_admin
    assert not user(key_project=None, roles={"a": Role.OWNER}).acts_as_admin


@pytest.mark.parametrize(
    ("role", "permission", "allowed"),
    [
        (Role.INVOKER, Permission.ENDPOINT_INVOKE, True),
        (Role.INVOKER, Permission.RESOURCE_READ, False),
        (Role.INVOKER, Permission.PROJECT_READ, False),
        (Role.VIEWER, Permission.RESOURCE_READ, True),
        (Role.VIEWER, Permission.RESOURCE_WRITE, False),
        (Role.EDITOR, Permission.RESOURCE_WRITE, True),
        (Role.EDITOR, Permission.PROJECT_ADMIN, False),
        (Role.EDITOR, Permission.AUDIT_READ, False),
        (Role.OWNER, Permission.PROJECT_ADMIN, True),
        (Role.OWNER, Permission.AUDIT_READ, True),
    ],
)
def test_can_follows_the_role(role: Role, permission: Permission, allowed: bool) -> None:
    p = user(roles={"fraud": role})
    assert p.can(permission, "fraud") is allowed
    assert p.can(permission, "elsewhere") is False


def test_service_account_key_is_bound_to_its_project() -> None:
    sa = Principal(
        kind="serviceaccount",
        uid="s1",
        name="fraud/ci",
        roles={"fraud": Role.EDITOR},
        key_project="fraud",
        key_id="k1",
    )
    assert sa.can(Permission.RESOURCE_WRITE, "fraud")
    assert not sa.can_see("other")
    assert not sa.acts_as_admin


def test_principal_is_immutable() -> None:
    p = user()
    with pytest.raises(AttributeError):
        p.is_admin = True  # type: ignore[misc]
