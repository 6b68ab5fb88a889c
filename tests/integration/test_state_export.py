"""An operator's export of a project's state (GET /_imagejobs/state) reads one snapshot
in a read transaction: it held SQLite's write lock (and this process's) for the whole
read, so every tenant's creates waited for it. The export is held here inside its
snapshot, between two of its reads, while other tenants and the exported project itself
write; what they see, and what the export holds, are checked by order, not by time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from imagejobs.storage import state_store
from imagejobs.storage.database import PostgresDatabase, SqliteDatabase, Statement
from imagejobs.testing import Cloud, serve
from tests.integration.sdk import create_server_request
from tests.integration.test_deep_pages import WAIT, jobs_state

JOBS = 3000  # a big project: the export is many rows, not one


class HeldExport:
    """Holds the export's read of the jobs (after its servers and sub-jobs were read, the
    snapshot open) until ``release``."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.holding = False

    def _hold(self, statement: Statement) -> bool:
        return statement is state_store.DUMP_JOBS and not self.started.is_set()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        held = self
        read_on = SqliteDatabase._read_on
        fetch_on = PostgresDatabase._fetch_on

        def sqlite_read_on(self: SqliteDatabase, connection: Any, statement: Any, args: Any) -> Any:
            if held._hold(statement):
                held.holding = True
                held.started.set()
                held.release.wait(WAIT)
                held.holding = False
            return read_on(self, connection, statement, args)

        async def postgres_fetch_on(
            self: PostgresDatabase, connection: Any, statement: Any, args: Any
        ) -> Any:
            if held._hold(statement):
                held.holding = True
                held.started.set()
                await asyncio.to_thread(held.release.wait, WAIT)
                held.holding = False
            return await fetch_on(self, connection, statement, args)

        monkeypatch.setattr(SqliteDatabase, "_read_on", sqlite_read_on)
        monkeypatch.setattr(PostgresDatabase, "_fetch_on", postgres_fetch_on)


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> HeldExport:
    held = HeldExport()
    held.install(monkeypatch)
    return held


@pytest.fixture
def cloud(database_url: str, held: HeldExport) -> Iterator[Cloud]:
    with serve(database_url=database_url) as cloud:
        try:
            yield cloud
        finally:
            held.release.set()


def test_tenants_create_while_a_big_export_reads_its_snapshot(
    cloud: Cloud, held: HeldExport
) -> None:
    exported, other = cloud.tenant(), cloud.tenant()
    first_id = 790_000_000_000_000_000
    cloud.load(jobs_state(exported.project_id, first_id, JOBS))

    with ThreadPoolExecutor(1) as pool:
        export = pool.submit(cloud.dump, exported)
        try:
            assert held.started.wait(WAIT), "the export never read its jobs"
            # Another tenant creates a server (a write: before, it waited for the export's
            # write lock), and so does the exported project itself.
            created = cloud.client(other).create_image_server(create_server_request())
            assert created.job_id
            inside = cloud.client(exported).create_image_server(create_server_request())
            assert held.holding, "the creates waited for the export"
            assert not export.done()
        finally:
            held.release.set()
        state = export.result(WAIT)

    # One snapshot: the project as it was when the export began. The create made while
    # it was held (a server, its job and sub-job, written together) is in none of the
    # tables read: read apart, the job would be there without the sub-job read before it.
    assert sorted(job["id"] for job in state["jobs"]) == [str(first_id + n) for n in range(JOBS)]
    assert inside.job_id not in {job["id"] for job in state["jobs"]}
    assert state["servers"] == []
    # The next export sees it, whole.
    again = cloud.dump(exported)
    (new_job,) = [job for job in again["jobs"] if job["id"] == inside.job_id]
    assert len(new_job["sub_jobs"]) == 1
    assert len(again["servers"]) == 1
