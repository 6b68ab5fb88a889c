"""The engine across machines: id nodes leased from the database, sticky job failures,
fair claims across projects, and per-project create throttles.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NODES = 256  # domain/ids.py: NODE_BITS = 8


def upgrade() -> None:
    op.create_index("ix_engine_tasks_project_due", "engine_tasks", ["project_id", "due_at"])
    op.create_table(
        "engine_job_failures",
        sa.Column("job_id", Id, primary_key=True, autoincrement=False),
    )
    nodes = op.create_table(
        "id_nodes",
        sa.Column("node", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("owner", sa.String(64), nullable=False, server_default=sa.text("''")),
        sa.Column("expires_at", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )
    op.bulk_insert(nodes, [{"node": n, "owner": "", "expires_at": 0} for n in range(NODES)])
    op.create_table(
        "project_throttles",
        sa.Column("project_id", sa.String(128), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("project_throttles")
    op.drop_table("id_nodes")
    op.drop_table("engine_job_failures")
    op.drop_index("ix_engine_tasks_project_due", "engine_tasks")
