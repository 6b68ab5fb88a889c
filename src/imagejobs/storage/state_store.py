"""A project's whole state at once, for test suites: reset it (or every project's), dump
it, or replace it with a dumped one (a fixture file).

Reset deletes, in one transaction, the project's engine tasks, sub-jobs, jobs, image
servers, counters and steering rules, and clears its users' password-login lockouts; accounts,
users and keys stay, so a test's credentials keep working. A runner in the middle of a
step then finds its task gone: its fencing token no longer holds and it writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from imagejobs.domain.errors import Conflict
from imagejobs.domain.lifecycle import NewTask
from imagejobs.domain.records import JobDetail, SubJob
from imagejobs.domain.servers import ImageServer
from imagejobs.storage.database import Database, Statement, Transaction
from imagejobs.storage.engine_store import SqlEngineStore, retrying_transaction
from imagejobs.storage.iam_store import BUMP_GENERATION, failure_subject
from imagejobs.storage.job_store import _JOB_COLUMNS, _SUB_JOB_COLUMNS, _job, _sub_job, insert_jobs
from imagejobs.storage.server_store import (
    _COLUMNS as _SERVER_COLUMNS,
)
from imagejobs.storage.server_store import (
    INSERT_SERVER,
    _is_unique_violation,
    _server,
    server_row,
)

# Child rows first (tasks, sub-jobs), the lock order of the engine store.
_PROJECT_TABLES = ("engine_tasks", "sub_jobs", "jobs", "image_servers", "job_counters")
RESET_PROJECT = tuple(
    Statement(f"DELETE FROM {table} WHERE project_id = :project_id") for table in _PROJECT_TABLES
)
RESET_PROJECT_RULES = Statement("DELETE FROM engine_rules WHERE project_id = :project_id")
RESET_ALL = tuple(Statement(f"DELETE FROM {table}") for table in (*_PROJECT_TABLES, "engine_rules"))
# Lockouts: every failure count (all projects), or the password-login counts of the
# project's account's users (signature failures are per address and never refuse a valid
# signature, so a test suite never needs them cleared).
CLEAR_ALL_FAILURES = Statement("DELETE FROM iam_failures")
PROJECT_USER_NAMES = Statement(
    "SELECT a.name, u.name FROM iam_projects p JOIN iam_accounts a ON a.id = p.account_id"
    " JOIN iam_users u ON u.account_id = a.id WHERE p.id = :project_id"
)
CLEAR_FAILURE = Statement("DELETE FROM iam_failures WHERE subject = :subject")
# Debian's SQLite is built with secure_delete ON: every page a reset frees is zeroed and
# written to the WAL once more (a fifth of a 10,000-job reset's writes). FAST still zeroes
# deleted rows inside the pages written anyway; reset asks for it for its own transaction.
SQLITE_SECURE_DELETE = Statement("PRAGMA secure_delete")
SQLITE_SECURE_DELETE_FAST = Statement("PRAGMA secure_delete = FAST")

DUMP_SERVERS = Statement(
    f"SELECT {_SERVER_COLUMNS} FROM image_servers WHERE project_id = :project_id ORDER BY id"
)
DUMP_JOBS = Statement(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE project_id = :project_id ORDER BY id")
DUMP_SUB_JOBS = Statement(
    f"SELECT {_SUB_JOB_COLUMNS} FROM sub_jobs WHERE project_id = :project_id ORDER BY id"
)
DUMP_TASK_PAYLOADS = Statement(
    "SELECT sub_job_id, payload FROM engine_tasks WHERE project_id = :project_id"
)


class SqlStateStore:
    def __init__(self, database: Database, engine: SqlEngineStore) -> None:
        self._db = database
        self._engine = engine  # to wake its runner when imported tasks are due

    async def reset(self, project_id: str | None) -> None:
        """Forget one project's jobs, servers and rules (None: every project's)."""

        async def run(tx: Transaction) -> None:
            if self._db.dialect != "sqlite":
                await delete(tx)
                return
            [(secure_delete,)] = await tx.fetch(SQLITE_SECURE_DELETE, {})
            await tx.fetch(SQLITE_SECURE_DELETE_FAST, {})
            try:
                await delete(tx)
            finally:  # the pages are freed by now: the connection's usual setting again
                await tx.fetch(Statement(f"PRAGMA secure_delete = {int(secure_delete)}"), {})

        async def delete(tx: Transaction) -> None:
            if project_id is None:
                for statement in RESET_ALL:
                    await tx.execute(statement, {})
                await tx.execute(CLEAR_ALL_FAILURES, {})
            else:
                params = {"project_id": project_id}
                for statement in (*RESET_PROJECT, RESET_PROJECT_RULES):
                    await tx.execute(statement, params)
                for account, user in await tx.fetch(PROJECT_USER_NAMES, params):
                    subject = failure_subject("login-user", account, user)
                    await tx.execute(CLEAR_FAILURE, {"subject": subject})
            # Processes drop their cached keys (and so their lockouts) at once.
            await tx.execute(BUMP_GENERATION, {})

        await retrying_transaction(self._db, run)

    async def dump(
        self, project_id: str
    ) -> tuple[list[ImageServer], list[JobDetail], dict[int, dict[str, Any]]]:
        """The project's servers, jobs (with sub-jobs) and live tasks' payloads, in one
        snapshot."""

        params = {"project_id": project_id}
        async with self._db.transaction() as tx:  # one snapshot of all three tables
            servers = [_server(row) for row in await tx.fetch(DUMP_SERVERS, params)]
            sub_jobs: dict[int, list[SubJob]] = {}
            for row in await tx.fetch(DUMP_SUB_JOBS, params):
                sub_jobs.setdefault(row[1], []).append(_sub_job(project_id, row, 0))
            jobs = [
                JobDetail(job, sub_jobs.get(job.id, []))
                for job in (_job(project_id, row) for row in await tx.fetch(DUMP_JOBS, params))
            ]
            payloads = {
                row[0]: msgspec.json.decode(row[1])
                for row in await tx.fetch(DUMP_TASK_PAYLOADS, params)
            }
        return servers, jobs, payloads

    async def replace(
        self,
        project_id: str,
        servers: Sequence[ImageServer],
        jobs: Sequence[JobDetail],
        tasks: Sequence[NewTask],
        now: int,
    ) -> None:
        """The project's state becomes exactly this, in one transaction (all or nothing)."""

        async def run(tx: Transaction) -> None:
            params = {"project_id": project_id}
            for statement in RESET_PROJECT:
                await tx.execute(statement, params)
            if servers:
                await tx.execute_many(INSERT_SERVER, [server_row(s) for s in servers])
            if jobs:
                await insert_jobs(tx, jobs)
            if tasks:
                await self._engine.add_tasks(tx, tasks, now)

        try:
            await retrying_transaction(self._db, run)
        except Exception as exc:
            if _is_unique_violation(exc):
                raise Conflict("An id of the state is already used by another project.") from exc
            raise
        if tasks:
            await self._engine.announce()
