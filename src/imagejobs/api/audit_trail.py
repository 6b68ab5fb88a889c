"""Writing the audit trail beside the answers, many events per write: the events of the
calls answered while one write runs go together in the next (one statement, one round
trip on PostgreSQL, however many calls ran at once)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import msgspec

from imagejobs.domain.errors import ImageJobsError
from imagejobs.domain.times import now_ms
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
# Events of one account, stored per process: at most IMAGEJOBS_AUDIT_ACCOUNT_RATE a
# second, in bursts of up to IMAGEJOBS_AUDIT_ACCOUNT_BURST. Without it an account's cheap
# calls (a refused body, a denied project: ~900 a second on one worker) each stored a
# row: ~1 MB a second, ~80 GB a day, kept for the retention (bench/README.md,
# audit_flood.py). Past the budget the account's events are counted,
# not stored, and a marker event (operation AuditEventsDropped, ``dropped``: how many) is
# stored for them at most every DROPPED_MARK_SECONDS. The access log keeps every request.
DROPPED_OPERATION = "AuditEventsDropped"
DROPPED_MARK_SECONDS = 1.0
_MAX_ACCOUNTS = 10_000  # budgets remembered; past it they start over (full)
# Why an event was not stored: a fixed set, the label of imagejobs_audit_events_dropped
# (never the account: there is no bound on how many there are).
DROP_REASONS = ("account_rate", "unauthenticated_rate", "database")
_encode_event = msgspec.json.Encoder().encode


class _Budget:
    """A token bucket."""

    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at

    def take(self, now: float, rate: float, burst: float) -> bool:
        self.tokens = min(burst, self.tokens + (now - self.at) * rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class AuditTrail:
    def __init__(
        self,
        ops: SqlOpsStore,
        account_rate: float = 100.0,
        account_burst: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ops = ops
        self._account_rate = account_rate
        self._account_burst = float(account_burst)
        self._clock = clock
        self._queued: list[AuditEvent] = []
        self._writer: asyncio.Task[None] | None = None
        self._unauthenticated = _Budget(UNAUTHENTICATED_BURST, clock())
        self._accounts: dict[str, _Budget] = {}
        self._dropped: dict[str, int] = {}  # per account, not yet marked
        self._marked_at = clock()
        # Events not stored since the process started, by reason (DROP_REASONS): plain ints
        # like the edge's refusals, read when /metrics is scraped.
        self.dropped_by_reason = dict.fromkeys(DROP_REASONS, 0)

    def add(self, event: AuditEvent) -> None:
        """Queue ``event``; the caller never waits for it to be stored. Events of callers
        that did not authenticate, and each account's, are kept within a budget
        (UNAUTHENTICATED_PER_SECOND, and the account's rate)."""
        now = self._clock()
        if self._dropped and now - self._marked_at >= DROPPED_MARK_SECONDS:
            self._mark_dropped(now)
        if not self._within_budget(event, now):
            if event.principal == UNAUTHENTICATED:
                self.dropped_by_reason["unauthenticated_rate"] += 1
            elif event.account_id:
                self.dropped_by_reason["account_rate"] += 1
                self._dropped[event.account_id] = self._dropped.get(event.account_id, 0) + 1
            return
        self._queue(event)

    def _queue(self, event: AuditEvent) -> None:
        self._queued.append(event)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    def _within_budget(self, event: AuditEvent, now: float) -> bool:
        if event.principal == UNAUTHENTICATED:
            return self._unauthenticated.take(
                now, UNAUTHENTICATED_PER_SECOND, UNAUTHENTICATED_BURST
            )
        account = event.account_id
        if not account:  # the operator, or no IAM: the deployment's own
            return True
        budget = self._accounts.get(account)
        if budget is None:
            if len(self._accounts) >= _MAX_ACCOUNTS:
                self._accounts.clear()
            budget = self._accounts[account] = _Budget(self._account_burst, now)
        return budget.take(now, self._account_rate, self._account_burst)

    def _mark_dropped(self, now: float) -> None:
        """One marker event per account whose events were dropped since the last."""
        self._marked_at = now
        dropped, self._dropped = self._dropped, {}
        at = now_ms()
        for account, count in dropped.items():
            self._queue(
                AuditEvent(
                    id=0,
                    at=at,
                    request_id="",
                    principal="imagejobs",
                    account_id=account,
                    method="-",
                    path="",
                    operation=DROPPED_OPERATION,
                    project_id="",
                    status=429,
                    error_code="",
                    dropped=count,
                )
            )

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
            self.dropped_by_reason["database"] += len(batch)
            for event in batch:
                logger.warning("audit event not stored: %s", _encode_event(event).decode())
        except Exception:
            if len(batch) > 1:  # one event the database refuses: store the others
                for event in batch:
                    await self._store([event])
                return
            self.dropped_by_reason["database"] += 1
            logger.exception("audit event not stored: %s", _encode_event(batch[0]).decode())

    async def drain(self, timeout: float) -> None:
        """Wait for the queued events to be written (at shutdown), the dropped ones'
        markers too."""
        if self._dropped:
            self._mark_dropped(self._clock())
        if self._writer is not None:
            await asyncio.wait({self._writer}, timeout=timeout)
