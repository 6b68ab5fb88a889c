"""A deep read that runs past the statement timeout fails with the documented 503
(ServiceUnavailable, WKS.00050902) on each database: PostgreSQL cancels the statement
itself; SQLite's reader thread has its statement interrupted from the event loop. The
statements here would run for minutes: only the limit ends them."""

from __future__ import annotations

import asyncio

import pytest

from imagejobs.domain.errors import ServiceUnavailable
from imagejobs.storage.database import Statement, database_for

pytestmark = pytest.mark.anyio
LIMIT = 0.2  # IMAGEJOBS_DATABASE_STATEMENT_TIMEOUT_SECONDS for these tests
SLOW = {
    # Ten billion rows counted one by one: minutes of work for SQLite's VM.
    "sqlite": Statement(
        "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
        " WHERE i < 10000000000) SELECT COUNT(*) FROM n"
    ),
    "postgresql": Statement("SELECT pg_sleep(600)"),
}
ONE = Statement("SELECT 1")


async def test_a_deep_read_past_the_statement_timeout_fails_with_503(database_url: str) -> None:
    database = database_for(database_url, statement_timeout=LIMIT)
    await database.open()
    try:
        with pytest.raises(ServiceUnavailable) as failed:
            await database.fetch_deep(SLOW[database.dialect], ())
        assert (failed.value.status, failed.value.code) == (503, "WKS.00050902")
        assert database.unavailable_errors == 1
        # The connection serves the next deep read, and the loop every other call.
        assert [tuple(r) for r in await database.fetch_deep(ONE, ())] == [(1,)]
        assert [tuple(r) for r in await database.fetch(ONE, {})] == [(1,)]
    finally:
        await database.close()


async def test_two_slow_deep_reads_at_once_are_each_ended_and_a_quick_one_is_not(
    database_url: str,
) -> None:
    """Reads waiting for a reader thread are not charged for the wait, and an interrupt
    meant for one read never ends the next one on the same connection."""
    database = database_for(database_url, statement_timeout=1.0)  # far above a quick read
    await database.open()
    try:
        slow = SLOW[database.dialect]
        results = await asyncio.gather(
            *(database.fetch_deep(slow, ()) for _ in range(3)),
            *(database.fetch_deep(ONE, ()) for _ in range(20)),
            return_exceptions=True,
        )
        assert all(isinstance(r, ServiceUnavailable) for r in results[:3])
        assert all([tuple(row) for row in r] == [(1,)] for r in results[3:])  # type: ignore[union-attr]
    finally:
        await database.close()
