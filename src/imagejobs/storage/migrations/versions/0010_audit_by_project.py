"""The audit trail by project: a project-scoped credential reads only its project's
events, found by this index rather than by scanning its whole account's. And the audit's
per-account bound: a marker event counts the account's events not stored (``dropped``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "audit_events",
        sa.Column("dropped", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.create_index("ix_audit_events_project", "audit_events", ["account_id", "project_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_project", table_name="audit_events")
    with op.batch_alter_table("audit_events") as batch:  # SQLite: a copy of the table
        batch.drop_column("dropped")
