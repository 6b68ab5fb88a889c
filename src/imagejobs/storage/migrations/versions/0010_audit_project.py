"""The audit trail by project: a project-scoped credential reads only its project's
events, found by this index rather than by scanning its whole account's.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_events_project", "audit_events", ["account_id", "project_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_project", table_name="audit_events")
