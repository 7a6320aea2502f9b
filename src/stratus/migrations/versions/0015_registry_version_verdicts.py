"""registry: a version's gate verdict (state 'rejected' while a gate's refusal stands)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 04:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verdict", sa.JSON(), nullable=True))


def downgrade() -> None:
    # An older release knows no 'rejected' state: such versions go back to 'ready'.
    op.execute("UPDATE model_versions SET state = 'ready' WHERE state = 'rejected'")
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("verdict")
