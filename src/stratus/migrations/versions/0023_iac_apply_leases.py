"""iac apply leases: one apply at a time per project, with a time to live

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 21:25:51.295419
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "iac_leases",
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("holder", sa.String(length=300), nullable=False),
        sa.Column("apply_id", sa.String(length=64), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("project", name=op.f("pk_iac_leases")),
    )


def downgrade() -> None:
    op.drop_table("iac_leases")
