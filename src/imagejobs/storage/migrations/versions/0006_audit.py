"""The audit trail: one row per mutating API call (who, what, when, result).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
EMPTY = sa.text("''")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=False, server_default=EMPTY),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("operation", sa.String(128), nullable=False),
        sa.Column("project_id", sa.String(128), nullable=False, server_default=EMPTY),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(32), nullable=False, server_default=EMPTY),
    )
    op.create_index("ix_audit_events_account_id", "audit_events", ["account_id", "id"])


def downgrade() -> None:
    op.drop_table("audit_events")
