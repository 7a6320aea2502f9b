"""First start: the `admin` user, the `default` project and an admin API key.

Runs at every start but only acts on an empty database; the key's secret is returned to be
printed once and written to the credentials file, never stored in clear.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import func, select

from stratus.core.database import Database
from stratus.core.ids import new_id
from stratus.iam.credentials import generate_key, hash_secret
from stratus.iam.passwords import hash_password
from stratus.iam.roles import Role
from stratus.iam.tables import ApiKeyRow, ProjectRow, RoleBindingRow, UserRow

ADMIN = "admin"
DEFAULT_PROJECT = "default"


@dataclass(frozen=True)
class FirstStart:
    api_key: str
    admin_password: str


def bootstrap(db: Database) -> FirstStart | None:
    """Seed an empty platform; None when it was seeded before."""
    with db.transaction() as session:
        if session.scalar(select(func.count()).select_from(UserRow)):
            return None
        password = secrets.token_urlsafe(12)
        admin = UserRow(name=ADMIN, is_admin=True, password_hash=hash_password(password))
        project = ProjectRow(name=DEFAULT_PROJECT, description="The default project")
        session.add_all([admin, project])
        session.flush()
        session.add(
            RoleBindingRow(
                uid=new_id(), project_uid=project.uid, user_uid=admin.uid, role=Role.OWNER
            )
        )
        key = generate_key()
        session.add(
            ApiKeyRow(
                key_id=key.key_id,
                name="bootstrap",
                secret_hash=hash_secret(key.secret),
                user_uid=admin.uid,
                created_by="stratus up",
            )
        )
    return FirstStart(api_key=key.token, admin_password=password)
