"""network security: rate limits on keys and projects, endpoint access rules, platform roles,
secrets

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 18:37:46.274291
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("project_uid", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.String(length=160), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_uid"],
            ["projects.uid"],
            name=op.f("fk_secrets_project_uid_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_secrets")),
        sa.UniqueConstraint(
            "project_uid", "name", "version", name=op.f("uq_secrets_project_uid_name_version")
        ),
    )
    with op.batch_alter_table("secrets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_secrets_project_uid"), ["project_uid"], unique=False)

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_limit_rps", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("rate_limit_burst", sa.Integer(), nullable=True))

    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("access", sa.JSON(), server_default="{}", nullable=False))
        batch_op.add_column(sa.Column("secrets", sa.JSON(), server_default="[]", nullable=False))

    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_limit_rps", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("rate_limit_burst", sa.Integer(), nullable=True))

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("platform_role", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("platform_role")

    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("rate_limit_burst")
        batch_op.drop_column("rate_limit_rps")

    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("secrets")
        batch_op.drop_column("access")

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("rate_limit_burst")
        batch_op.drop_column("rate_limit_rps")

    with op.batch_alter_table("secrets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_secrets_project_uid"))

    op.drop_table("secrets")
