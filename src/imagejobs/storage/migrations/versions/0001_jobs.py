"""Jobs, sub-jobs and their counters.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("project_id", sa.String(128), nullable=False),
        sa.Column("job_type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("begin_time", sa.BigInteger, nullable=False),
        sa.Column("end_time", sa.BigInteger, nullable=True),
        sa.Column("sub_jobs_total", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.create_index(
        "ix_jobs_project_type_status_id", "jobs", ["project_id", "job_type", "status", "id"]
    )
    op.create_index("ix_jobs_project_type_id", "jobs", ["project_id", "job_type", "id"])
    op.create_table(
        "sub_jobs",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column(
            "job_id",
            sa.BigInteger,
            sa.ForeignKey("jobs.id", ondelete="CASCADE", name="fk_sub_jobs_job_id"),
            nullable=False,
        ),
        sa.Column("project_id", sa.String(128), nullable=False),
        sa.Column("job_type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("begin_time", sa.BigInteger, nullable=False),
        sa.Column("end_time", sa.BigInteger, nullable=True),
        sa.Column("resource_id", sa.String(128), nullable=False, server_default=sa.text("''")),
        sa.Column("resource_name", sa.String(255), nullable=False, server_default=sa.text("''")),
        sa.Column("error_code", sa.String(64), nullable=False, server_default=sa.text("''")),
        sa.Column("error_message", sa.String(1024), nullable=False, server_default=sa.text("''")),
    )
    op.create_index(
        "ix_sub_jobs_project_type_status_id",
        "sub_jobs",
        ["project_id", "job_type", "status", "id"],
    )
    op.create_index("ix_sub_jobs_project_type_id", "sub_jobs", ["project_id", "job_type", "id"])
    op.create_index("ix_sub_jobs_job_id_id", "sub_jobs", ["job_id", "id"])
    op.create_table(
        "job_counters",
        sa.Column("project_id", sa.String(128), primary_key=True),
        sa.Column("scope", sa.String(8), primary_key=True),
        sa.Column("job_type", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_counters")
    op.drop_table("sub_jobs")
    op.drop_table("jobs")
