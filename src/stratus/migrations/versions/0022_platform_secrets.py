"""platform secrets: the platform's own, sealed under a key of the root secret

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 19:22:32.728054
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "platform_secrets",
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.String(length=160), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_platform_secrets")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_platform_secrets_name_version")),
    )
    with op.batch_alter_table("platform_secrets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_platform_secrets_name"), ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("platform_secrets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_secrets_name"))

    op.drop_table("platform_secrets")
