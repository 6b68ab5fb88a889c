"""Project storage keys: a project's rows are stored under a key that reset replaces
(one row written, whatever the project's size), and the rows of retired keys are
deleted in the background. Existing projects keep their id as their key (no row here).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_keys",
        sa.Column("project_id", sa.String(128), primary_key=True),
        sa.Column("storage_key", sa.String(128), nullable=False, unique=True),
    )
    op.create_table(
        "retired_project_keys",
        sa.Column("storage_key", sa.String(128), primary_key=True),
        sa.Column("retired_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("retired_project_keys")
    op.drop_table("project_keys")
