"""Writing the audit trail beside the answers, many events per write: the events of the
calls answered while one write runs go together in the next (one statement, one round
trip on PostgreSQL, however many calls ran at once)."""

from __future__ import annotations

import asyncio
import logging

import msgspec

from imagejobs.domain.errors import ImageJobsError
from imagejobs.storage.ops_store import AuditEvent, SqlOpsStore

logger = logging.getLogger("imagejobs.api")
MAX_BATCH = 500  # events per write: a statement of bounded size
_encode_event = msgspec.json.Encoder().encode


class AuditTrail:
    def __init__(self, ops: SqlOpsStore) -> None:
        self._ops = ops
        self._queued: list[AuditEvent] = []
        self._writer: asyncio.Task[None] | None = None

    def add(self, event: AuditEvent) -> None:
        """Queue ``event``; the caller never waits for it to be stored."""
        self._queued.append(event)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())

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
