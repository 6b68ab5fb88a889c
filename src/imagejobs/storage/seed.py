"""Bulk seeding of realistic jobs for demos and benchmarks (``imagejobs seed``).

Rows are generated oldest first (ids ascend, so B-tree inserts append) and written in
large batches: ``executemany`` in one transaction per batch on SQLite, ``COPY`` on
PostgreSQL. Counters are added once at the end, in the same transaction as the last batch.
"""

from __future__ import annotations

import random
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from imagejobs.domain.enums import QUERYABLE_JOB_TYPES, JobStatus, JobType, SubJobStatus
from imagejobs.domain.ids import id_for
from imagejobs.domain.times import now_ms
from imagejobs.storage.database import Database, PostgresDatabase, SqliteDatabase
from imagejobs.storage.job_store import (
    INSERT_JOB,
    INSERT_SUB_JOB,
    CounterKey,
    apply_counter_deltas,
)

_TYPE_WEIGHTS = (0.45, 0.35, 0.20)  # CREATE_SERVER, CREATE_SERVER_IMAGE, DELETE_SERVER
_FAILURES = (
    ("WKS.00211401", "The requested operation failed. Please try again later."),
    ("WKS.00050902", "The service is now unavailable to process the request."),
    ("WKS.00129901", "The request message is invalid."),
)
_JOB_COLUMNS = (
    "id",
    "project_id",
    "job_type",
    "status",
    "begin_time",
    "end_time",
    "sub_jobs_total",
)
_SUB_JOB_COLUMNS = (
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
BATCH = 20_000


@dataclass(frozen=True)
class SeedPlan:
    project_id: str
    jobs: int
    sub_jobs_per_job: int = 1
    random_seed: int | None = None
    # Jobs are spread evenly over this many days before now.
    days: int = 30


def _job_status(position: float, rng: random.Random) -> JobStatus:
    """Recent jobs are still in flight; older ones finished, mostly successfully."""
    if position > 0.9995:
        return JobStatus.WAITING
    if position > 0.998:
        return JobStatus.RUNNING
    return JobStatus.FAILED if rng.random() < 0.08 else JobStatus.SUCCESS


def _sub_statuses(status: JobStatus, count: int, rng: random.Random) -> list[SubJobStatus]:
    if status is JobStatus.WAITING:
        return [SubJobStatus.WAITING] * count
    if status is JobStatus.SUCCESS:
        return [SubJobStatus.SUCCESS] * count
    if status is JobStatus.FAILED:
        failed = rng.randrange(count)
        return [SubJobStatus.FAILED if i == failed else SubJobStatus.SUCCESS for i in range(count)]
    running = rng.randrange(count)
    return [
        SubJobStatus.SUCCESS
        if i < running
        else SubJobStatus.RUNNING
        if i == running
        else SubJobStatus.WAITING
        for i in range(count)
    ]


def generate(
    plan: SeedPlan, counters: Counter[CounterKey]
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Yield batches of (job rows, sub-job rows), counting every row into ``counters``."""
    rng = random.Random(plan.random_seed)  # noqa: S311 - demo data, not secrets
    node = secrets.randbelow(254) + 1
    end = now_ms()
    span = plan.days * 86_400_000
    step = max(1, span // max(plan.jobs, 1))
    start = end - step * plan.jobs
    project = plan.project_id
    k = plan.sub_jobs_per_job
    jobs: list[tuple[Any, ...]] = []
    subs: list[tuple[Any, ...]] = []
    for n in range(plan.jobs):
        begin = start + n * step
        job_type = rng.choices(QUERYABLE_JOB_TYPES, _TYPE_WEIGHTS)[0]
        status = _job_status(n / plan.jobs, rng)
        finished = status in (JobStatus.SUCCESS, JobStatus.FAILED)
        duration = rng.randint(60_000, 1_800_000)
        job_id = id_for(begin, node, n)
        jobs.append(
            (
                job_id,
                project,
                job_type.value,
                status.value,
                begin,
                begin + duration if finished else None,
                k,
            )
        )
        counters[(project, "job", job_type.value, status.value)] += 1
        server_id = str(id_for(begin - 3_600_000, node, n))
        for i, sub_status in enumerate(_sub_statuses(status, k, rng) if k else []):
            sub_begin = begin + 1 + i
            sub_done = sub_status in (SubJobStatus.SUCCESS, SubJobStatus.FAILED)
            if job_type is JobType.CREATE_SERVER_IMAGE:
                resource_id, resource_name = (
                    str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    f"image-{n}",
                )
            else:
                resource_id, resource_name = server_id, f"image-server-{n}"
            code, message = rng.choice(_FAILURES) if sub_status is SubJobStatus.FAILED else ("", "")
            subs.append(
                (
                    id_for(sub_begin, node, n + i + 1),
                    job_id,
                    project,
                    job_type.value,
                    sub_status.value,
                    sub_begin,
                    sub_begin + duration - 1 - i if sub_done else None,
                    resource_id,
                    resource_name,
                    code,
                    message,
                )
            )
            counters[(project, "sub_job", job_type.value, sub_status.value)] += 1
        if len(jobs) >= BATCH:
            yield jobs, subs
            jobs, subs = [], []
    if jobs:
        yield jobs, subs


async def seed(
    database: Database, plan: SeedPlan, progress: Callable[[int], None] | None = None
) -> None:
    """Insert ``plan.jobs`` jobs (and their sub-jobs) into ``plan.project_id``."""
    counters: Counter[CounterKey] = Counter()
    batches = generate(plan, counters)
    if isinstance(database, PostgresDatabase):
        async with database.pool.acquire() as connection:
            for jobs, subs in batches:
                async with connection.transaction():
                    await connection.copy_records_to_table(
                        "jobs", records=jobs, columns=_JOB_COLUMNS
                    )
                    if subs:
                        await connection.copy_records_to_table(
                            "sub_jobs", records=subs, columns=_SUB_JOB_COLUMNS
                        )
                if progress:
                    progress(len(jobs))
            # Index-only scans need the visibility map that VACUUM writes.
            await connection.execute("VACUUM (ANALYZE) jobs")
            await connection.execute("VACUUM (ANALYZE) sub_jobs")
    else:
        assert isinstance(database, SqliteDatabase)
        for jobs, subs in batches:
            async with database.transaction() as tx:
                await tx.execute_rows(INSERT_JOB, jobs)
                if subs:
                    await tx.execute_rows(INSERT_SUB_JOB, subs)
            if progress:
                progress(len(jobs))
    async with database.transaction() as tx:
        await apply_counter_deltas(tx, counters)
