"""storage: master key rotations, the root secret, which master key wraps each data key

The root secret (what blob names, the audit chain and login tokens are derived from) is written
by the control plane at its next start: it needs the master key, which a migration does not
have; until then it is the master key itself, as it always was. Data keys written before keep
`wrapped_by` empty: they are under the master key of the day, and a rotation re-wraps them.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 18:37:48.066037
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "master_key_rotations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("old_check", sa.String(length=64), nullable=False),
        sa.Column("new_check", sa.String(length=64), nullable=False),
        sa.Column("started_by", sa.String(length=160), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("keys_total", sa.Integer(), nullable=False),
        sa.Column("keys_done", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_master_key_rotations")),
    )
    with op.batch_alter_table("master_key_rotations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_master_key_rotations_state"), ["state"], unique=False)

    with op.batch_alter_table("master_key_check", schema=None) as batch_op:
        batch_op.add_column(sa.Column("root_secret", sa.LargeBinary(), nullable=True))

    with op.batch_alter_table("storage_data_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("wrapped_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # Once a rotation began, the master key is (or is about to be) another than the root
    # secret: a release from before rotations would derive every key (blob names, the audit
    # chain) from the wrong one, and could not unwrap data keys under the new key.
    rotations = op.get_bind().execute(sa.text("SELECT count(*) FROM master_key_rotations"))
    if rotations.scalar():
        raise RuntimeError(
            "the master key was rotated: a release from before rotations cannot read this "
            "database, so this migration does not go down"
        )
    with op.batch_alter_table("storage_data_keys", schema=None) as batch_op:
        batch_op.drop_column("wrapped_by")

    with op.batch_alter_table("master_key_check", schema=None) as batch_op:
        batch_op.drop_column("root_secret")

    with op.batch_alter_table("master_key_rotations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_master_key_rotations_state"))

    op.drop_table("master_key_rotations")
