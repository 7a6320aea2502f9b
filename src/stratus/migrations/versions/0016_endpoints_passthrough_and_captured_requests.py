"""endpoints and monitoring: pass-through columns, and an index of captured requests

An endpoint's `passthrough` columns (none for existing endpoints). `capture_requests` lists
each captured request's file, rows and prediction kind, so ground truth is checked against what
was captured; files written before it are marked `indexed = false` and indexed by the control
plane when ground truth first looks for a request it does not find (a migration cannot read
them: they are encrypted with the master key).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 05:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("passthrough", sa.JSON(), nullable=False, server_default="[]")
        )
    with op.batch_alter_table("capture_files", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("indexed", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.execute(sa.text("UPDATE capture_files SET indexed = :no").bindparams(no=False))
    op.create_table(
        "capture_requests",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("file_uid", sa.String(length=32), nullable=False),
        sa.Column("project_uid", sa.String(length=32), nullable=False),
        sa.Column("endpoint", sa.String(length=63), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("label_kind", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_uid"],
            ["capture_files.uid"],
            name=op.f("fk_capture_requests_file_uid_capture_files"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capture_requests")),
    )
    with op.batch_alter_table("capture_requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_capture_requests_request", ["project_uid", "endpoint", "request_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_capture_requests_file_uid"), ["file_uid"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("capture_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_capture_requests_file_uid"))
        batch_op.drop_index("ix_capture_requests_request")
    op.drop_table("capture_requests")
    with op.batch_alter_table("capture_files", schema=None) as batch_op:
        batch_op.drop_column("indexed")
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("passthrough")
