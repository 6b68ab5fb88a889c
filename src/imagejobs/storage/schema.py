"""The declared schema. Alembic migrations must produce exactly this (a test checks it)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

# On SQLite an INTEGER PRIMARY KEY is the rowid itself: the table is then clustered by id
# and every secondary index carries it for free.
Id = BigInteger().with_variant(Integer(), "sqlite")


def Key(length: int) -> String:
    """A text column the job indexes sort by, compared byte by byte on PostgreSQL
    (COLLATE "C", as SQLite always does): the answers only compare them for equality,
    and an index build over 10M rows sorts 1.7x faster than with the database's
    locale (migration 0008)."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("project_id", Key(128), nullable=False),
    Column("job_type", Key(32), nullable=False),
    Column("status", Key(16), nullable=False),
    Column("begin_time", BigInteger, nullable=False),  # epoch milliseconds, UTC
    Column("end_time", BigInteger, nullable=True),
    Column("sub_jobs_total", Integer, nullable=False, server_default=text("0")),
    # Newest first within (project, type[, status]): one range scan per page.
    Index("ix_jobs_project_type_status_id", "project_id", "job_type", "status", "id"),
    Index("ix_jobs_project_type_id", "project_id", "job_type", "id"),
)

sub_jobs = Table(
    "sub_jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column(
        "job_id",
        BigInteger,
        ForeignKey("jobs.id", ondelete="CASCADE", name="fk_sub_jobs_job_id"),
        nullable=False,
    ),
    Column("project_id", Key(128), nullable=False),
    Column("job_type", Key(32), nullable=False),
    Column("status", Key(16), nullable=False),
    Column("begin_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=True),
    Column("resource_id", String(128), nullable=False, server_default=text("''")),
    Column("resource_name", String(255), nullable=False, server_default=text("''")),
    Column("error_code", String(64), nullable=False, server_default=text("''")),
    Column("error_message", String(1024), nullable=False, server_default=text("''")),
    Index("ix_sub_jobs_project_type_status_id", "project_id", "job_type", "status", "id"),
    Index("ix_sub_jobs_project_type_id", "project_id", "job_type", "id"),
    Index("ix_sub_jobs_job_id_id", "job_id", "id"),
)

