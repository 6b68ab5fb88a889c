"""The audit trail's retention: deleting events older than the retention, in short batches,
by itself in each serving process and on demand (``imagejobs audit purge``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

from imagejobs.domain.times import now_ms
from imagejobs.storage.ops_store import SqlOpsStore

logger = logging.getLogger("imagejobs.audit")
DAY_MS = 86_400_000
# The first purge of a process comes within this long of its start (spread at random, so
# that workers started together do not all purge at once), then every interval.
FIRST_PURGE_WITHIN_SECONDS = 60.0
# After each batch the purge rests at least as long as the batch took (and this long at the
# least): other writers, in this process or another, take the write lock in between.
MIN_PAUSE_SECONDS = 0.01


class AuditRetention:
    """Deletes audit events older than ``retention_days`` (0: none, ever), ``batch`` rows a
    transaction. Several processes may purge at once: on PostgreSQL they delete disjoint
    batches (SKIP LOCKED), on SQLite one after the other; a row is deleted once either way."""

    def __init__(
        self,
        ops: SqlOpsStore,
        retention_days: int,
        batch: int,
        *,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self._ops = ops
        self._retention_ms = retention_days * DAY_MS
        self._batch = batch
        self._clock_ms = clock_ms
        self.purged = 0  # events this process deleted (a metric)
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._retention_ms > 0

    async def purge(self, max_batches: int | None = None) -> int:
        """Delete every event past retention, batch by batch; the number deleted.
        ``max_batches`` stops after that many batches (the rest waits for the next purge)."""
        if not self.enabled:
            return 0
        cutoff = self._clock_ms() - self._retention_ms
        deleted = batches = 0
        while max_batches is None or batches < max_batches:
            started = time.monotonic()
            n = await self._ops.purge_audit_events(cutoff, self._batch)
            deleted += n
            self.purged += n
            batches += 1
            if n < self._batch:
                break
            await asyncio.sleep(max(MIN_PAUSE_SECONDS, time.monotonic() - started))
        if deleted:
            logger.info("audit trail: deleted %d events older than the retention", deleted)
        return deleted

    def start(self, interval: float) -> None:
        """Purge every ``interval`` seconds in this process's event loop (not at all when
        retention is 0)."""
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run(interval))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, interval: float) -> None:
        first = min(interval, FIRST_PURGE_WITHIN_SECONDS)
        await asyncio.sleep(random.uniform(0, first))  # noqa: S311 - spreading, not secrecy
        while True:
            try:
                await self.purge()
            except Exception:  # a database hiccup: the next round purges
                logger.warning("audit purge failed", exc_info=True)
            await asyncio.sleep(interval)
