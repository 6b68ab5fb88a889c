"""identity

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "iam_accounts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("TRUE"), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "iam_state",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "iam_groups",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["iam_accounts.id"], name="fk_iam_groups_account", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "name", name="uq_iam_groups_account_name"),
    )
    op.create_table(
        "iam_policies",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column(
            "description", sa.String(length=255), server_default=sa.text("''"), nullable=False
        ),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["iam_accounts.id"], name="fk_iam_policies_account", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "name", name="uq_iam_policies_account_name"),
    )
    op.create_table(
        "iam_projects",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["iam_accounts.id"], name="fk_iam_projects_account", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "name", name="uq_iam_projects_account_name"),
    )
    op.create_table(
        "iam_users",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("is_root", sa.Boolean(), server_default=sa.text("FALSE"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("TRUE"), nullable=False),
        sa.Column("password_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["iam_accounts.id"], name="fk_iam_users_account", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "name", name="uq_iam_users_account_name"),
    )
    op.create_table(
        "iam_access_keys",
        sa.Column("access_key", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("secret_ciphertext", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "description", sa.String(length=255), server_default=sa.text("''"), nullable=False
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("security_token_hash", sa.String(length=64), nullable=True),
        sa.Column("project_id", sa.String(length=32), nullable=True),
        sa.Column("session_policy", sa.Text(), nullable=True),
        sa.Column("failed_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("locked_until", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["iam_users.id"], name="fk_iam_access_keys_user", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("access_key"),
    )
    with op.batch_alter_table("iam_access_keys", schema=None) as batch_op:
        batch_op.create_index("ix_iam_access_keys_user", ["user_id"], unique=False)

    op.create_table(
        "iam_group_members",
        sa.Column("group_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["iam_groups.id"], name="fk_iam_group_members_group", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["iam_users.id"], name="fk_iam_group_members_user", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("group_id", "user_id"),
    )
    op.create_table(
        "iam_policy_attachments",
        sa.Column("policy_id", sa.String(length=32), nullable=False),
        sa.Column("principal_type", sa.String(length=8), nullable=False),
        sa.Column("principal_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["iam_policies.id"], name="fk_iam_attachments_policy", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("policy_id", "principal_type", "principal_id", "project_id"),
    )
    with op.batch_alter_table("iam_policy_attachments", schema=None) as batch_op:
        batch_op.create_index("ix_iam_attachments_principal", ["principal_id"], unique=False)

    op.create_table(
        "iam_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=True),
        sa.Column("methods", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("password_version", sa.Integer(), nullable=False),
        sa.Column("revoked", sa.Boolean(), server_default=sa.text("FALSE"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["iam_users.id"], name="fk_iam_tokens_user", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("iam_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_iam_tokens_user", ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("iam_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_iam_tokens_user")

    op.drop_table("iam_tokens")
    with op.batch_alter_table("iam_policy_attachments", schema=None) as batch_op:
        batch_op.drop_index("ix_iam_attachments_principal")

    op.drop_table("iam_policy_attachments")
    op.drop_table("iam_group_members")
    with op.batch_alter_table("iam_access_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_iam_access_keys_user")

    op.drop_table("iam_access_keys")
    op.drop_table("iam_users")
    op.drop_table("iam_projects")
    op.drop_table("iam_policies")
    op.drop_table("iam_groups")
    op.drop_table("iam_state")
    op.drop_table("iam_accounts")
