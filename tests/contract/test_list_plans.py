"""The lists' query plans, on SQLite and PostgreSQL: a page's ids come from a covering
index alone, so the rows an offset skips are index entries, never table rows (on
PostgreSQL, an index-only scan that visits no heap page once the table is vacuumed), and
the count comes from the counters, never from the rows."""

from __future__ import annotations

from typing import Any

import pytest

from imagejobs.domain.enums import JobStatus, JobType
from imagejobs.storage.database import Database, PostgresDatabase, Statement
from imagejobs.storage.job_store import (
    SqlJobStore,
    list_jobs_statement,
    list_sub_job_texts_statement,
    list_sub_jobs_statement,
)
from tests.factories import make_job, new_project

pytestmark = pytest.mark.anyio

JOBS = 3_000  # per project; enough for PostgreSQL's planner to prefer the indexes
OFFSET = 400  # within every filter's 500 rows or more


async def _plan(database: Database, statement: Statement, params: dict[str, Any]) -> str:
    if database.dialect == "sqlite":
        explain = Statement("EXPLAIN QUERY PLAN " + statement.text)
        rows = await database.fetch(explain, params)
        return "\n".join(str(row[-1]) for row in rows)
    explain = Statement("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + statement.text)
    rows = await database.fetch(explain, params)
    return "\n".join(str(row[0]) for row in rows)


@pytest.fixture
async def projects(store: SqlJobStore, database: Database) -> list[str]:
    """Two projects of JOBS jobs each (one sub-job each), mixed types and statuses."""
    made = [new_project(), new_project()]
    types = (JobType.CREATE_SERVER, JobType.CREATE_SERVER_IMAGE, JobType.DELETE_SERVER)
    statuses = (JobStatus.SUCCESS, JobStatus.FAILED)
    for project in made:
        jobs = [make_job(project, types[n % 3], statuses[n % 2]) for n in range(JOBS)]
        await store.insert_jobs(jobs)
    if isinstance(database, PostgresDatabase):
        async with database.pool.acquire() as connection:
            # What the index-only scan needs (the visibility map) and the planner uses.
            await connection.execute("VACUUM ANALYZE jobs, sub_jobs, job_counters")
    return made


JOB_CASES = [
    pytest.param(False, "ix_jobs_project_type_id", id="by-type"),
    pytest.param(True, "ix_jobs_project_type_status_id", id="by-type-and-status"),
]


@pytest.mark.parametrize(("with_status", "index"), JOB_CASES)
async def test_a_deep_job_page_reads_only_a_covering_index(
    database: Database, projects: list[str], with_status: bool, index: str
) -> None:
    params: dict[str, Any] = {
        "project_id": projects[0],
        "job_type": "CREATE_SERVER",
        "limit": 10,
        "offset": OFFSET,
    }
    if with_status:
        params["status"] = "SUCCESS"
    statement = list_jobs_statement(with_status, database.dialect)
    plan = await _plan(database, statement, params)
    _assert_index_only(database, plan, "jobs", index)


@pytest.mark.parametrize(
    ("with_status", "index"),
    [
        pytest.param(False, "ix_sub_jobs_project_type_id", id="by-type"),
        pytest.param(True, "ix_sub_jobs_project_type_status_id", id="by-type-and-status"),
    ],
)
async def test_a_deep_sub_job_page_reads_only_a_covering_index(
    database: Database, projects: list[str], with_status: bool, index: str
) -> None:
    params: dict[str, Any] = {
        "project_id": projects[1],
        "job_type0": "CREATE_SERVER_IMAGE",
        "limit": 10,
        "offset": OFFSET,
    }
    if with_status:
        params["status"] = "FAILED"
    statement = list_sub_jobs_statement(1, with_status, False, database.dialect)
    plan = await _plan(database, statement, params)
    _assert_index_only(database, plan, "sub_jobs", index)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("with_status", "index"),
    [
        pytest.param(False, "ix_sub_jobs_project_type_id", id="by-type"),
        pytest.param(True, "ix_sub_jobs_project_type_status_id", id="by-type-and-status"),
    ],
)
async def test_a_sub_job_page_as_one_value_reads_only_a_covering_index(
    database: Database, projects: list[str], with_status: bool, index: str
) -> None:
    # SQLite's ListImageSubJobs statement (the page's rows as one text, unsorted).
    params: dict[str, Any] = {
        "project_id": projects[1],
        "job_type0": "CREATE_SERVER_IMAGE",
        "limit": 10,
        "offset": OFFSET,
    }
    if with_status:
        params["status"] = "FAILED"
    plan = await _plan(database, list_sub_job_texts_statement(1, with_status, False), params)
    assert f"SEARCH sub_jobs USING COVERING INDEX {index} " in plan, plan
    assert "SEARCH job_counters USING INDEX sqlite_autoindex_job_counters_1" in plan, plan
    assert "SCAN sub_jobs" not in plan, plan
    assert "SEARCH s USING INTEGER PRIMARY KEY" in plan, plan


def _assert_index_only(database: Database, plan: str, table: str, index: str) -> None:
    if database.dialect == "sqlite":
        assert f"SEARCH {table} USING COVERING INDEX {index} " in plan, plan
        # The count: the counters' key, not the rows.
        assert "SEARCH job_counters USING INDEX sqlite_autoindex_job_counters_1" in plan, plan
        assert f"SCAN {table}" not in plan, plan
        # The only sort is of the page's own rows, after the join (one per plan).
        assert plan.count("USE TEMP B-TREE") == 1, plan
        assert plan.rstrip().endswith("USE TEMP B-TREE FOR ORDER BY"), plan
    else:
        page = f"Index Only Scan Backward using {index} on {table} (actual rows={OFFSET + 10} "
        assert page in plan, plan
        assert "Heap Fetches: 0" in plan, plan
        assert f"Seq Scan on {table}" not in plan, plan
        # The only sort is of the page's own rows, after the join.
        assert plan.count("Sort Key") == 1, plan
        assert plan.startswith("Sort (actual rows=10 "), plan
