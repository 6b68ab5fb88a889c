"""Image servers and the job engine: servers, the task queue (leases), steering rules.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
EMPTY = sa.text("''")
ZERO = sa.text("0")


def upgrade() -> None:
    op.create_table(
        "image_servers",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("project_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(255), nullable=False, server_default=EMPTY),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("image_ref", sa.Text(), nullable=False),
        sa.Column("authorize_accounts", sa.Text(), nullable=False),
        sa.Column("server_group_id", sa.String(128), nullable=False, server_default=EMPTY),
        sa.Column("app_group_id", sa.String(128), nullable=False, server_default=EMPTY),
        sa.Column("aps_server_id", sa.String(128), nullable=False, server_default=EMPTY),
        sa.Column("instance_id", sa.String(128), nullable=False, server_default=EMPTY),
        sa.Column("image_id", sa.String(128), nullable=False, server_default=EMPTY),
        sa.Column(
            "enterprise_project_id", sa.String(128), nullable=False, server_default=sa.text("'0'")
        ),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.Column("update_time", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("project_id", "name", name="uq_image_servers_project_name"),
    )
    op.create_index("ix_image_servers_project_id", "image_servers", ["project_id", "id"])
    op.create_table(
        "engine_tasks",
        sa.Column(
            "sub_job_id",
            Id,
            sa.ForeignKey("sub_jobs.id", ondelete="CASCADE", name="fk_engine_tasks_sub_job"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("project_id", sa.String(128), nullable=False),
        sa.Column("job_type", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False, server_default=ZERO),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("fencing_token", sa.BigInteger(), nullable=False, server_default=ZERO),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=ZERO),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("reads", sa.Integer(), nullable=False, server_default=ZERO),
        sa.Column("wait_reads", sa.Integer(), nullable=False, server_default=ZERO),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=False, server_default=EMPTY),
        sa.Column("error_message", sa.String(1024), nullable=False, server_default=EMPTY),
        sa.Column("progress", sa.String(255), nullable=False, server_default=EMPTY),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_engine_tasks_due_at", "engine_tasks", ["due_at"])
    op.create_index("ix_engine_tasks_job_id", "engine_tasks", ["job_id"])
    op.create_table(
        "engine_rules",
        sa.Column("project_id", sa.String(128), primary_key=True),
        sa.Column("job_type", sa.String(32), primary_key=True),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("engine_rules")
    op.drop_table("engine_tasks")
    op.drop_table("image_servers")
