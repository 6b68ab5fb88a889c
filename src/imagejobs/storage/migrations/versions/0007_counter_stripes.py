"""Counters in stripes: ``job_counters`` keyed also by ``stripe``; a count is their sum.
Existing counts become stripe 0.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_KEY = ("project_id", "scope", "job_type", "status")


def _counters(name: str, *key: str) -> None:
    op.create_table(
        name,
        sa.Column("project_id", sa.String(128), primary_key=True),
        sa.Column("scope", sa.String(8), primary_key=True),
        sa.Column("job_type", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        *[sa.Column(k, sa.SmallInteger, primary_key=True, autoincrement=False) for k in key],
        sa.Column("n", sa.BigInteger, nullable=False),
    )


def _rebuild(striped: bool) -> None:
    # A new table, the counts copied (summed over stripes when going back), the old one
    # dropped; PostgreSQL keeps the key's constraint name by renaming it back.
    columns = ", ".join(_KEY)
    _counters("job_counters_next", *(("stripe",) if striped else ()))
    stripe = ", 0" if striped else ""
    op.execute(
        f"INSERT INTO job_counters_next ({columns}{', stripe' if striped else ''}, n)"
        f" SELECT {columns}{stripe}, SUM(n) FROM job_counters GROUP BY {columns}"
    )
    op.drop_table("job_counters")
    op.rename_table("job_counters_next", "job_counters")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE job_counters RENAME CONSTRAINT job_counters_next_pkey TO job_counters_pkey"
        )


def upgrade() -> None:
    _rebuild(striped=True)


def downgrade() -> None:
    _rebuild(striped=False)
