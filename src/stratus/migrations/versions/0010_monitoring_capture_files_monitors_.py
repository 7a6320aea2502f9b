"""monitoring: capture files, monitors, results, ground truth

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 22:38:03.653773
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "capture_files",
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("project_uid", sa.String(length=32), nullable=False),
        sa.Column("endpoint", sa.String(length=63), nullable=False),
        sa.Column("endpoint_uid", sa.String(length=32), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("first_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("has_subjects", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_uid"],
            ["projects.uid"],
            name=op.f("fk_capture_files_project_uid_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_capture_files")),
    )
    with op.batch_alter_table("capture_files", schema=None) as batch_op:
        batch_op.create_index(
            "ix_capture_files_endpoint_time", ["project_uid", "endpoint", "hour"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_capture_files_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_capture_files_project_uid"), ["project_uid"], unique=False
        )

    op.create_table(
        "ground_truth",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("project_uid", sa.String(length=32), nullable=False),
        sa.Column("endpoint", sa.String(length=63), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("label", sa.JSON(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_uid"],
            ["projects.uid"],
            name=op.f("fk_ground_truth_project_uid_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ground_truth")),
        sa.UniqueConstraint(
            "project_uid",
            "endpoint",
            "request_id",
            "row",
            name=op.f("uq_ground_truth_project_uid_endpoint_request_id_row"),
        ),
    )
    with op.batch_alter_table("ground_truth", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ground_truth_project_uid"), ["project_uid"], unique=False
        )

    op.create_table(
        "monitors",
        sa.Column("project_uid", sa.String(length=32), nullable=False),
        sa.Column("endpoint", sa.String(length=63), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("resource_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_uid"],
            ["projects.uid"],
            name=op.f("fk_monitors_project_uid_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_monitors")),
        sa.UniqueConstraint("project_uid", "name", name=op.f("uq_monitors_project_uid_name")),
    )
    with op.batch_alter_table("monitors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_monitors_project_uid"), ["project_uid"], unique=False)

    op.create_table(
        "monitor_results",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("monitor_uid", sa.String(length=32), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("alarm", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["monitor_uid"],
            ["monitors.uid"],
            name=op.f("fk_monitor_results_monitor_uid_monitors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_results")),
    )
    with op.batch_alter_table("monitor_results", schema=None) as batch_op:
        batch_op.create_index(
            "ix_monitor_results_monitor_time", ["monitor_uid", "time"], unique=False
        )

    op.create_table(
        "monitor_state",
        sa.Column("monitor_uid", sa.String(length=32), nullable=False),
        sa.Column("status", sa.JSON(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["monitor_uid"],
            ["monitors.uid"],
            name=op.f("fk_monitor_state_monitor_uid_monitors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("monitor_uid", name=op.f("pk_monitor_state")),
    )
    with op.batch_alter_table("monitor_state", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_monitor_state_next_run_at"), ["next_run_at"], unique=False
        )

    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("capture", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("capture")

    with op.batch_alter_table("monitor_state", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_monitor_state_next_run_at"))

    op.drop_table("monitor_state")
    with op.batch_alter_table("monitor_results", schema=None) as batch_op:
        batch_op.drop_index("ix_monitor_results_monitor_time")

    op.drop_table("monitor_results")
    with op.batch_alter_table("monitors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_monitors_project_uid"))

    op.drop_table("monitors")
    with op.batch_alter_table("ground_truth", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ground_truth_project_uid"))

    op.drop_table("ground_truth")
    with op.batch_alter_table("capture_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_capture_files_project_uid"))
        batch_op.drop_index(batch_op.f("ix_capture_files_expires_at"))
        batch_op.drop_index("ix_capture_files_endpoint_time")

    op.drop_table("capture_files")
