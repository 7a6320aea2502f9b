"""batch predictions: a job's progress and the dataset version it committed; a dataset
version's lineage (the model version and the input version its rows were predicted from)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 14:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("training_job_status", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progress", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("dataset_version", sa.String(length=200), nullable=True))
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lineage", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.drop_column("lineage")
    with op.batch_alter_table("training_job_status", schema=None) as batch_op:
        batch_op.drop_column("dataset_version")
        batch_op.drop_column("progress")
