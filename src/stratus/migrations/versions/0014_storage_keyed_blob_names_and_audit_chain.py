"""storage and audit: keyed blob names, a keyed audit chain and its checkpoints

The audit chain is keyed (HMAC) from the entry after the last one written so far: entries
already in the log keep their plain SHA-256 hashes and verify as they did. Blob files are
renamed to their keyed names by the control plane at its next start (it needs the master key,
which a migration does not have); until then reads fall back to the legacy names.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 20:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.add_column(sa.Column("keyed_from", sa.BigInteger(), nullable=True))
    op.execute("UPDATE audit_head SET keyed_from = last_seq + 1")


def downgrade() -> None:
    # Entries written since the upgrade carry keyed hashes an older release cannot check.
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_column("keyed_from")
