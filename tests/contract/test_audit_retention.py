"""The audit trail's retention on each database: events stored before the retention are
deleted, recent ones kept, 0 keeps every event, the purge works in bounded batches that
other writers interleave with, and processes purging at once delete each row once."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from imagejobs.domain.ids import IdGenerator, id_for
from imagejobs.domain.times import now_ms
from imagejobs.services.audit_retention import DAY_MS, AuditRetention
from imagejobs.storage.database import Database, Statement, database_for
from imagejobs.storage.ops_store import PURGE_AUDIT, AuditEvent, SqlOpsStore

pytestmark = pytest.mark.anyio
RETENTION_DAYS = 30


def _event(request_id: str) -> AuditEvent:
    return AuditEvent(
        0, now_ms(), request_id, "acme/root", "acme", "POST", "/v1/p/image-servers",
        "CreateImageServer", "p", 200, "",
    )  # fmt: skip


async def _store(database: Database, days_ago: float, n: int, prefix: str) -> None:
    """``n`` events as if stored ``days_ago`` days ago (their ids carry that time)."""
    then = now_ms() - int(days_ago * DAY_MS)
    ops = SqlOpsStore(database, IdGenerator(clock_ms=lambda: then))
    await ops.add_audit_events([_event(f"{prefix}-{i}") for i in range(n)])


async def _request_ids(database: Database) -> set[str]:
    events = await SqlOpsStore(database).audit_events(100_000)
    return {e.request_id for e in events}


async def test_events_older_than_the_retention_are_deleted_and_recent_ones_kept(
    database: Database,
) -> None:
    await _store(database, 400, 5, "ancient")
    await _store(database, RETENTION_DAYS + 1, 7, "old")
    await _store(database, RETENTION_DAYS - 1, 3, "recent")
    await _store(database, 0, 4, "today")

    retention = AuditRetention(SqlOpsStore(database), RETENTION_DAYS, batch=1000)
    assert await retention.purge() == 12
    assert retention.purged == 12
    remaining = await _request_ids(database)
    assert remaining == {f"recent-{i}" for i in range(3)} | {f"today-{i}" for i in range(4)}
    assert await retention.purge() == 0  # nothing left to do: a no-op


async def test_retention_zero_keeps_every_event(database: Database) -> None:
    await _store(database, 3650, 6, "old")
    await _store(database, 0, 2, "today")
    retention = AuditRetention(SqlOpsStore(database), 0, batch=10)
    assert not retention.enabled
    assert await retention.purge() == 0
    assert len(await _request_ids(database)) == 8


async def test_a_purge_deletes_in_batches_of_the_configured_size(database: Database) -> None:
    await _store(database, 100, 25, "old")
    await _store(database, 0, 1, "today")
    batches: list[int] = []

    class CountingOps(SqlOpsStore):
        async def purge_audit_events(self, stored_before: int, batch: int) -> int:
            deleted = await super().purge_audit_events(stored_before, batch)
            batches.append(deleted)
            return deleted

    retention = AuditRetention(CountingOps(database), RETENTION_DAYS, batch=10)
    assert await retention.purge(max_batches=2) == 20  # a bounded amount of work
    assert len(await _request_ids(database)) == 6
    assert await retention.purge() == 5
    assert batches == [10, 10, 5]
    assert await _request_ids(database) == {"today-0"}


async def test_other_writers_commit_between_the_batches_of_a_purge(database: Database) -> None:
    """A long purge never holds the write lock: the service's own writes (here, audit
    events of new calls) commit between its batches, on the same database handle."""
    await _store(database, 100, 600, "old")
    log: list[str] = []

    class RecordingOps(SqlOpsStore):
        async def purge_audit_events(self, stored_before: int, batch: int) -> int:
            deleted = await super().purge_audit_events(stored_before, batch)
            log.append("batch")
            return deleted

    purge = asyncio.create_task(
        AuditRetention(RecordingOps(database), RETENTION_DAYS, batch=50).purge()
    )
    writer = SqlOpsStore(database)
    written = 0
    while not purge.done():
        await writer.add_audit_event(_event(f"new-{written}"))
        log.append("write")
        written += 1
        await asyncio.sleep(0)
    assert await purge == 600
    batch_positions = [i for i, entry in enumerate(log) if entry == "batch"]
    assert len(batch_positions) == 13  # 12 full batches and the empty one that ends it
    between = log[batch_positions[0] : batch_positions[-1]]
    assert between.count("write") >= 1
    if database.dialect == "sqlite":  # one writer: each pause lets the writer in
        gaps = itertools.pairwise(batch_positions)
        assert all("write" in log[a:b] for a, b in gaps), log
    assert await _request_ids(database) == {f"new-{i}" for i in range(written)}


async def test_processes_purging_at_once_delete_each_event_once(database_url: str) -> None:
    """Separate connections (as separate processes have) purge together: the totals add up
    to the events past retention, with no error and nothing deleted twice."""
    databases = [database_for(database_url) for _ in range(3)]
    for database in databases:
        await database.open()
    try:
        await _store(databases[0], 200, 900, "old")
        await _store(databases[0], 0, 5, "today")
        retentions = [
            AuditRetention(SqlOpsStore(database), RETENTION_DAYS, batch=40)
            for database in databases
        ]
        deleted = await asyncio.gather(*(r.purge() for r in retentions))
        assert sum(deleted) == 900
        assert await _request_ids(databases[0]) == {f"today-{i}" for i in range(5)}
    finally:
        for database in databases:
            await database.close()


async def test_the_purge_reads_a_range_of_the_primary_key(database: Database) -> None:
    """No index on ``at`` is needed: the batch is found by a range scan of the primary key
    (ids are time-ordered), so its cost does not grow with the table."""
    await _store(database, 100, 5000, "old")
    await _store(database, 0, 5000, "today")
    if database.dialect == "postgresql":
        async with database.transaction() as tx:
            await tx.execute(Statement("ANALYZE audit_events"), {})
    below = id_for(now_ms() - RETENTION_DAYS * DAY_MS, 0, 0)
    text = PURGE_AUDIT[database.dialect].text.replace(":below", str(below))
    explain = "EXPLAIN QUERY PLAN " if database.dialect == "sqlite" else "EXPLAIN "
    rows = await database.fetch(Statement(explain + text.replace(":batch", "1000")), {})
    plan = "\n".join(str(row[-1]) for row in rows)
    if database.dialect == "sqlite":
        assert "SEARCH audit_events USING INTEGER PRIMARY KEY (rowid<?)" in plan, plan
    else:
        assert "Index Cond: (id < " in plan, plan
        assert "Index Cond: (id = ANY " in plan, plan
        assert "Seq Scan" not in plan, plan
