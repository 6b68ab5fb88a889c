"""Bulk seeding of realistic jobs for demos and benchmarks (``imagejobs seed``).

Rows are generated oldest first (ids ascend with time, across projects taken in turn)
in batches of plain tuples, counted as they are made (a flat list of counts indexed by
project, type and status, turned into counter rows once). The newest jobs are still in
progress, and their unfinished sub-jobs get engine tasks, so a running engine finishes
them as it would any job (the task's payload comes from the caller: services build it).

SQLite: one transaction per batch, with that batch's counters: an interrupted seed
leaves fewer jobs, never a wrong count. PostgreSQL: one transaction for everything,
rows written with ``COPY``. When the seed at least doubles the jobs table (a new
database, say), that transaction also drops the tables' indexes and keys first and
builds them once at the end (a sorted build instead of one random B-tree insert per
row and index, and one anti-join to check the foreign key instead of a lookup per row);
then ``VACUUM (ANALYZE)`` writes the visibility map that index-only scans need and the
statistics the planner needs.
"""

from __future__ import annotations

import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import asyncpg
import msgspec

from imagejobs.domain.enums import QUERYABLE_JOB_TYPES, JobStatus, JobType
from imagejobs.domain.ids import EPOCH_MS, ID_BASE, NODE_BITS, SEQUENCE_BITS
from imagejobs.domain.times import now_ms
from imagejobs.storage.database import (
    Database,
    PostgresDatabase,
    SqliteDatabase,
    Statement,
)
from imagejobs.storage.engine_wakeups import NOTIFY
from imagejobs.storage.job_store import (
    ADD_TO_COUNTER,
    INSERT_JOB,
    INSERT_SUB_JOB,
    CounterKey,
    apply_counter_deltas,
)
from imagejobs.storage.project_keys import SqlProjectKeyStore

_TYPES = tuple(t.value for t in QUERYABLE_JOB_TYPES)
_TYPE_THRESHOLDS = (0.45, 0.80)  # CREATE_SERVER 45%, CREATE_SERVER_IMAGE 35%, DELETE_SERVER 20%
_IMAGE_TYPE = _TYPES.index(JobType.CREATE_SERVER_IMAGE.value)
# Job and sub-job statuses share these four values; a count's index is its position here.
_STATUSES = (JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.RUNNING, JobStatus.WAITING)
_SUCCESS, _FAILED, _RUNNING, _WAITING = range(4)
_FAILURE_RATE = 0.08
_FAILURES = (
    ("WKS.00211401", "The requested operation failed. Please try again later."),
    ("WKS.00050902", "The service is now unavailable to process the request."),
    ("WKS.00129901", "The request message is invalid."),
)
JOB_COLUMNS = (
    "id",
    "project_id",
    "job_type",
    "status",
    "begin_time",
    "end_time",
    "sub_jobs_total",
)
SUB_JOB_COLUMNS = (
    "id",
    "job_id",
    "project_id",
    "job_type",
    "status",
    "begin_time",
    "end_time",
    "resource_id",
    "resource_name",
    "error_code",
    "error_message",
)
TASK_COLUMNS = (
    "sub_job_id",
    "job_id",
    "project_id",
    "job_type",
    "position",
    "phase",
    "due_at",
    "started_at",
    "payload",
    "created_at",
)
INSERT_TASK = Statement(
    f"INSERT INTO engine_tasks ({', '.join(TASK_COLUMNS)})"
    f" VALUES ({', '.join(':' + c for c in TASK_COLUMNS)})"
)
BATCH = 20_000  # jobs per batch
# Statements that take as long as the tables are big: the pool's per-call timeout (meant
# for API calls) would cut them off.
_BULK_TIMEOUT = 24 * 3600.0
# For this transaction only: memory for each index build's sort (with the default 64 MB,
# 10M rows sort on disk) and for the join that checks a foreign key's rows.
_BULK_SETTINGS = ("maintenance_work_mem = '512MB'", "work_mem = '256MB'")


@dataclass(frozen=True)
class SeedPlan:
    project_id: str
    jobs: int  # in all, spread evenly over the projects
    sub_jobs_per_job: int = 1
    random_seed: int | None = None
    # Jobs are spread evenly over this many days before now.
    days: int = 30
    # ``project_id`` and ``projects - 1`` more (project_ids()), which take turns.
    projects: int = 1

    def project_ids(self) -> list[str]:
        """``project_id`` first, then ids made from it (32 hex digits, like IAM's)."""
        more = (
            sha256(f"{self.project_id}/{i}".encode()).hexdigest()[:32]
            for i in range(1, self.projects)
        )
        return [self.project_id, *more]


