"""Credential hardening: failure counters per subject, temporary keys bound to their token.

- ``iam_failures``: failed logins per user and per source address, failed signatures per
  (access key, source address); a subject is locked until ``locked_until``.
- ``iam_access_keys.token_hash``: the token a temporary key was made from; the key dies
  with it. The per-key lockout columns go (the lockout is per address now).
- indexes that keep the per-user bounds and the purge of expired credentials cheap.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "iam_failures",
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.BigInteger(), nullable=False),
        sa.Column("locked_until", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("subject"),
    )
    with op.batch_alter_table("iam_access_keys") as batch:
        batch.add_column(sa.Column("token_hash", sa.String(length=64), nullable=True))
        batch.drop_column("failed_attempts")
        batch.drop_column("locked_until")
        batch.create_index("ix_iam_access_keys_expiry", ["expires_at"])
    op.create_index("ix_iam_tokens_expiry", "iam_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_iam_tokens_expiry", table_name="iam_tokens")
    with op.batch_alter_table("iam_access_keys") as batch:
        batch.drop_index("ix_iam_access_keys_expiry")
        batch.add_column(
            sa.Column("failed_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(sa.Column("locked_until", sa.BigInteger(), nullable=True))
        batch.drop_column("token_hash")
    op.drop_table("iam_failures")
