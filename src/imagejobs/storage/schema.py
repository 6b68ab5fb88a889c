"""The declared schema. Alembic migrations must produce exactly this (a test checks it)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)

metadata = MetaData()

# On SQLite an INTEGER PRIMARY KEY is the rowid itself: the table is then clustered by id
# and every secondary index carries it for free.
Id = BigInteger().with_variant(Integer(), "sqlite")

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("project_id", String(128), nullable=False),
    Column("job_type", String(32), nullable=False),
    Column("status", String(16), nullable=False),
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
    Column("project_id", String(128), nullable=False),
    Column("job_type", String(32), nullable=False),
    Column("status", String(16), nullable=False),
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
job_counters = Table(
    "job_counters",
    metadata,
    Column("project_id", String(128), primary_key=True),
    Column("scope", String(8), primary_key=True),  # "job" or "sub_job"
    Column("job_type", String(32), primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("n", BigInteger, nullable=False),
)
