"""Job and sub-job key columns (project, type, status) compared byte by byte on
PostgreSQL (COLLATE "C"): their indexes sort and search without the locale's collation
(equality, the only comparison the answers make, is unchanged). SQLite already compares
text byte by byte: nothing to do there. The tables are not rewritten; their indexes on
these columns are rebuilt.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_COLUMNS = (("project_id", 128), ("job_type", 32), ("status", 16))


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ("jobs", "sub_jobs"):
        changes = ", ".join(
            f'ALTER COLUMN {name} TYPE VARCHAR({length}) COLLATE "{collation}"'
            for name, length in _COLUMNS
        )
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate("default")
