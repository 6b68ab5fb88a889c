"""The engine's one clock: the database's.

Lease expiry, heartbeats, due times, retry back-off and the simulated driver's durations
are compared with times that other processes wrote, so every process reads them from one
clock: PostgreSQL's ``clock_timestamp()``. A process anchors to it (one query, taken at
the middle of its round trip) and counts on from the anchor with its monotonic clock,
re-anchoring every few seconds in the background: no query per decision, and a machine
whose wall clock is minutes off agrees with the others to within milliseconds. SQLite
lives on one machine: its clock is that machine's, read through the same seam.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from imagejobs.domain.times import now_ms
from imagejobs.storage.database import Database, Statement

logger = logging.getLogger("imagejobs.engine")
RESYNC_SECONDS = 5.0
NOW = Statement("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")


class DatabaseClock:
    """Milliseconds since the epoch on the database's clock: ``clock()``."""

    def __init__(self, database: Database, resync_seconds: float = RESYNC_SECONDS) -> None:
        self._db = database
        self._resync = resync_seconds
        self._anchor: tuple[int, float] | None = None  # (database ms, monotonic seconds)
        self._refresh: asyncio.Task[None] | None = None
        self._synced = False  # sync() was called: keep re-anchoring from then on

    async def sync(self) -> None:
        """Anchor to the database's clock now (a process does this before its first
        decision; later re-anchoring happens by itself)."""
        self._synced = True
        if self._db.dialect == "sqlite":
            return
        before = time.monotonic()
        rows = await self._db.fetch(NOW, {})
        after = time.monotonic()
        self._anchor = (int(rows[0][0]), (before + after) / 2)

    def __call__(self) -> int:
        if self._db.dialect == "sqlite":
            return now_ms()
        anchor = self._anchor
        elapsed = 0.0 if anchor is None else time.monotonic() - anchor[1]
        if self._synced and (anchor is None or elapsed > self._resync):
            self._refresh_soon()
        if anchor is None:  # not anchored (yet, or a tool that never syncs): this machine's
            return now_ms()
        return anchor[0] + round(elapsed * 1000)

    def _refresh_soon(self) -> None:
        if self._refresh is not None and not self._refresh.done():
            return
        with contextlib.suppress(RuntimeError):  # no event loop: keep the old anchor
            self._refresh = asyncio.get_running_loop().create_task(self._quiet_sync())

    async def _quiet_sync(self) -> None:
        try:
            await self.sync()
        except Exception:
            # The old anchor stays good for a long while: monotonic clocks drift by ppm.
            logger.warning("cannot read the database's clock now", exc_info=True)