@dataclass(frozen=True, slots=True)
class LiveSubJob:
    """An unfinished seeded sub-job: what its engine task's payload is made from."""

    project_id: str
    job_type: JobType
    server_id: int  # the image server it works on (not a row of image_servers)
    server_name: str
    resource_id: str
    resource_name: str
    begin_time: int


# Told of each step after the rows (an index build, VACUUM): its name as it starts (with
# None), then again with the seconds it took.
Phase = Callable[[str, float | None], None]
# What a live sub-job's task gives its driver step (services/seeding.py builds it with
# the image-server service's own builders).
LivePayload = Callable[[LiveSubJob], Mapping[str, Any]]


@dataclass
class Batch:
    jobs: list[tuple[Any, ...]]
    sub_jobs: list[tuple[Any, ...]]
    tasks: list[tuple[Any, ...]]


class Tally:
    """Rows counted per (project, scope, type, status), as flat lists of ints."""

    def __init__(self, projects: Sequence[str]) -> None:
        self.projects = list(projects)
        size = len(self.projects) * len(_TYPES) * len(_STATUSES)
        self.jobs = [0] * size
        self.sub_jobs = [0] * size

    def take(self) -> Counter[CounterKey]:
        """The counts since the last take, as counter deltas."""
        deltas: Counter[CounterKey] = Counter()
        per_project = len(_TYPES) * len(_STATUSES)
        for scope, counts in (("job", self.jobs), ("sub_job", self.sub_jobs)):
            for i, n in enumerate(counts):
                if n:
                    project, rest = divmod(i, per_project)
                    job_type, status = divmod(rest, len(_STATUSES))
                    key = (self.projects[project], scope, _TYPES[job_type], _STATUSES[status])
                    deltas[key] += n
                    counts[i] = 0
        return deltas


def _uuid4(bits: int) -> str:
    """A version-4 UUID's text from 128 random bits (as uuid.UUID(int=…, version=4))."""
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _sub_statuses(status: int, count: int, rng: random.Random) -> list[int]:
    if status in (_WAITING, _SUCCESS):
        return [status] * count
    if status == _FAILED:
        failed = rng.randrange(count)
        return [_FAILED if i == failed else _SUCCESS for i in range(count)]
    running = rng.randrange(count)
    return [
        _SUCCESS if i < running else _RUNNING if i == running else _WAITING for i in range(count)
    ]


