"""Helpers for engine tests: services on a database, valid request bodies, and the
invariant that counters match the rows, checked in one snapshot of the database."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from imagejobs.bootstrap import build_services
from imagejobs.domain.lifecycle import ClaimedTask, Done, Failed, Pending, Transition, decide
from imagejobs.domain.servers import AccountInfo, ImageRef, NewServer
from imagejobs.services import Services
from imagejobs.settings import load_settings
from imagejobs.storage.database import Database, dialect_of, postgres_dsn, sqlite_path
from imagejobs.storage.engine_store import SqlEngineStore

# Engine settings for fast tests: nothing waits unless a test says so.
FAST = {
    "IMAGEJOBS_SIMULATED_QUEUE_SECONDS": "0",
    "IMAGEJOBS_SIMULATED_COMPLETION": "immediate",
    "IMAGEJOBS_POLL_SECONDS": "0.2",
    "IMAGEJOBS_RETRY_BACKOFF_SECONDS": "0.1",
    "IMAGEJOBS_SHUTDOWN_GRACE_SECONDS": "0.5",
    # Tests create thousands of jobs at once in one project: no quotas unless asked for.
    "IMAGEJOBS_QUOTA_JOBS_IN_FLIGHT": "0",
    "IMAGEJOBS_QUOTA_CREATES_PER_SECOND": "0",
}


def services_for(database: Database, url: str, **environ: str) -> Services:
    settings = load_settings({**FAST, "IMAGEJOBS_DATABASE_URL": url, **environ})
    return build_services(database, settings)


def store_of(services: Services) -> SqlEngineStore:
    store = services.engine.store
    assert isinstance(store, SqlEngineStore)
    return store


def outcome(task: ClaimedTask, result: Done | Pending | Failed, now: int) -> Transition:
    """What the engine records for ``result`` of a step of ``task`` at ``now``."""
    return decide(task, result, now=now, max_attempts=5, backoff_base=1.0)


def server_body(name: str | None = None) -> dict[str, Any]:
    """A valid CreateImageServer body (the API reference's example, public image)."""
    return {
        "name": name or f"srv-{uuid.uuid4().hex[:12]}",
        "root_volume": {"type": "SAS", "size": 80},
        "image_ref": {"id": "da02e5ca-c6ec-4685-8ecb-f116bb5bdd2c", "image_type": "public"},
        "vpc_id": "59785ba5-e5d5-4836-b9de-19f22ac15175",
        "subnet_id": "a5842cb4-5718-4b0a-8b27-3a3e9c74f977",
        "product_id": "workspace.x86.performance.xlarge4",
        "authorize_accounts": [{"account": "administrator", "account_type": "USER"}],
    }


def new_server(name: str | None = None) -> NewServer:
    return NewServer(
        name=name or f"srv-{uuid.uuid4().hex[:12]}",
        image_ref=ImageRef("da02e5ca-c6ec-4685-8ecb-f116bb5bdd2c", "public"),
        authorize_accounts=(AccountInfo("administrator", "USER"),),
        spec={"vpc_id": "v", "subnet_id": "s"},
    )


_COUNTS = (
    "SELECT project_id, 'job', job_type, status, COUNT(*) FROM jobs"
    " GROUP BY project_id, job_type, status",
    "SELECT project_id, 'sub_job', job_type, status, COUNT(*) FROM sub_jobs"
    " GROUP BY project_id, job_type, status",
)
_COUNTERS = (
    "SELECT project_id, scope, job_type, status, SUM(n) FROM job_counters"
    " GROUP BY project_id, scope, job_type, status HAVING SUM(n) <> 0"
)


def _compare(rows: list[Any], counters: list[Any]) -> list[str]:
    actual = {tuple(r[:4]): r[4] for r in rows}
    counted = {tuple(r[:4]): r[4] for r in counters}
    return [
        f"{key}: {counted.get(key, 0)} counted, {actual.get(key, 0)} rows"
        for key in sorted(set(actual) | set(counted))
        if actual.get(key, 0) != counted.get(key, 0)
    ]


def counter_mismatches(url: str) -> list[str]:
    """Where job_counters disagree with the rows, read in one snapshot (empty: none)."""
    if dialect_of(url) == "sqlite":
        connection = sqlite3.connect(sqlite_path(url), isolation_level=None, timeout=30)
        try:
            connection.execute("BEGIN")  # a WAL read snapshot, from the first read on
            rows = [r for sql in _COUNTS for r in connection.execute(sql).fetchall()]
            counters = connection.execute(_COUNTERS).fetchall()
            connection.execute("COMMIT")
        finally:
            connection.close()
        return _compare(rows, counters)
    return asyncio.run(counter_mismatches_async(url))


async def counter_mismatches_async(url: str) -> list[str]:
    if dialect_of(url) == "sqlite":
        return counter_mismatches(url)
    connection = await asyncpg.connect(postgres_dsn(url))
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            rows = [r for sql in _COUNTS for r in await connection.fetch(sql)]
            counters = await connection.fetch(_COUNTERS)
    finally:
        await connection.close()
    return _compare(rows, counters)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one statement, from a connection of our own."""
    if dialect_of(url) == "sqlite":
        connection = sqlite3.connect(sqlite_path(url), timeout=30)
        try:
            return [tuple(r) for r in connection.execute(sql).fetchall()]
        finally:
            connection.close()

    async def read() -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(postgres_dsn(url))
        try:
            return [tuple(r) for r in await connection.fetch(sql)]
        finally:
            await connection.close()

    return asyncio.run(read())


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass (a deadline, not a
    measurement: tests fail only when something never happens)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
