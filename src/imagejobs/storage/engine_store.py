"""The engine's queue: claiming tasks under leases, heartbeats, and recording results.

Every statement that changes a task is guarded by its fencing token (``AND fencing_token
= :token``): a runner whose lease expired and was taken over writes nothing. A result is
recorded in one transaction with the sub-job, the image server, the job's aggregate
status and the counters. Lock order, in every transaction: tasks, sub-jobs, servers,
jobs (by id), counters (by key): concurrent writers never wait on each other in a cycle.

Claims: on PostgreSQL ``UPDATE ... WHERE sub_job_id IN (SELECT ... FOR UPDATE SKIP
LOCKED)``, so concurrent runners never claim the same task and never wait on each other;
on SQLite the same statement runs under ``BEGIN IMMEDIATE``, one writer at a time.

Wake-ups: a process rings its own doorbell when it adds due work; on PostgreSQL runners
in other processes get ``NOTIFY imagejobs_engine`` (sent inside a transaction that
changes tasks, or after the commit of new tasks), and on SQLite those notice other
processes' commits through ``PRAGMA data_version`` (engine_wakeups.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import cache
from typing import Any, TypeVar

import asyncpg
import msgspec

from imagejobs.domain.enums import JobStatus, JobType, SubJobStatus
from imagejobs.domain.lifecycle import (
    ClaimedTask,
    Finish,
    NewTask,
    Phase,
    Reschedule,
    ServerChange,
    StartRollback,
    TaskSummary,
    TaskView,
    Transition,
    job_status_after,
)
from imagejobs.storage.database import COUNTER_STRIPES, Database, Row, Statement, Transaction
from imagejobs.storage.engine_wakeups import Wakeups, notify
from imagejobs.storage.job_store import CounterKey, apply_counter_deltas
from imagejobs.storage.project_keys import NOT_RETIRED
from imagejobs.storage.server_changes import apply_server_changes, server_rows

logger = logging.getLogger("imagejobs.engine")
T = TypeVar("T")
_DEADLOCK_RETRIES = 5

INSERT_TASK = Statement(
    "INSERT INTO engine_tasks (sub_job_id, job_id, project_id, job_type, position, phase,"
    " due_at, payload, created_at)"
    " VALUES (:sub_job_id, :job_id, :project_id, :job_type, :position, 'run',"
    " :due_at, :payload, :created_at)"
)
_CLAIMED_COLUMNS = (
    "sub_job_id, job_id, project_id, job_type, position, phase, fencing_token, attempts,"
    " started_at, reads, payload, error_code, error_message, progress"
)
# The projects with due work, one index probe each (a skip scan of (project_id, due_at)).
_DUE_PROJECTS = (
    "WITH RECURSIVE projects (project_id) AS ("
    " SELECT MIN(project_id) FROM engine_tasks WHERE due_at <= :now"
    " UNION ALL SELECT (SELECT MIN(t.project_id) FROM engine_tasks AS t"
    " WHERE t.project_id > projects.project_id AND t.due_at <= :now)"
    " FROM projects WHERE projects.project_id IS NOT NULL),"
    # Not a key a reset retired: its steps' results would be dropped (RETIRED_FENCE).
    " live (project_id) AS (SELECT project_id FROM projects WHERE project_id IS NOT NULL"
    " AND project_id NOT IN (SELECT storage_key FROM retired_project_keys)),"
    # Each project's share of the batch (a project with fewer due tasks leaves its share
    # to the next claim): every project is served, and no more rows are read than needed.
    " share (n) AS (SELECT CASE WHEN COUNT(project_id) = 0 THEN 1"
    " ELSE (:limit + COUNT(project_id) - 1) / COUNT(project_id) END FROM live)"
)
# Every write of a step's result, heartbeat or reschedule holds only for a task whose
# storage key no reset has retired: a step that was running when its project was reset
# (even twice) writes nothing, under the old key or any other; the sweeper deletes the
# rest of its generation. SQLite has one writer at a time, so this is exact; on PostgreSQL
# a statement that began before the reset committed does not see the key retired, but the
# reset gave the key's leased tasks a new fencing token (project_keys.FENCE_LEASED), so
# that statement waits for the reset and then matches no row (docs/engine.md, Reset).
RETIRED_FENCE = NOT_RETIRED
# Each project's earliest due tasks, locked (PostgreSQL) as they are found.
_PER_PROJECT = {
    "postgresql": " FROM live AS p CROSS JOIN LATERAL (SELECT sub_job_id, due_at"
    " FROM engine_tasks WHERE project_id = p.project_id AND due_at <= :now"
    " ORDER BY due_at LIMIT (SELECT n FROM share) FOR UPDATE SKIP LOCKED) AS c",
    "sqlite": " FROM live AS p JOIN engine_tasks AS c ON c.sub_job_id IN (SELECT sub_job_id"
    " FROM engine_tasks WHERE project_id = p.project_id AND due_at <= :now"
    " ORDER BY due_at LIMIT (SELECT n FROM share))",
}


def _claim(dialect: str) -> Statement:
    """Claim fairly: round-robin over the projects with due work (each project's first
    due task, then each one's second, ...), earliest first within a round, so that one
    project's backlog cannot hold back another's work."""
    return Statement(
        "UPDATE engine_tasks SET lease_owner = :owner, due_at = :lease_until,"
        " fencing_token = fencing_token + 1, attempts = attempts + 1"
        f" WHERE sub_job_id IN ({_DUE_PROJECTS} SELECT sub_job_id FROM (SELECT c.sub_job_id,"
        " c.due_at, ROW_NUMBER() OVER (PARTITION BY p.project_id ORDER BY c.due_at) AS turn"
        f"{_PER_PROJECT[dialect]}) AS fair ORDER BY turn, due_at LIMIT :limit)"
        f" RETURNING {_CLAIMED_COLUMNS}"
    )


# PostgreSQL: the claim, the first start of its sub-jobs (and of their jobs still
# WAITING) and the counters' moves in one statement, committed on its own: one round
# trip per batch instead of seven (the send and the wake-up of each round trip were a
# quarter of a worker's CPU). A sub-job starts when the claim finds it WAITING; the
# counters move by what the statement changed, in the usual lock order (tasks, sub-jobs,
# jobs, counters by key). `= ANY(ARRAY(...))`, not `IN (SELECT ...)`: the few rows are
# looked up by key instead of a hash join over a scan of the whole table.
CLAIM_POSTGRES = Statement(
    "WITH claimed AS (UPDATE engine_tasks SET lease_owner = :owner, due_at = :lease_until,"
    " fencing_token = fencing_token + 1, attempts = attempts + 1,"
    " started_at = COALESCE(started_at, CAST(:now AS BIGINT))"
    f" WHERE sub_job_id IN ({_DUE_PROJECTS} SELECT sub_job_id FROM (SELECT c.sub_job_id,"
    " c.due_at, ROW_NUMBER() OVER (PARTITION BY p.project_id ORDER BY c.due_at) AS turn"
    f"{_PER_PROJECT['postgresql']}) AS fair ORDER BY turn, due_at LIMIT :limit)"
    f" RETURNING {_CLAIMED_COLUMNS}),"
    " started AS (UPDATE sub_jobs SET status = 'RUNNING', begin_time = CAST(:now AS BIGINT)"
    " WHERE id = ANY(ARRAY(SELECT sub_job_id FROM claimed)) AND status = 'WAITING'"
    " RETURNING job_id, project_id, job_type),"
    " started_jobs AS (UPDATE jobs SET status = 'RUNNING'"
    " WHERE id = ANY(ARRAY(SELECT job_id FROM started)) AND status = 'WAITING'"
    " RETURNING project_id, job_type),"
    " moves (project_id, scope, job_type, status, n) AS ("
    "SELECT project_id, 'sub_job', job_type, 'WAITING', -COUNT(*) FROM started"
    " GROUP BY project_id, job_type"
    " UNION ALL SELECT project_id, 'sub_job', job_type, 'RUNNING', COUNT(*) FROM started"
    " GROUP BY project_id, job_type"
    " UNION ALL SELECT project_id, 'job', job_type, 'WAITING', -COUNT(*) FROM started_jobs"
    " GROUP BY project_id, job_type"
    " UNION ALL SELECT project_id, 'job', job_type, 'RUNNING', COUNT(*) FROM started_jobs"
    " GROUP BY project_id, job_type),"
    " counted AS (INSERT INTO job_counters (project_id, scope, job_type, status, stripe, n)"
    " SELECT project_id, scope, job_type, status, CAST(:stripe AS SMALLINT), n FROM moves"
    " ORDER BY project_id, scope, job_type, status"
    " ON CONFLICT (project_id, scope, job_type, status, stripe)"
    " DO UPDATE SET n = job_counters.n + excluded.n)"
    f" SELECT {_CLAIMED_COLUMNS} FROM claimed ORDER BY sub_job_id"
)
CLAIM_SQLITE = _claim("sqlite")
MARK_STARTED = Statement("UPDATE engine_tasks SET started_at = :now WHERE sub_job_id = :id")
START_SUB_JOB = Statement(
    "UPDATE sub_jobs SET status = 'RUNNING', begin_time = :now"
    " WHERE id = :id AND status = 'WAITING' RETURNING id"
)
START_JOB = Statement(
    "UPDATE jobs SET status = 'RUNNING' WHERE id = :id AND status = 'WAITING'"
    " RETURNING project_id, job_type"
)
# Only a lease its owner still holds: after a reschedule, a rollback start or a release
# (same token, no owner) a late heartbeat must not push the due time out.
HEARTBEAT = Statement(
    "UPDATE engine_tasks SET due_at = :until, progress = :progress"
    " WHERE sub_job_id = :id AND fencing_token = :token AND lease_owner = :owner"
    f" AND {RETIRED_FENCE}"
)
RESCHEDULE_TASK = Statement(
    "UPDATE engine_tasks SET lease_owner = NULL,"
    # Reads that arrived while the step ran already count: due at once then.
    " due_at = CASE WHEN :wait_reads > 0 AND reads >= :wait_reads"
    " THEN CAST(:now AS BIGINT) ELSE CAST(:due AS BIGINT) END,"
    " attempts = attempts + :delta, wait_reads = :wait_reads, error_code = :code,"
    " error_message = :message, progress = :progress"
    f" WHERE sub_job_id = :id AND fencing_token = :token AND {RETIRED_FENCE} RETURNING due_at"
)
START_ROLLBACK_TASK = Statement(
    "UPDATE engine_tasks SET phase = 'rollback', lease_owner = NULL, due_at = :due,"
    " attempts = 0, wait_reads = 0, error_code = :code, error_message = :message, progress = ''"
    f" WHERE sub_job_id = :id AND fencing_token = :token AND {RETIRED_FENCE}"
    " RETURNING sub_job_id"
)
SET_SUB_JOB_STATUS = Statement(
    "UPDATE sub_jobs SET status = :status, end_time = :end_time, error_code = :code,"
    " error_message = :message WHERE id = :id AND status = :old"
)
END_JOB = Statement("UPDATE jobs SET status = :status, end_time = :now WHERE id = :id")
# A sub-job failed while its job still runs: the job will fail, even if that sub-job is
# deleted (BatchDeleteImageSubJobs) before its siblings end.
REMEMBER_FAILURE = Statement(
    "INSERT INTO engine_job_failures (job_id) VALUES (:id) ON CONFLICT (job_id) DO NOTHING"
)
FORGET_FAILURE = Statement("DELETE FROM engine_job_failures WHERE job_id = :id")
_FAILED_EARLIER = "FAILED_EARLIER"
COUNT_READS = Statement(
    "UPDATE engine_tasks SET reads = reads + 1,"
    " due_at = CASE WHEN lease_owner IS NULL AND wait_reads > 0 AND reads + 1 >= wait_reads"
    " THEN CAST(:now AS BIGINT) ELSE due_at END"
    " WHERE job_id = :job_id AND project_id = :project_id"
    " RETURNING CASE WHEN due_at = CAST(:now AS BIGINT) THEN 1 ELSE 0 END, reads"
)
# Not MIN(due_at): an index-only scan re-reads the heap for every dead entry (a queue
# table has many between vacuums); a plain index scan marks them dead once and skips them.
NEXT_DUE = Statement("SELECT due_at, sub_job_id FROM engine_tasks ORDER BY due_at LIMIT 1")
SUMMARY = Statement(
    "SELECT"
    " COALESCE(SUM(CASE WHEN lease_owner IS NULL AND due_at <= :now THEN 1 ELSE 0 END), 0),"
    " COALESCE(SUM(CASE WHEN lease_owner IS NULL AND due_at > :now THEN 1 ELSE 0 END), 0),"
    " COALESCE(SUM(CASE WHEN lease_owner IS NOT NULL AND due_at > :now THEN 1 ELSE 0 END), 0),"
    " COALESCE(SUM(CASE WHEN lease_owner IS NOT NULL AND due_at <= :now THEN 1 ELSE 0 END), 0)"
    # Not reset projects' old generations: no runner claims those, the sweeper deletes them.
    f" FROM engine_tasks WHERE {RETIRED_FENCE}"
)
_VIEW_COLUMNS = (
    "sub_job_id, job_id, project_id, job_type, phase, due_at, lease_owner, fencing_token,"
    " attempts, started_at, reads, wait_reads, error_code, error_message, progress"
)
# Every project's, but not those of reset projects' old generations (being swept).
LIST_TASKS = Statement(
    f"SELECT {_VIEW_COLUMNS} FROM engine_tasks"
    " WHERE project_id NOT IN (SELECT storage_key FROM retired_project_keys)"
    " ORDER BY due_at, sub_job_id LIMIT :limit"
)
LIST_PROJECT_TASKS = Statement(
    f"SELECT {_VIEW_COLUMNS} FROM engine_tasks WHERE project_id = :project_id"
    " ORDER BY due_at, sub_job_id LIMIT :limit"
)


# PostgreSQL: a batch of results in two writes besides the tasks' delete, each one
# statement over arrays (unnest) whatever the batch's size. First the sub-jobs' and the
# servers' changes, then the jobs locked in id order: the InitPlan filter runs the
# changes before the scan of jobs, so the lock order stays tasks, sub-jobs, servers,
# jobs. Then, after the sub-jobs' statuses are read under those locks, the jobs that
# ended and every counter's move. Counter rows are added to in the order given (sorted
# by key, as every writer does), not sorted again in the database's collation.
CHANGE_AND_LOCK_PG = Statement(
    "WITH s AS (UPDATE sub_jobs SET status = v.status, end_time = v.end_time,"
    " error_code = v.code, error_message = v.message"
    " FROM unnest(CAST(:sj_id AS BIGINT[]), CAST(:sj_status AS TEXT[]),"
    " CAST(:sj_old AS TEXT[]), CAST(:sj_end AS BIGINT[]), CAST(:sj_code AS TEXT[]),"
    " CAST(:sj_message AS TEXT[])) AS v (id, status, old, end_time, code, message)"
    " WHERE sub_jobs.id = v.id AND sub_jobs.status = v.old RETURNING 1),"
    " c AS (UPDATE image_servers SET status = w.status,"
    " aps_server_id = COALESCE(w.aps_server_id, image_servers.aps_server_id),"
    " instance_id = COALESCE(w.instance_id, image_servers.instance_id),"
    " image_id = COALESCE(w.image_id, image_servers.image_id), update_time = :now"
    " FROM unnest(CAST(:sv_id AS BIGINT[]), CAST(:sv_status AS TEXT[]),"
    " CAST(:sv_aps AS TEXT[]), CAST(:sv_instance AS TEXT[]), CAST(:sv_image AS TEXT[]))"
    " AS w (id, status, aps_server_id, instance_id, image_id)"
    " WHERE image_servers.id = w.id RETURNING 1),"
    " d AS (DELETE FROM image_servers WHERE id = ANY(CAST(:deleted AS BIGINT[])) RETURNING 1)"
    " SELECT id, status FROM jobs WHERE id = ANY(CAST(:ids AS BIGINT[]))"
    " AND (SELECT COUNT(*) FROM s) + (SELECT COUNT(*) FROM c) + (SELECT COUNT(*) FROM d) >= 0"
    " ORDER BY id FOR UPDATE"
)
END_AND_COUNT_PG = Statement(
    "WITH e AS (UPDATE jobs SET status = v.status, end_time = :now"
    " FROM unnest(CAST(:job_id AS BIGINT[]), CAST(:job_status AS TEXT[])) AS v (id, status)"
    " WHERE jobs.id = v.id RETURNING 1)"
    " INSERT INTO job_counters (project_id, scope, job_type, status, stripe, n)"
    " SELECT project_id, scope, job_type, status, CAST(:stripe AS SMALLINT), n"
    " FROM unnest(CAST(:c_project AS TEXT[]), CAST(:c_scope AS TEXT[]),"
    " CAST(:c_type AS TEXT[]), CAST(:c_status AS TEXT[]), CAST(:c_n AS BIGINT[]))"
    " WITH ORDINALITY AS k (project_id, scope, job_type, status, n, turn) ORDER BY turn"
    " ON CONFLICT (project_id, scope, job_type, status, stripe)"
    " DO UPDATE SET n = job_counters.n + excluded.n"
)


def _in_list(size: int) -> str:
    return ", ".join(f":id{i}" for i in range(size))


def padded(values: Sequence[T]) -> list[T]:
    """``values`` repeated at the end up to a power of two: IN lists of a few sizes only,
    so each size is one prepared statement (repeating a value changes no IN test)."""
    size = 1 << max(0, len(values) - 1).bit_length()
    return [*values, *[values[-1]] * (size - len(values))]


@cache
def start_jobs_statement(size: int) -> Statement:
    return Statement(
        "UPDATE jobs SET status = 'RUNNING'"
        f" WHERE id IN ({_in_list(size)}) AND status = 'WAITING'"
        " RETURNING project_id, job_type"
    )


@cache
def finish_tasks_statement(size: int) -> Statement:
    """Delete the tasks whose (id, fencing token) pairs still hold, in one statement."""
    pairs = ", ".join(f"(CAST(:id{i} AS BIGINT), CAST(:token{i} AS BIGINT))" for i in range(size))
    return Statement(
        f"DELETE FROM engine_tasks WHERE (sub_job_id, fencing_token) IN (VALUES {pairs})"
        f" AND {RETIRED_FENCE} RETURNING sub_job_id, fencing_token"
    )


@cache
def jobs_statement(size: int) -> Statement:
    """SQLite's jobs of a batch (one writer at a time: no row locks to take)."""
    return Statement(f"SELECT id, status FROM jobs WHERE id IN ({_in_list(size)}) ORDER BY id")


@cache
def sub_job_statuses_statement(size: int) -> Statement:
    return Statement(
        "SELECT job_id, status, COUNT(*) FROM sub_jobs"
        f" WHERE job_id IN ({_in_list(size)}) GROUP BY job_id, status"
        f" UNION ALL SELECT job_id, '{_FAILED_EARLIER}', 1 FROM engine_job_failures"
        f" WHERE job_id IN ({_in_list(size)})"
    )


# PostgreSQL: the same reads and writes over one array parameter (one prepared statement
# for every batch size, no padding).
_IDS = "ANY(CAST(:ids AS BIGINT[]))"
FINISH_TASKS_PG = Statement(
    "DELETE FROM engine_tasks AS t USING unnest(CAST(:ids AS BIGINT[]),"
    " CAST(:tokens AS BIGINT[])) AS v (id, token)"
    " WHERE t.sub_job_id = v.id AND t.fencing_token = v.token"
    f" AND t.{RETIRED_FENCE} RETURNING t.sub_job_id, t.fencing_token"
)
SUB_JOB_STATUSES_PG = Statement(
    f"SELECT job_id, status, COUNT(*) FROM sub_jobs WHERE job_id = {_IDS}"
    f" GROUP BY job_id, status UNION ALL SELECT job_id, '{_FAILED_EARLIER}', 1"
    f" FROM engine_job_failures WHERE job_id = {_IDS}"
)


def _by_ids(
    dialect: str, postgres: Statement, padded_statement: Callable[[int], Statement], ids: list[int]
) -> tuple[Statement, dict[str, Any]]:
    """A statement over ``ids`` and its parameters: one array on PostgreSQL, a padded IN
    list on SQLite."""
    if dialect == "postgresql":
        return postgres, {"ids": ids}
    values = padded(ids)
    return padded_statement(len(values)), {f"id{i}": v for i, v in enumerate(values)}


_encoder = msgspec.json.Encoder()


def task_row(task: NewTask, now: int) -> dict[str, Any]:
    return {
        "sub_job_id": task.sub_job_id,
        "job_id": task.job_id,
        "project_id": task.project_id,
        "job_type": task.job_type.value,
        "position": task.position,
        "due_at": task.due_at,
        "payload": _encoder.encode(dict(task.payload)).decode(),
        "created_at": now,
    }


def _claimed(row: Row, started_at: int) -> ClaimedTask:
    return ClaimedTask(
        sub_job_id=row[0],
        job_id=row[1],
        project_id=row[2],
        job_type=JobType(row[3]),
        position=row[4],
        phase=Phase(row[5]),
        fencing_token=row[6],
        attempts=row[7],
        started_at=started_at,
        reads=row[9],
        payload=msgspec.json.decode(row[10]),
        error_code=row[11],
        error_message=row[12],
        progress=row[13],
    )


def _sub_job_moves(
    counters: Counter[CounterKey], task: ClaimedTask, old: SubJobStatus, new: SubJobStatus
) -> None:
    counters[(task.project_id, "sub_job", task.job_type.value, old.value)] -= 1
    counters[(task.project_id, "sub_job", task.job_type.value, new.value)] += 1


def _sub_job_change(
    transition: Finish | StartRollback, now: int, counters: Counter[CounterKey]
) -> dict[str, Any]:
    """The sub-job's new status (and the counters' moves) for a recorded transition."""
    task = transition.task
    old = SubJobStatus.ROLLBACK if task.phase is Phase.ROLLBACK else SubJobStatus.RUNNING
    new = transition.status if isinstance(transition, Finish) else SubJobStatus.ROLLBACK
    _sub_job_moves(counters, task, old, new)
    return {
        "id": task.sub_job_id,
        "status": new.value,
        "old": old.value,
        "end_time": now if isinstance(transition, Finish) else None,
        "code": transition.error_code,
        "message": transition.error_message[:1024],
    }


async def _change_and_lock(
    tx: Transaction,
    sub_jobs: Sequence[dict[str, Any]],
    servers: Sequence[ServerChange],
    job_ids: list[int],
    now: int,
) -> list[Row]:
    """PostgreSQL: the sub-jobs' and servers' changes, then the jobs' rows locked."""
    changed, deleted = server_rows(servers, now)
    params = {
        "now": now,
        "sj_id": [row["id"] for row in sub_jobs],
        "sj_status": [row["status"] for row in sub_jobs],
        "sj_old": [row["old"] for row in sub_jobs],
        "sj_end": [row["end_time"] for row in sub_jobs],
        "sj_code": [row["code"] for row in sub_jobs],
        "sj_message": [row["message"] for row in sub_jobs],
        "sv_id": [row["id"] for row in changed],
        "sv_status": [row["status"] for row in changed],
        "sv_aps": [row["aps_server_id"] for row in changed],
        "sv_instance": [row["instance_id"] for row in changed],
        "sv_image": [row["image_id"] for row in changed],
        "deleted": [row["id"] for row in deleted],
        "ids": job_ids,
    }
    return await tx.fetch(CHANGE_AND_LOCK_PG, params)


class SqlEngineStore:
    """The task queue on SQLite or PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._dialect = database.dialect
        self._wakeups = Wakeups(database)

    # --- writing tasks, within the transaction that creates their jobs -----------------

    async def add_tasks(self, tx: Transaction, tasks: Sequence[NewTask], now: int) -> None:
        """Write ``tasks`` in ``tx``; call ``announce()`` once it has committed."""
        await tx.execute_many(INSERT_TASK, [task_row(t, now) for t in tasks])

    async def _notify(self, tx: Transaction) -> None:
        await notify(tx, self._dialect)

    def ring(self) -> None:
        """Wake this process's runner: due work was just committed."""
        self._wakeups.ring()

    async def announce(self) -> None:
        """Wake the runners of this process and of the others: new tasks were committed
        (engine_wakeups.py: the NOTIFY goes after the commit, not inside it)."""
        self._wakeups.ring()
        await self._wakeups.announce()

    # --- claims and leases -----------------------------------------------------------------

    async def claim(self, owner: str, limit: int, now: int, lease_ms: int) -> list[ClaimedTask]:
        """Lease up to ``limit`` due tasks (new ones, retries, and expired leases), fairly
        across projects."""

        params = {"owner": owner, "lease_until": now + lease_ms, "now": now, "limit": limit}
        if self._dialect == "postgresql":
            params["stripe"] = random.randrange(COUNTER_STRIPES)  # noqa: S311 - not secret
            rows = await retrying(lambda: self._db.fetch(CLAIM_POSTGRES, params))
            return [_claimed(row, row[8]) for row in rows]

        async def run(tx: Transaction) -> list[ClaimedTask]:
            rows = await tx.fetch(CLAIM_SQLITE, params)
            rows.sort(key=lambda row: row[0])
            tasks = [_claimed(row, row[8] if row[8] is not None else now) for row in rows]
            started = [t for t, row in zip(tasks, rows, strict=True) if row[8] is None]
            if started:
                await self._start(tx, started, now)
            return tasks

        return await self._transaction(run)

    async def _start(self, tx: Transaction, started: Sequence[ClaimedTask], now: int) -> None:
        """First claim of a sub-job (SQLite): it and (if still WAITING) its job go RUNNING."""
        ids = [{"id": t.sub_job_id, "now": now} for t in started]
        await tx.execute_many(MARK_STARTED, ids)
        counters: Counter[CounterKey] = Counter()
        for task, row in zip(started, ids, strict=True):
            # Only a sub-job that really was WAITING moves its counters: one imported as
            # RUNNING (a state file, the demo world) has a task that was never started.
            if await tx.fetch(START_SUB_JOB, row):
                _sub_job_moves(counters, task, SubJobStatus.WAITING, SubJobStatus.RUNNING)
        job_ids = padded(sorted({t.job_id for t in started}))
        params = {f"id{i}": job_id for i, job_id in enumerate(job_ids)}
        for project_id, job_type in await tx.fetch(start_jobs_statement(len(job_ids)), params):
            counters[(project_id, "job", job_type, JobStatus.WAITING.value)] -= 1
            counters[(project_id, "job", job_type, JobStatus.RUNNING.value)] += 1
        await apply_counter_deltas(tx, counters)

    async def heartbeat(self, owner: str, held: Sequence[tuple[int, int, str]], until: int) -> None:
        """Extend to ``until`` the leases ``owner`` still holds among ``held`` (sub-job id,
        fencing token, progress)."""
        if not held:
            return
        rows = [
            {"id": i, "token": token, "until": until, "progress": p, "owner": owner}
            for i, token, p in held
        ]

        async def run(tx: Transaction) -> None:
            await tx.execute_many(HEARTBEAT, rows)

        await self._transaction(run)

    # --- results -------------------------------------------------------------------------

    async def record(self, transitions: Sequence[Transition], now: int) -> list[bool]:
        """Record each transition whose fencing token still holds; True where recorded."""
        order = sorted(range(len(transitions)), key=lambda i: transitions[i].task.sub_job_id)

        async def run(tx: Transaction) -> list[bool]:
            applied = [False] * len(transitions)
            finishing = [i for i in order if isinstance(transitions[i], Finish)]
            if finishing:
                finished_ids = await self._finish_tasks(tx, [transitions[i] for i in finishing])
                for i in finishing:
                    task = transitions[i].task
                    applied[i] = (task.sub_job_id, task.fencing_token) in finished_ids
            counters: Counter[CounterKey] = Counter()
            sub_jobs: list[dict[str, Any]] = []
            for i in order:
                transition = transitions[i]
                if not isinstance(transition, Finish):
                    applied[i] = await self._fence(tx, transition, now)
                if applied[i] and not isinstance(transition, Reschedule):
                    sub_jobs.append(_sub_job_change(transition, now, counters))
            finished = [
                t for t, a in zip(transitions, applied, strict=True) if a and isinstance(t, Finish)
            ]
            servers = [f.server for f in finished if f.server is not None]
            job_ids = sorted({f.task.job_id for f in finished})
            if self._dialect == "postgresql":
                locked = await _change_and_lock(tx, sub_jobs, servers, job_ids, now)
            else:  # one writer at a time: no row locks
                if sub_jobs:
                    await tx.execute_many(SET_SUB_JOB_STATUS, sub_jobs)
                await apply_server_changes(tx, servers, now)
                locked = []
                if job_ids:
                    values = padded(job_ids)
                    ids = {f"id{i}": v for i, v in enumerate(values)}
                    locked = await tx.fetch(jobs_statement(len(values)), ids)
            ended = await self._end_jobs(tx, finished, locked, now, counters)
            await self._end_and_count(tx, ended, counters, now)
            if any(a and _due_now(t, now) for a, t in zip(applied, transitions, strict=True)):
                await self._notify(tx)
            return applied

        applied = await self._transaction(run)
        if any(a and _due_now(t, now) for a, t in zip(applied, transitions, strict=True)):
            self.ring()
        return applied

    @staticmethod
    async def _fence(tx: Transaction, transition: Reschedule | StartRollback, now: int) -> bool:
        """The task's own change, if its fencing token still holds (else nothing)."""
        task = transition.task
        fence = {"id": task.sub_job_id, "token": task.fencing_token}
        if isinstance(transition, Reschedule):
            params = {
                **fence,
                "now": now,
                "due": transition.due_at,
                "delta": transition.attempts_delta,
                "wait_reads": transition.wait_reads,
                "code": transition.error_code,
                "message": transition.error_message,
                "progress": transition.progress,
            }
            return bool(await tx.fetch(RESCHEDULE_TASK, params))
        params = {
            **fence,
            "due": transition.due_at,
            "code": transition.error_code,
            "message": transition.error_message,
        }
        return bool(await tx.fetch(START_ROLLBACK_TASK, params))

    async def _finish_tasks(
        self, tx: Transaction, finishing: Sequence[Transition]
    ) -> set[tuple[int, int]]:
        """Delete the tasks of these results whose fencing tokens hold: (id, token) pairs."""
        if self._dialect == "postgresql":
            arrays = {
                "ids": [t.task.sub_job_id for t in finishing],
                "tokens": [t.task.fencing_token for t in finishing],
            }
            return {(row[0], row[1]) for row in await tx.fetch(FINISH_TASKS_PG, arrays)}
        pairs = padded([(t.task.sub_job_id, t.task.fencing_token) for t in finishing])
        params: dict[str, Any] = {}
        for i, (sub_job_id, token) in enumerate(pairs):
            params[f"id{i}"] = sub_job_id
            params[f"token{i}"] = token
        rows = await tx.fetch(finish_tasks_statement(len(pairs)), params)
        return {(row[0], row[1]) for row in rows}

    async def _end_jobs(
        self,
        tx: Transaction,
        finished: Sequence[Finish],
        locked: Sequence[Row],
        now: int,
        counters: Counter[CounterKey],
    ) -> list[dict[str, Any]]:
        """The jobs whose sub-jobs have all ended, with their final status. Their rows
        were ``locked`` first (PostgreSQL), so that two runners ending a job's last
        sub-jobs see each other's results in the read that follows."""
        if not finished:
            return []
        scopes = {f.task.job_id: (f.task.project_id, f.task.job_type.value) for f in finished}
        job_ids = sorted(scopes)
        open_jobs = {
            job_id: JobStatus(status)
            for job_id, status in locked
            if status not in (JobStatus.SUCCESS.value, JobStatus.FAILED.value)
        }
        if not open_jobs:
            return []
        statuses, params = _by_ids(
            self._dialect, SUB_JOB_STATUSES_PG, sub_job_statuses_statement, job_ids
        )
        rows = await tx.fetch(statuses, params)
        counts, failed_earlier = _sub_job_counts(rows, open_jobs)
        failing = {f.task.job_id for f in finished if f.status is SubJobStatus.FAILED}
        ended: list[dict[str, Any]] = []
        remembered: list[dict[str, Any]] = []
        forgotten: list[dict[str, Any]] = []
        for job_id in sorted(open_jobs):
            final = job_status_after(counts[job_id])
            if final is None:
                if job_id in failing and job_id not in failed_earlier:
                    remembered.append({"id": job_id})
                continue
            if job_id in failed_earlier:
                final = JobStatus.FAILED
                forgotten.append({"id": job_id})
            ended.append({"id": job_id, "status": final.value, "now": now})
            project_id, job_type = scopes[job_id]
            counters[(project_id, "job", job_type, open_jobs[job_id].value)] -= 1
            counters[(project_id, "job", job_type, final.value)] += 1
        if remembered:
            await tx.execute_many(REMEMBER_FAILURE, remembered)
        if forgotten:
            await tx.execute_many(FORGET_FAILURE, forgotten)
        return ended

    async def _end_and_count(
        self,
        tx: Transaction,
        ended: Sequence[dict[str, Any]],
        counters: Counter[CounterKey],
        now: int,
    ) -> None:
        """End these jobs and move the counters (PostgreSQL: in one statement)."""
        if self._dialect != "postgresql":
            if ended:
                await tx.execute_many(END_JOB, ended)
            await apply_counter_deltas(tx, counters)
            return
        moves = [(key, n) for key, n in sorted(counters.items()) if n]
        if not ended and not moves:
            return
        params = {
            "now": now,
            "job_id": [row["id"] for row in ended],
            "job_status": [row["status"] for row in ended],
            "stripe": tx.counter_stripe,
            "c_project": [key[0] for key, _ in moves],
            "c_scope": [key[1] for key, _ in moves],
            "c_type": [key[2] for key, _ in moves],
            "c_status": [key[3] for key, _ in moves],
            "c_n": [n for _, n in moves],
        }
        await tx.execute(END_AND_COUNT_PG, params)

    async def release(self, tasks: Sequence[ClaimedTask], now: int) -> None:
        """Give tasks back unfinished (shutdown): due at once, the claim not counted, and
        the error a rollback is undoing kept for the sub-job's final FAILED."""
        released = [
            Reschedule(
                t,
                now,
                attempts_delta=-1,
                error_code=t.error_code,
                error_message=t.error_message,
                progress=t.progress,
            )
            for t in tasks
        ]
        await self.record(released, now)

    # --- reads of jobs (steering: complete after N reads) ---------------------------------

    async def count_reads(
        self, project_id: str, job_ids: Sequence[int], now: int
    ) -> dict[int, int]:
        """Count one read of each job; tasks waiting for that many reads become due. The
        reads each job (that still has tasks) has had now."""
        if not job_ids:
            return {}
        reads: dict[int, int] = {}

        async def run(tx: Transaction) -> bool:
            woke = False
            reads.clear()  # a retried transaction counts again
            for job_id in sorted(set(job_ids)):
                rows = await tx.fetch(
                    COUNT_READS, {"job_id": job_id, "project_id": project_id, "now": now}
                )
                woke = woke or any(row[0] for row in rows)
                if rows:
                    reads[job_id] = min(row[1] for row in rows)
            if woke:
                await self._notify(tx)
            return woke

        if await self._transaction(run):
            self.ring()
        return reads

    # --- waiting for work ------------------------------------------------------------------

    async def next_due_at(self) -> int | None:
        rows = await self._db.fetch(NEXT_DUE, {})
        due: int | None = rows[0][0] if rows else None
        return due

    async def wait_for_work(self, timeout: float) -> None:
        """Return when work may have become due, or after ``timeout`` seconds."""
        await self._wakeups.wait(timeout)

    async def listen(self) -> None:
        await self._wakeups.listen()

    async def unlisten(self) -> None:
        await self._wakeups.unlisten()

    # --- operators -------------------------------------------------------------------------

    async def summary(self, now: int) -> TaskSummary:
        row = (await self._db.fetch(SUMMARY, {"now": now}))[0]
        return TaskSummary(due=row[0], scheduled=row[1], leased=row[2], expired=row[3])

    async def list_tasks(self, project_id: str | None, limit: int) -> list[TaskView]:
        if project_id is None:
            rows = await self._db.fetch(LIST_TASKS, {"limit": limit})
        else:
            rows = await self._db.fetch(
                LIST_PROJECT_TASKS, {"project_id": project_id, "limit": limit}
            )
        return [
            TaskView(
                sub_job_id=r[0],
                job_id=r[1],
                project_id=r[2],
                job_type=JobType(r[3]),
                phase=Phase(r[4]),
                due_at=r[5],
                lease_owner=r[6],
                fencing_token=r[7],
                attempts=r[8],
                started_at=r[9],
                reads=r[10],
                wait_reads=r[11],
                error_code=r[12],
                error_message=r[13],
                progress=r[14],
            )
            for r in rows
        ]

    # --- transactions, retried on PostgreSQL deadlocks and serialization failures ---------

    async def _transaction(self, work: Callable[[Transaction], Awaitable[T]]) -> T:
        return await retrying_transaction(self._db, work)


async def retrying(statement: Callable[[], Awaitable[T]]) -> T:
    """Run one statement committed on its own; retry it when PostgreSQL aborts it to
    break a deadlock or a serialization conflict."""
    for attempt in range(_DEADLOCK_RETRIES):
        try:
            return await statement()
        except asyncpg.TransactionRollbackError:
            if attempt == _DEADLOCK_RETRIES - 1:
                raise
            logger.info("statement aborted by the database; retrying", exc_info=True)
            await asyncio.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


async def retrying_transaction(
    database: Database, work: Callable[[Transaction], Awaitable[T]]
) -> T:
    """Run ``work`` in a transaction; retry it when PostgreSQL aborts it to break a
    deadlock or a serialization conflict (the work is then redone from the start)."""
    for attempt in range(_DEADLOCK_RETRIES):
        try:
            async with database.transaction() as tx:
                return await work(tx)
        except asyncpg.TransactionRollbackError:
            if attempt == _DEADLOCK_RETRIES - 1:
                raise
            logger.info("transaction aborted by the database; retrying", exc_info=True)
            await asyncio.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


def _sub_job_counts(
    rows: Sequence[Row], open_jobs: Iterable[int]
) -> tuple[dict[int, dict[SubJobStatus, int]], set[int]]:
    """Each open job's sub-jobs by status, and the open jobs one of whose sub-jobs
    failed earlier (and may have been deleted since)."""
    counts: dict[int, dict[SubJobStatus, int]] = {job_id: {} for job_id in open_jobs}
    failed_earlier: set[int] = set()
    for job_id, status, n in rows:
        if job_id not in counts:
            continue
        if status == _FAILED_EARLIER:
            failed_earlier.add(job_id)
        else:
            counts[job_id][SubJobStatus(status)] = n
    return counts, failed_earlier


def _due_now(transition: Transition, now: int) -> bool:
    if isinstance(transition, StartRollback):
        return transition.due_at <= now
    return isinstance(transition, Reschedule) and transition.due_at <= now