class _Rows:
    """The rows of one seed, made one job at a time (``add``): the random draws, ids and
    counts are inlined, ~2 µs a job where enum members, ``uuid`` and ``Counter`` cost ~9."""

    def __init__(self, plan: SeedPlan, tally: Tally, payload: LivePayload) -> None:
        self.rng = random.Random(plan.random_seed)  # noqa: S311 - demo data, not secrets
        self.tally = tally
        self.payload = payload
        self.encode = msgspec.json.Encoder().encode
        self.k = plan.sub_jobs_per_job
        self.now = now_ms()
        self.step = max(1, plan.days * 86_400_000 // max(plan.jobs, 1))
        self.start = self.now - self.step * plan.jobs
        # Positions in the whole seed: the newest 0.2% are still in progress (a quarter
        # of them not started yet); the others ended, 8% of them FAILED.
        self.running_from = plan.jobs - plan.jobs * 2 // 1000
        self.waiting_from = plan.jobs - plan.jobs * 5 // 10000
        node = secrets.randbelow(254) + 1
        # id_for(time, node, sequence) = id_base + (time << shift) + (sequence & mask)
        self.shift = NODE_BITS + SEQUENCE_BITS
        self.id_base = ID_BASE + (node << SEQUENCE_BITS) - (EPOCH_MS << self.shift)
        self.mask = (1 << SEQUENCE_BITS) - 1
        self.statuses = [s.value for s in _STATUSES]

    def add(self, batch: Batch, n: int) -> None:
        """Job ``n`` (from 0, oldest first) and its sub-jobs."""
        rand = self.rng.random
        projects = self.tally.projects
        p = n % len(projects)
        project = projects[p]
        begin = self.start + n * self.step
        r = rand()
        t = 0 if r < _TYPE_THRESHOLDS[0] else 1 if r < _TYPE_THRESHOLDS[1] else 2
        duration = 60_000 + int(rand() * 1_740_001)
        if begin + duration >= self.now:
            # Nothing ends in the future: not the newest ended jobs of a short --days, nor
            # the finished sub-jobs of a job still RUNNING (they end at begin + duration).
            duration = max(self.k, self.now - 1 - begin)
        if n < self.running_from:
            status = _FAILED if rand() < _FAILURE_RATE else _SUCCESS
            end: int | None = begin + duration
        else:
            status = _WAITING if n >= self.waiting_from else _RUNNING
            end = None
        job_id = self.id_base + (begin << self.shift) + (n & self.mask)
        job = (job_id, project, _TYPES[t], self.statuses[status], begin, end, self.k)
        batch.jobs.append(job)
        counter = (p * len(_TYPES) + t) * len(_STATUSES)
        self.tally.jobs[counter + status] += 1
        if self.k:
            subs = [status] if self.k == 1 else _sub_statuses(status, self.k, self.rng)
            self._sub_jobs(batch, job, n, t, duration, subs, counter)

    def _sub_jobs(
        self,
        batch: Batch,
        job: tuple[Any, ...],
        n: int,
        t: int,
        duration: int,
        statuses: list[int],
        counter: int,
    ) -> None:
        job_id, project, job_type, _, begin, _, _ = job
        server_id = self.id_base + ((begin - 3_600_000) << self.shift) + (n & self.mask)
        server_name = f"image-server-{n}"
        if t == _IMAGE_TYPE:
            resource_id, resource_name = _uuid4(self.rng.getrandbits(128)), f"image-{n}"
        else:
            resource_id, resource_name = str(server_id), server_name
        for i, status in enumerate(statuses):
            sub_begin = begin + 1 + i  # started a moment after the job
            sub_id = self.id_base + (sub_begin << self.shift) + ((n + i + 1) & self.mask)
            sub_end: int | None = sub_begin + duration - 1 - i
            if status == _WAITING:  # not started: its creation time, the job's (the engine's)
                sub_begin = begin
            code = message = ""
            if status == _FAILED:
                code, message = _FAILURES[int(self.rng.random() * len(_FAILURES))]
            elif status != _SUCCESS:
                sub_end = None
                live = LiveSubJob(
                    project,
                    QUERYABLE_JOB_TYPES[t],
                    server_id,
                    server_name,
                    resource_id,
                    resource_name,
                    sub_begin,
                )
                started = sub_begin if status == _RUNNING else None
                payload = self.encode(dict(self.payload(live))).decode()
                task = (sub_id, job_id, project, job_type, i, "run", self.now, started, payload)
                batch.tasks.append((*task, self.now))
            batch.sub_jobs.append(
                (
                    sub_id,
                    job_id,
                    project,
                    job_type,
                    self.statuses[status],
                    sub_begin,
                    sub_end,
                    resource_id,
                    resource_name,
                    code,
                    message,
                )
            )
            self.tally.sub_jobs[counter + status] += 1


def generate(
    plan: SeedPlan, tally: Tally, payload: LivePayload, batch_size: int = BATCH
) -> Iterator[Batch]:
    """Yield the plan's rows in batches of ``batch_size`` jobs, counting them in ``tally``."""
    rows = _Rows(plan, tally, payload)
    batch = Batch([], [], [])
    for n in range(plan.jobs):
        rows.add(batch, n)
        if len(batch.jobs) >= batch_size:
            yield batch
            batch = Batch([], [], [])
    if batch.jobs:
        yield batch


async def seed(
    database: Database,
    plan: SeedPlan,
    payload: LivePayload,
    progress: Callable[[int], None] | None = None,
    phase: Phase | None = None,
) -> None:
    """Insert ``plan.jobs`` jobs (and their sub-jobs, and tasks for the unfinished ones)
    into ``plan.project_ids()``. ``progress`` is told each batch's job count, ``phase``
    of the steps after the rows (index builds, VACUUM). Rows go under each project's
    storage key now (storage/project_keys.py), resolved once for all of them: a project
    reset earlier would otherwise get rows under its retired key, which the sweeper
    deletes."""
    tally = Tally(await SqlProjectKeyStore(database).storage_keys(plan.project_ids()))
    rows = progress or (lambda n: None)
    step = phase or (lambda label, seconds: None)
    if isinstance(database, PostgresDatabase):
        batches = generate(plan, tally, payload)
        await _seed_postgres(database, plan, batches, tally, rows, step)
        return
    assert isinstance(database, SqliteDatabase)
    # Each batch commits with its counts; with many projects a batch holds many counter
    # rows, so it grows with them.
    for batch in generate(plan, tally, payload, max(BATCH, 100 * plan.projects)):
        async with database.transaction() as tx:
            await tx.execute_rows(INSERT_JOB, batch.jobs)
            if batch.sub_jobs:
                await tx.execute_rows(INSERT_SUB_JOB, batch.sub_jobs)
            if batch.tasks:
                await tx.execute_rows(INSERT_TASK, batch.tasks)
            await apply_counter_deltas(tx, tally.take())
        rows(len(batch.jobs))


# --- PostgreSQL ---------------------------------------------------------------------------

_BULK_TABLES = ["jobs", "sub_jobs"]
_COUNTER_NAMES = ("project_id", "scope", "job_type", "status", "stripe", "delta")
# Keys on the bulk tables and foreign keys that point at them: (table, name, kind, definition).
_CONSTRAINTS = (
    "SELECT conrelid::regclass::text, conname, contype::text, pg_get_constraintdef(oid)"
    " FROM pg_constraint WHERE contype IN ('p', 'u', 'f')"
    " AND (conrelid = ANY($1::regclass[]) OR confrelid = ANY($1::regclass[]))"
    " ORDER BY conrelid::regclass::text, conname"
)
# Their other indexes: (name, definition).
_INDEXES = (
    "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
    " WHERE indrelid = ANY($1::regclass[])"
    " AND indexrelid NOT IN (SELECT conindid FROM pg_constraint WHERE conindid <> 0)"
    " ORDER BY 1"
)


async def _seed_postgres(
    database: PostgresDatabase,
    plan: SeedPlan,
    batches: Iterator[Batch],
    tally: Tally,
    rows: Callable[[int], None],
    phase: Phase,
) -> None:
    async with database.pool.acquire() as connection:
        async with connection.transaction():
            existing = await connection.fetchval(
                "SELECT count(*) FROM (SELECT 1 FROM jobs LIMIT $1) AS j",
                plan.jobs,
                timeout=_BULK_TIMEOUT,
            )
            rebuild: list[tuple[str, str]] = []
            if existing < plan.jobs:
                # The engine's lock order (tasks, sub-jobs, jobs): a runner is not deadlocked.
                await connection.execute(
                    "LOCK TABLE engine_tasks, sub_jobs, jobs IN ACCESS EXCLUSIVE MODE",
                    timeout=_BULK_TIMEOUT,
                )
                for setting in _BULK_SETTINGS:
                    await connection.execute(f"SET LOCAL {setting}")
                rebuild = await _drop_keys_and_indexes(connection)
            for batch in batches:
                await _copy(connection, "jobs", JOB_COLUMNS, batch.jobs)
                await _copy(connection, "sub_jobs", SUB_JOB_COLUMNS, batch.sub_jobs)
                await _copy(connection, "engine_tasks", TASK_COLUMNS, batch.tasks)
                rows(len(batch.jobs))
            for name, statement in rebuild:
                await _timed(connection, phase, f"Building {name}", statement)
            counters = [
                ADD_TO_COUNTER.args(dict(zip(_COUNTER_NAMES, (*key, 0, n), strict=True)))
                for key, n in sorted(tally.take().items())
            ]
            await connection.executemany(ADD_TO_COUNTER.postgres, counters, timeout=_BULK_TIMEOUT)
            # Runners of running servers and workers look for the new tasks at once.
            await connection.execute(NOTIFY.postgres)
        # Index-only scans need the visibility map that VACUUM writes; the planner, the
        # statistics.
        for table in (*_BULK_TABLES, "engine_tasks"):
            await _timed(
                connection, phase, f"VACUUM (ANALYZE) {table}", f"VACUUM (ANALYZE) {table}"
            )


async def _copy(
    connection: asyncpg.Connection, table: str, columns: Sequence[str], records: list[Any]
) -> None:
    if records:
        await connection.copy_records_to_table(
            table, records=records, columns=columns, timeout=_BULK_TIMEOUT
        )


async def _timed(connection: asyncpg.Connection, phase: Phase, label: str, statement: str) -> None:
    start = time.monotonic()
    phase(label, None)
    await connection.execute(statement, timeout=_BULK_TIMEOUT)
    phase(label, time.monotonic() - start)


async def _drop_keys_and_indexes(connection: asyncpg.Connection) -> list[tuple[str, str]]:
    """Drop the bulk tables' keys and indexes (and the foreign keys into them); the
    statements that make them again, in an order that works (keys, indexes, then the
    foreign keys that need those keys)."""
    constraints = await connection.fetch(_CONSTRAINTS, _BULK_TABLES)
    indexes = await connection.fetch(_INDEXES, _BULK_TABLES)
    foreign = [c for c in constraints if c[2] == "f"]
    keys = [c for c in constraints if c[2] != "f"]
    for table, name, _, _ in (*foreign, *keys):
        await connection.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        await connection.execute(f"DROP INDEX {name}")
    return [
        *(
            (name, f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {text}')
            for table, name, _, text in keys
        ),
        *((name, text) for name, text in indexes),
        *(
            (name, f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {text}')
            for table, name, _, text in foreign
        ),
    ]
