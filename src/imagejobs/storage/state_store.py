"""A project's whole state at once, for test suites: reset it (or every project's), dump
it, or replace it with a dumped one (a fixture file).

Resetting one project moves it to a fresh storage key in one small transaction, whatever
its size (storage/project_keys.py): its jobs, servers, counters, tasks and steering rules
are then those of an empty project, and the old generation's rows are swept in the
background. Its users' password-login lockouts are cleared; accounts, users and keys
stay, so a test's credentials keep working. Resetting every project deletes every row.

Every method here takes the project's storage key (services/project_keys.py), except
``reset``, which takes the project id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import msgspec

from imagejobs.domain.errors import Conflict
from imagejobs.domain.lifecycle import NewTask
from imagejobs.domain.records import JobDetail, SubJob
from imagejobs.domain.servers import ImageServer
from imagejobs.storage.database import (
    Database,
    Row,
    SqliteDatabase,
    Statement,
    Transaction,
)
from imagejobs.storage.engine_store import SqlEngineStore, retrying_transaction
from imagejobs.storage.iam_store import BUMP_GENERATION, failure_subject
from imagejobs.storage.job_store import _JOB_COLUMNS, _SUB_JOB_COLUMNS, _job, _sub_job, insert_jobs
from imagejobs.storage.project_keys import (
    FORGET_ALL_RETIRED,
    SqlProjectKeyStore,
    move_to_new_key,
)
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
# The failures remembered for the project's running jobs (keyed by job id alone): a job
# imported with the same id would otherwise fail.
RESET_PROJECT = (
    Statement(
        "DELETE FROM engine_job_failures"
        " WHERE job_id IN (SELECT id FROM jobs WHERE project_id = :project_id)"
    ),
    *(Statement(f"DELETE FROM {t} WHERE project_id = :project_id") for t in _PROJECT_TABLES),
)
RESET_ALL_RULES = Statement("DELETE FROM engine_rules")
RESET_ALL_FAILURES = Statement("DELETE FROM engine_job_failures")
RESET_ALL = (
    *(Statement(f"DELETE FROM {table}") for table in _PROJECT_TABLES),
    RESET_ALL_FAILURES,
    RESET_ALL_RULES,
)
_EMPTY = {table: Statement(f"DELETE FROM {table}") for table in _PROJECT_TABLES}
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

    async def reset(self, project_id: str | None, now: int) -> None:
        """Forget one project's jobs, servers and rules (None: every project's)."""
        if project_id is None:
            await self._reset_all()
            return
        dialect = self._db.dialect

        async def run(tx: Transaction) -> None:
            await move_to_new_key(tx, dialect, project_id, now)
            await _forget_lockouts(tx, project_id)

        await retrying_transaction(self._db, run)

    async def _reset_all(self) -> None:
        if isinstance(self._db, SqliteDatabase):
            async with self._db.transaction_without_foreign_keys() as tx:
                await _reset_sqlite(tx)
                await tx.execute(FORGET_ALL_RETIRED, {})
            return

        async def run(tx: Transaction) -> None:
            for statement in RESET_ALL:
                await tx.execute(statement, {})
            await tx.execute(FORGET_ALL_RETIRED, {})
            await _forget_lockouts(tx, None)

        await retrying_transaction(self._db, run)

    async def dump(
        self, project_id: str
    ) -> tuple[list[ImageServer], list[JobDetail], dict[int, dict[str, Any]]]:
        """The project's servers, jobs (with sub-jobs) and live tasks' payloads, in one
        snapshot: a read transaction, so no writer of any process waits for it (it held
        SQLite's write lock, every process's writes waiting, for seconds on a big
        project); the records are built on a thread."""

        params = {"project_id": project_id}
        reads = [(DUMP_SERVERS, params), (DUMP_SUB_JOBS, params), (DUMP_JOBS, params)]
        reads.append((DUMP_TASK_PAYLOADS, params))
        rows = await self._db.read_snapshot(reads)
        return await asyncio.to_thread(_dumped, project_id, *rows)

    async def replace(
        self,
        storage_key: str,
        servers: Sequence[ImageServer],
        jobs: Sequence[JobDetail],
        tasks: Sequence[NewTask],
        now: int,
    ) -> None:
        """The project's state becomes exactly this, in one transaction (all or nothing).
        Its rows are written under ``storage_key``, whatever project id they carry."""
        servers = [replace(s, project_id=storage_key) for s in servers]
        jobs = [d.under(storage_key) for d in jobs]
        tasks = [replace(t, project_id=storage_key) for t in tasks]

        async def run(tx: Transaction, free_ids: bool) -> None:
            if free_ids:  # ids a reset project's old generation still holds
                await SqlProjectKeyStore(self._db).free_ids(
                    tx,
                    [s.id for s in servers],
                    [d.job.id for d in jobs],
                    [sub.id for d in jobs for sub in d.sub_jobs],
                )
            params = {"project_id": storage_key}
            for statement in RESET_PROJECT:
                await tx.execute(statement, params)
            if servers:
                await tx.execute_many(INSERT_SERVER, [server_row(s) for s in servers])
            if jobs:
                await insert_jobs(tx, jobs)
            if tasks:
                await self._engine.add_tasks(tx, tasks, now)

        try:
            try:
                await retrying_transaction(self._db, lambda tx: run(tx, False))
            except Exception as exc:
                if not _is_unique_violation(exc):
                    raise
                # Loading a fixture again after a reset reuses its ids: the old
                # generation's rows (not swept yet) give them up; other projects' do not.
                await retrying_transaction(self._db, lambda tx: run(tx, True))
        except Exception as exc:
            if _is_unique_violation(exc):
                raise Conflict("An id of the state is already used by another project.") from exc
            raise
        if tasks:
            await self._engine.announce()


def _dumped(
    project_id: str,
    server_rows: Sequence[Row],
    sub_job_rows: Sequence[Row],
    job_rows: Sequence[Row],
    payload_rows: Sequence[Row],
) -> tuple[list[ImageServer], list[JobDetail], dict[int, dict[str, Any]]]:
    servers = [_server(row) for row in server_rows]
    sub_jobs: dict[int, list[SubJob]] = {}
    for row in sub_job_rows:
        sub_jobs.setdefault(row[1], []).append(_sub_job(project_id, row, 0))
    jobs = [
        JobDetail(job, sub_jobs.get(job.id, []))
        for job in (_job(project_id, row) for row in job_rows)
    ]
    payloads = {row[0]: msgspec.json.decode(row[1]) for row in payload_rows}
    return servers, jobs, payloads


async def _reset_sqlite(tx: Transaction) -> None:
    """Reset everything on SQLite, foreign keys off (children are deleted before their
    parents anyway): each table is emptied whole, which SQLite does by freeing its pages
    without visiting a row."""
    [(secure_delete,)] = await tx.fetch(SQLITE_SECURE_DELETE, {})
    await tx.fetch(SQLITE_SECURE_DELETE_FAST, {})
    try:
        for table in _PROJECT_TABLES:
            await tx.execute(_EMPTY[table], {})
        await tx.execute(RESET_ALL_FAILURES, {})
        await tx.execute(RESET_ALL_RULES, {})
    finally:  # the pages are freed by now: the connection's usual setting again
        await tx.fetch(Statement(f"PRAGMA secure_delete = {int(secure_delete)}"), {})
    await _forget_lockouts(tx, None)


async def _forget_lockouts(tx: Transaction, project_id: str | None) -> None:
    """Clear the lockouts reset clears, and make every process drop its cached keys (and
    so their lockouts) at once."""
    if project_id is None:
        await tx.execute(CLEAR_ALL_FAILURES, {})
    else:
        for account, user in await tx.fetch(PROJECT_USER_NAMES, {"project_id": project_id}):
            subject = failure_subject("login-user", account, user)
            await tx.execute(CLEAR_FAILURE, {"subject": subject})
    await tx.execute(BUMP_GENERATION, {})
