"""Writing the audit trail beside the answers, many events per write: the events of the
calls answered while one write runs go together in the next (one statement, one round
trip on PostgreSQL, however many calls ran at once)."""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec

from imagejobs.domain.errors import ImageJobsError
from imagejobs.storage.ops_store import AuditEvent, SqlOpsStore

logger = logging.getLogger("imagejobs.api")
MAX_BATCH = 500  # events per write: a statement of bounded size
# Events of callers that did not authenticate, stored per process: at most this many a
# second, in bursts of up to UNAUTHENTICATED_BURST. Anyone who reaches the port can send
# such requests (a mutating call without credentials still answers 401), and each stored
# one is a row kept for the retention (90 days by default): unbounded, an outsider grew the
# database by ~1 KB a request.
# The access log still has a line for every request.
UNAUTHENTICATED_PER_SECOND = 10.0
UNAUTHENTICATED_BURST = 100.0
UNAUTHENTICATED = "-"
_encode_event = msgspec.json.Encoder().encode


class AuditTrail:
    def __init__(self, ops: SqlOpsStore) -> None:
        self._ops = ops
        self._queued: list[AuditEvent] = []
        self._writer: asyncio.Task[None] | None = None
        self._unauthenticated_budget = UNAUTHENTICATED_BURST
        self._budget_at = time.monotonic()

    def add(self, event: AuditEvent) -> None:
        """Queue ``event``; the caller never waits for it to be stored. Events of callers
        that did not authenticate are kept within a budget (UNAUTHENTICATED_PER_SECOND)."""
        if event.principal == UNAUTHENTICATED and not self._within_budget():
            return
        self._queued.append(event)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    def _within_budget(self) -> bool:
        now = time.monotonic()
        refill = (now - self._budget_at) * UNAUTHENTICATED_PER_SECOND
        self._budget_at = now
        self._unauthenticated_budget = min(
            UNAUTHENTICATED_BURST, self._unauthenticated_budget + refill
        )
        if self._unauthenticated_budget < 1:
            return False
        self._unauthenticated_budget -= 1
        return True

    async def _write(self) -> None:
        try:
            while self._queued:
                batch = self._queued[:MAX_BATCH]
                del self._queued[:MAX_BATCH]
                await self._store(batch)
        finally:
            self._writer = None

    async def _store(self, batch: list[AuditEvent]) -> None:
        try:
            await self._ops.add_audit_events(batch)
        except ImageJobsError:  # the database is away: the log keeps the events
            for event in batch:
                logger.warning("audit event not stored: %s", _encode_event(event).decode())
        except Exception:
            if len(batch) > 1:  # one event the database refuses: store the others
                for event in batch:
                    await self._store([event])
                return
            logger.exception("audit event not stored: %s", _encode_event(batch[0]).decode())

    async def drain(self, timeout: float) -> None:
        """Wait for the queued events to be written (at shutdown)."""
        if self._writer is not None:
            await asyncio.wait({self._writer}, timeout=timeout)
