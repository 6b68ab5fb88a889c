"""``imagejobs seed``: every count exact, the engine tasks of the unfinished sub-jobs, the
schema as migrated after a bulk load, and a service that works on what was seeded."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huaweicloudsdkworkspaceapp.v1 import (
    CountImageSubJobsRequest,
    ListImageJobsRequest,
    ShowImageJobRequest,
)

from imagejobs.services.seeding import seed
from imagejobs.storage.database import Database, Statement, database_for
from imagejobs.storage.seed import SeedPlan
from tests.conftest import ServerProcess
from tests.factories import new_tenant
from tests.integration.sdk import sdk_client

pytestmark = pytest.mark.anyio

_ROWS = (
    "SELECT project_id, 'job', job_type, status, COUNT(*) FROM jobs"
    " GROUP BY project_id, job_type, status"
    " UNION ALL SELECT project_id, 'sub_job', job_type, status, COUNT(*) FROM sub_jobs"
    " GROUP BY project_id, job_type, status"
)
_COUNTERS = (
    "SELECT project_id, scope, job_type, status, SUM(n) FROM job_counters"
    " GROUP BY project_id, scope, job_type, status"
)
# Every unfinished sub-job has a task; a RUNNING one's says it started.
_TASKS = (
    "SELECT s.status, COUNT(t.sub_job_id), COUNT(t.started_at), COUNT(*) FROM sub_jobs AS s"
    " LEFT JOIN engine_tasks AS t ON t.sub_job_id = s.id"
    " WHERE s.status IN ('WAITING', 'RUNNING') GROUP BY s.status"
)
_SCHEMA = (
    "SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = 'public'"
    " UNION ALL SELECT 'constraint', conrelid::regclass::text || ' ' || conname || ' '"
    " || pg_get_constraintdef(oid) || ' ' || convalidated::text"
    " FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
)


async def _fetch(database: Database, sql: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in await database.fetch(Statement(sql), {})]


async def _counts_are_exact(database: Database) -> None:
    rows = {tuple(r[:4]): int(str(r[4])) for r in await _fetch(database, _ROWS)}
    counters = {tuple(r[:4]): int(str(r[4])) for r in await _fetch(database, _COUNTERS)}
    assert {k: n for k, n in counters.items() if n} == rows


async def test_seeded_rows_and_counts_are_exact(database: Database) -> None:
    schema = set(await _fetch(database, _SCHEMA)) if database.dialect == "postgresql" else None
    plan = SeedPlan("seeded-project", 4000, sub_jobs_per_job=3, random_seed=5, projects=3)
    phases: list[tuple[str, float | None]] = []
    done: list[int] = []

    await seed(database, plan, progress=done.append, phase=lambda *p: phases.append(p))

    assert sum(done) == 4000
    projects = plan.project_ids()
    assert projects[0] == "seeded-project"
    assert len(set(projects)) == 3
    per_project = await _fetch(
        database, "SELECT project_id, COUNT(*), SUM(sub_jobs_total) FROM jobs GROUP BY project_id"
    )
    assert sorted((p, n, s) for p, n, s in per_project) == sorted(
        [(projects[0], 1334, 3 * 1334), (projects[1], 1333, 3 * 1333), (projects[2], 1333, 3999)]
    )
    [(sub_jobs,)] = await _fetch(database, "SELECT COUNT(*) FROM sub_jobs")
    assert sub_jobs == 12000
    await _counts_are_exact(database)
    tasks = {row[0]: row[1:] for row in await _fetch(database, _TASKS)}
    assert set(tasks) == {"WAITING", "RUNNING"}  # some jobs are still in progress
    waiting_tasks, waiting_started, waiting = tasks["WAITING"]
    assert (waiting_tasks, waiting_started) == (waiting, 0)
    running_tasks, running_started, running = tasks["RUNNING"]
    assert running_tasks == running_started == running
    if schema is not None:
        # The keys and indexes dropped for the load are back, as migrated (and validated).
        assert set(await _fetch(database, _SCHEMA)) == schema
        assert any(label.startswith("Building ix_jobs_") for label, _ in phases)

    # More jobs into a table that already holds more than that: the rows go in with the
    # indexes in place, the counts still exact.
    await seed(database, SeedPlan("seeded-project", 1000, random_seed=6))

    [(jobs,)] = await _fetch(database, "SELECT COUNT(*) FROM jobs")
    assert jobs == 5000
    await _counts_are_exact(database)
    if schema is not None:
        assert set(await _fetch(database, _SCHEMA)) == schema


def _seed_command(database_url: str, tmp_path: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "imagejobs", "seed", "--database-url", database_url, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "IMAGEJOBS_DATA_DIR": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


async def _exact(database_url: str) -> None:
    database = database_for(database_url)
    await database.open()
    try:
        await _counts_are_exact(database)
    finally:
        await database.close()


def test_the_service_works_on_a_seeded_database(database_url: str, tmp_path: Path) -> None:
    tenant = new_tenant(database_url)
    output = _seed_command(
        database_url,
        tmp_path,
        *("--project-id", tenant.project_id, "--jobs", "3000", "--projects", "2"),
        *("--sub-jobs", "2", "--random-seed", "9"),
    )
    assert f"Seeded 3000 jobs into 2 projects ({tenant.project_id} first)" in output
    asyncio.run(_exact(database_url))
    server = ServerProcess(database_url, tmp_path / "server")
    try:
        client = sdk_client(server.base_url, tenant)
        types = ("CREATE_SERVER", "CREATE_SERVER_IMAGE", "DELETE_SERVER")
        pages = {t: client.list_image_jobs(ListImageJobsRequest(job_type=t)) for t in types}
        assert sum(page.count for page in pages.values()) == 1500  # this project's half
        newest = pages["CREATE_SERVER"].items[0]
        shown = client.show_image_job(ShowImageJobRequest(job_id=newest.id))
        assert shown.id == newest.id
        assert len(shown.sub_jobs) == 2
        deep = client.list_image_jobs(
            ListImageJobsRequest(job_type="CREATE_SERVER", offset=pages["CREATE_SERVER"].count - 1)
        )
        assert len(deep.items) == 1
        subs = client.count_image_sub_jobs(CountImageSubJobsRequest())
        assert subs.count == 3000

        # The engine finishes the jobs still in progress, as it would any job.
        deadline = time.monotonic() + 120
        live = -1
        while live and time.monotonic() < deadline:
            live = sum(
                client.list_image_jobs(ListImageJobsRequest(job_type=t, status=s)).count
                for t in types
                for s in ("WAITING", "RUNNING")
            )
            time.sleep(0.2)
        assert live == 0
        after = {t: client.list_image_jobs(ListImageJobsRequest(job_type=t)).count for t in types}
        assert after == {t: page.count for t, page in pages.items()}
        server.assert_quiet_log()
    finally:
        server.stop()
    asyncio.run(_exact(database_url))
