"""endpoints: events, what the controller did to an endpoint by itself (its scaling steps)

One row per step: when, which variant, from how many replicas to how many, and why. The
service keeps the newest 1000 of each endpoint; deleting an endpoint deletes its events.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-10 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "endpoint_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("endpoint_uid", sa.String(length=32), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("variant", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("from_replicas", sa.Integer(), nullable=False),
        sa.Column("to_replicas", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_uid"],
            ["endpoints.uid"],
            name=op.f("fk_endpoint_events_endpoint_uid_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoint_events")),
    )
    with op.batch_alter_table("endpoint_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_endpoint_events_endpoint_uid"), ["endpoint_uid"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("endpoint_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_endpoint_events_endpoint_uid"))
    op.drop_table("endpoint_events")
