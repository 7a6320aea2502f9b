"""A project always keeps an owner who can act; a disabled admin does not count as the last."""

from __future__ import annotations

import uuid

import pytest

from stratus.client import Client
from stratus.core.errors import Conflict


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_sole_owner_cannot_be_deleted_or_disabled(admin: Client) -> None:
    owner, project = _name("own"), _name("p")
    admin.users.create(owner, "password123")
    key = admin.keys.create(user=owner)

    with Client(url=admin.url, api_key=key.secret) as as_owner:
        as_owner.projects.create(project)
    with pytest.raises(Conflict, match="only owner"):
        admin.users.delete(owner)
    with pytest.raises(Conflict, match="only owner"):
        admin.users.update(owner, disabled=True)
    # With a second owner, the first may go.
    admin.projects.set_member(project, "owner", user="admin")
    admin.users.update(owner, disabled=True)
    admin.users.delete(owner)
    admin.projects.delete(project)


def test_disabled_admin_may_be_demoted(admin: Client) -> None:
    other = _name("adm")
    admin.users.create(other, "password123", is_admin=True)
    admin.users.update(other, disabled=True)
    demoted = admin.users.update(other, is_admin=False)
    assert not demoted.spec.is_admin
    admin.users.delete(other)