# Row counts per (project, scope, type, status), maintained in the same transaction as
# every insert, status change and delete, so `count` never scans (ARCHITECTURE.md #4).
# A count is the sum over a few stripes: concurrent writers add to different rows, so one
# project's creates do not queue on one row lock (storage/database.py COUNTER_STRIPES).
job_counters = Table(
    "job_counters",
    metadata,
    Column("project_id", String(128), primary_key=True),
    Column("scope", String(8), primary_key=True),  # "job" or "sub_job"
    Column("job_type", String(32), primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("stripe", SmallInteger, primary_key=True, autoincrement=False),
    Column("n", BigInteger, nullable=False),
)

# --- identity (IAM) ----------------------------------------------------------------------

Bool = Boolean()

iam_accounts = Table(
    "iam_accounts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("enabled", Bool, nullable=False, server_default=text("TRUE")),
    Column("created_at", BigInteger, nullable=False),
)

iam_projects = Table(
    "iam_projects",
    metadata,
    Column("id", String(32), primary_key=True),
    Column(
        "account_id",
        String(32),
        ForeignKey("iam_accounts.id", ondelete="CASCADE", name="fk_iam_projects_account"),
        nullable=False,
    ),
    Column("name", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("account_id", "name", name="uq_iam_projects_account_name"),
)

iam_users = Table(
    "iam_users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column(
        "account_id",
        String(32),
        ForeignKey("iam_accounts.id", ondelete="CASCADE", name="fk_iam_users_account"),
        nullable=False,
    ),
    Column("name", String(64), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("is_root", Bool, nullable=False, server_default=text("FALSE")),
    Column("enabled", Bool, nullable=False, server_default=text("TRUE")),
    # Bumped on every password change; tokens carry the version they were issued under.
    Column("password_version", Integer, nullable=False, server_default=text("0")),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("account_id", "name", name="uq_iam_users_account_name"),
)

iam_groups = Table(
    "iam_groups",
    metadata,
    Column("id", String(32), primary_key=True),
    Column(
        "account_id",
        String(32),
        ForeignKey("iam_accounts.id", ondelete="CASCADE", name="fk_iam_groups_account"),
        nullable=False,
    ),
    Column("name", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("account_id", "name", name="uq_iam_groups_account_name"),
)

iam_group_members = Table(
    "iam_group_members",
    metadata,
    Column(
        "group_id",
        String(32),
        ForeignKey("iam_groups.id", ondelete="CASCADE", name="fk_iam_group_members_group"),
        primary_key=True,
    ),
    Column(
        "user_id",
        String(32),
        ForeignKey("iam_users.id", ondelete="CASCADE", name="fk_iam_group_members_user"),
        primary_key=True,
    ),
)

iam_access_keys = Table(
    "iam_access_keys",
    metadata,
    Column("access_key", String(64), primary_key=True),
    Column(
        "user_id",
        String(32),
        ForeignKey("iam_users.id", ondelete="CASCADE", name="fk_iam_access_keys_user"),
        nullable=False,
    ),
    Column("secret_ciphertext", String(255), nullable=False),  # AES-GCM, operator key
    Column("status", String(16), nullable=False),  # active | inactive
    Column("description", String(255), nullable=False, server_default=text("''")),
    Column("created_at", BigInteger, nullable=False),
    # Temporary keys only: expiry, the security token's hash, scope and session policy.
    Column("expires_at", BigInteger, nullable=True),
    Column("security_token_hash", String(64), nullable=True),
    Column("project_id", String(32), nullable=True),
    Column("session_policy", Text, nullable=True),
    # Temporary keys only: the SHA-256 of the token they were made from; they die with it.
    Column("token_hash", String(64), nullable=True),
    Index("ix_iam_access_keys_user", "user_id"),
    Index("ix_iam_access_keys_expiry", "expires_at"),
)

iam_policies = Table(
    "iam_policies",
    metadata,
    Column("id", String(32), primary_key=True),
    # NULL for system policies, which every account can attach.
    Column(
        "account_id",
        String(32),
        ForeignKey("iam_accounts.id", ondelete="CASCADE", name="fk_iam_policies_account"),
        nullable=True,
    ),
    Column("name", String(128), nullable=False),
    Column("description", String(255), nullable=False, server_default=text("''")),
    Column("document", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("account_id", "name", name="uq_iam_policies_account_name"),
)

iam_policy_attachments = Table(
    "iam_policy_attachments",
    metadata,
    Column(
        "policy_id",
        String(32),
        ForeignKey("iam_policies.id", ondelete="CASCADE", name="fk_iam_attachments_policy"),
        primary_key=True,
    ),
    Column("principal_type", String(8), primary_key=True),  # user | group
    Column("principal_id", String(32), primary_key=True),
    Column("project_id", String(32), primary_key=True),  # a project id, or "*" for all
    Index("ix_iam_attachments_principal", "principal_id"),
)

iam_tokens = Table(
    "iam_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # SHA-256 of the token: never the token
    Column(
        "user_id",
        String(32),
        ForeignKey("iam_users.id", ondelete="CASCADE", name="fk_iam_tokens_user"),
        nullable=False,
    ),
    Column("project_id", String(32), nullable=True),  # NULL: domain-scoped
    Column("methods", String(64), nullable=False),
    Column("issued_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("password_version", Integer, nullable=False),
    Column("revoked", Bool, nullable=False, server_default=text("FALSE")),
    Index("ix_iam_tokens_user", "user_id"),
    Index("ix_iam_tokens_expiry", "expires_at"),
)

# Failed logins and signatures per subject (a digest of "login-user", account and user
# name; "login-address" and address; "signature", access key and address): counted within
# a window, and a subject past its limit is locked until ``locked_until``.
iam_failures = Table(
    "iam_failures",
    metadata,
    Column("subject", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("window_started_at", BigInteger, nullable=False),
    Column("locked_until", BigInteger, nullable=True),
)

# One row per named counter; "iam_generation" is bumped by every identity change so that
# every process's credential and policy caches notice it.
iam_state = Table(
    "iam_state",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# --- image servers and the job engine -----------------------------------------------------

image_servers = Table(
    "image_servers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("project_id", String(128), nullable=False),
    Column("name", String(64), nullable=False),
    Column("description", String(255), nullable=False, server_default=text("''")),
    Column("status", String(16), nullable=False),
    Column("image_ref", Text, nullable=False),  # JSON: ImageRef
    Column("authorize_accounts", Text, nullable=False),  # JSON: [ImageAccountInfo]
    Column("server_group_id", String(128), nullable=False, server_default=text("''")),
    Column("app_group_id", String(128), nullable=False, server_default=text("''")),
    Column("aps_server_id", String(128), nullable=False, server_default=text("''")),  # server_id
    Column("instance_id", String(128), nullable=False, server_default=text("''")),
    Column("image_id", String(128), nullable=False, server_default=text("''")),
    Column("enterprise_project_id", String(128), nullable=False, server_default=text("'0'")),
    Column("spec", Text, nullable=False),  # JSON: the rest of the creation request
    Column("create_time", BigInteger, nullable=False),
    Column("update_time", BigInteger, nullable=False),
    # A name is unique within its project (409 WKS.00211103 on a conflict).
    UniqueConstraint("project_id", "name", name="uq_image_servers_project_name"),
    Index("ix_image_servers_project_id", "project_id", "id"),
)

# The engine's queue: one row per engine-driven sub-job that has not ended yet. A runner
# claims a due row under a lease (owner, expiry in due_at, fencing_token + 1 per claim);
# the row is deleted in the transaction that records the sub-job's result.
engine_tasks = Table(
    "engine_tasks",
    metadata,
    Column(
        "sub_job_id",
        Id,
        ForeignKey("sub_jobs.id", ondelete="CASCADE", name="fk_engine_tasks_sub_job"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("job_id", BigInteger, nullable=False),
    Column("project_id", String(128), nullable=False),
    Column("job_type", String(32), nullable=False),
    Column("position", Integer, nullable=False, server_default=text("0")),
    Column("phase", String(16), nullable=False),  # run | rollback
    # Unleased: when the task may be claimed. Leased: when the lease expires.
    Column("due_at", BigInteger, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("fencing_token", BigInteger, nullable=False, server_default=text("0")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("started_at", BigInteger, nullable=True),
    Column("reads", Integer, nullable=False, server_default=text("0")),
    Column("wait_reads", Integer, nullable=False, server_default=text("0")),
    Column("payload", Text, nullable=False),  # JSON, for the driver
    Column("error_code", String(64), nullable=False, server_default=text("''")),
    Column("error_message", String(1024), nullable=False, server_default=text("''")),
    Column("progress", String(255), nullable=False, server_default=text("''")),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_engine_tasks_due_at", "due_at"),
    Index("ix_engine_tasks_job_id", "job_id"),
    # Fair claims: each project's due tasks, found without scanning other projects'.
    Index("ix_engine_tasks_project_due", "project_id", "due_at"),
)

# Steering rules of the simulated driver, shared by every process (docs/engine.md).
engine_rules = Table(
    "engine_rules",
    metadata,
    Column("project_id", String(128), primary_key=True),  # a project, or "*"
    Column("job_type", String(32), primary_key=True),  # a job type, or "*"
    Column("rule", Text, nullable=False),  # JSON
    Column("updated_at", BigInteger, nullable=False),
)

# --- the engine across machines (docs/engine.md) -------------------------------------------

# Jobs one of whose sub-jobs failed, until the job ends: deleting that sub-job
# (BatchDeleteImageSubJobs) must not let the job end SUCCESS.
engine_job_failures = Table(
    "engine_job_failures",
    metadata,
    Column("job_id", Id, primary_key=True, autoincrement=False),
)

# The node part of ids (domain/ids.py), leased by each process that mints ids, so that
# live processes never share one.
id_nodes = Table(
    "id_nodes",
    metadata,
    Column("node", Integer, primary_key=True, autoincrement=False),
    Column("owner", String(64), nullable=False, server_default=text("''")),
    Column("expires_at", BigInteger, nullable=False, server_default=text("0")),
)

# A token bucket per project: how many job-starting requests it may still make now.
project_throttles = Table(
    "project_throttles",
    metadata,
    Column("project_id", String(128), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# The audit trail: one row per mutating API call, newest id last (ids are time-ordered).
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("at", BigInteger, nullable=False),  # epoch milliseconds, UTC
    Column("request_id", String(32), nullable=False),
    Column("principal", String(200), nullable=False),  # account/user, or "-" if unknown
    Column("account_id", String(32), nullable=False, server_default=text("''")),
    Column("method", String(8), nullable=False),
    Column("path", String(512), nullable=False),  # never the query string or the body
    Column("operation", String(128), nullable=False),
    Column("project_id", String(128), nullable=False, server_default=text("''")),
    Column("status", Integer, nullable=False),
    Column("error_code", String(32), nullable=False, server_default=text("''")),
    # Events of the account not stored, on a marker event (migration 0010).
    Column("dropped", Integer, nullable=False, server_default=text("0")),
    Index("ix_audit_events_account_id", "account_id", "id"),
    # A project-scoped credential's trail (migration 0010).
    Index("ix_audit_events_project", "account_id", "project_id", "id"),
)

# --- project generations (reset) -----------------------------------------------------------

# Every project's rows (jobs, sub-jobs, counters, servers, engine tasks and rules) are
# stored under its *storage key*: the project id itself until the project's first reset,
# then a fresh key per reset. A project without a row here is stored under its id. Reset
# only moves the project to a new key (O(1) in its size) and retires the old one; a
# sweeper deletes retired keys' rows in short batches (storage/project_keys.py).
project_keys = Table(
    "project_keys",
    metadata,
    Column("project_id", String(128), primary_key=True),
    Column("storage_key", String(128), nullable=False, unique=True),
)

# Storage keys whose rows are left to delete, with when they were retired.
retired_project_keys = Table(
    "retired_project_keys",
    metadata,
    Column("storage_key", String(128), primary_key=True),
    Column("retired_at", BigInteger, nullable=False),
)
