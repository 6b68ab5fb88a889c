"""Protection next to the one choke point: a per-account rate limit applied right after
authentication, a per-account bound on expensive reads (deep pages), and the
authentication failures counted by reason for the metrics.

``GuardedAccess`` wraps any ``AccessControl``: the API sees one object, and the wrapped
one (IAM) stays unaware of limits and metrics.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from imagejobs.domain.errors import AuthenticationFailed, SignatureMismatch, Throttled
from imagejobs.iam.signing import ReceivedRequest
from imagejobs.observability import CURRENT_REQUEST, Metrics
from imagejobs.services.access import AccessControl
from imagejobs.services.authorization import Principal

_BUCKET_LIMIT = 10_000


class RateLimiter:
    """A token bucket per account: ``rate`` requests per second, ``burst`` at once."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # account -> (tokens, at)

    def admit(self, account: str) -> None:
        """Take one token from ``account``'s bucket, or raise Throttled."""
        now = self._clock()
        tokens, at = self._buckets.get(account, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[account] = (tokens, now)
            raise Throttled(
                f"policy user over ratelimit,limit:{self.rate:g},time:1 second",
                max(1, math.ceil((1 - tokens) / self.rate)),
            )
        if len(self._buckets) >= _BUCKET_LIMIT and account not in self._buckets:
            # Only accounts that authenticated get here, but keep memory bounded anyway:
            # forgetting a bucket only ever lets an account through.
            self._buckets.clear()
        self._buckets[account] = (tokens - 1, now)


class DeepReadBudget:
    """Deep pages (an offset of ``threshold`` or more) of one account run one at a time,
    with up to ``queue`` more waiting their turn; one more is refused with 429 APIGW.0308
    and Retry-After. A deep page costs time in proportion to its offset (the database skips
    the rows one by one), so an account paging deep in a big project, however many requests
    it sends at once, takes one deep-read slot (of the few the database has: ``fetch_deep``)
    and never all of them; other accounts' calls, deep or not, go on meanwhile."""

    def __init__(self, threshold: int, queue: int = 4) -> None:
        self.threshold = threshold
        self._queue = queue
        self._accounts: dict[str, tuple[asyncio.Lock, int]] = {}  # account -> (turn, calls)

    @asynccontextmanager
    async def admit(self, account: str) -> AsyncIterator[None]:
        """Wait for ``account``'s turn to read deep, or raise Throttled."""
        turn, calls = self._accounts.get(account) or (asyncio.Lock(), 0)
        if calls > self._queue:
            raise Throttled(
                f"policy deep page over ratelimit,limit:{self._queue + 1},time:in flight", 1
            )
        self._accounts[account] = (turn, calls + 1)
        try:
            async with turn:
                yield
        finally:
            _, calls = self._accounts[account]
            if calls == 1:
                del self._accounts[account]
            else:
                self._accounts[account] = (turn, calls - 1)

    def in_flight(self, account: str) -> int:
        """``account``'s deep reads running or waiting."""
        return self._accounts.get(account, (None, 0))[1]


# A failure's reason by what its message says, first match wins (the messages are the
# gateway's documented texts, spec huaweicloud-auth.md 2.2).
_REASONS = (
    ("not found", "missing"),
    ("not exist", "unknown_key"),
    ("reach the limit", "locked"),
    ("operator", "operator"),
    ("token", "token"),
)


def failure_reason(error: AuthenticationFailed) -> str:
    """A failed authentication's reason, from a fixed set (a metric label)."""
    if isinstance(error, SignatureMismatch):
        return "signature"
    return next((reason for text, reason in _REASONS if text in error.message), "other")


class GuardedAccess:
    """``inner`` plus the rate limit, the failure metrics and the access log's principal."""

    def __init__(
        self, inner: AccessControl, metrics: Metrics | None, limiter: RateLimiter | None
    ) -> None:
        self._inner = inner
        self._metrics = metrics
        self._limiter = limiter

    async def authenticate(self, request: ReceivedRequest, *args: Any, **kwargs: Any) -> Principal:
        # Whatever else the wrapped access control takes (the caller's address) passes on.
        try:
            principal = await self._inner.authenticate(request, *args, **kwargs)
        except AuthenticationFailed as error:
            if self._metrics is not None:
                self._metrics.auth_failed(failure_reason(error))
            raise
        note = CURRENT_REQUEST.get()
        if note is not None:
            note.principal = principal_name(principal)
            note.account_id = principal.account_id
        if self._limiter is not None and not principal.is_operator:
            self._limiter.admit(principal.account_id or principal.name)
        return principal

    async def authorize(self, principal: Principal, action: str, project_id: str) -> None:
        await self._inner.authorize(principal, action, project_id)

    async def authorize_account(self, principal: Principal, action: str) -> None:
        await self._inner.authorize_account(principal, action)


def principal_name(principal: Principal) -> str:
    """``account/user`` as the access log and the audit trail name a caller."""
    return caller_name(principal.account_name, principal.name)


def caller_name(account_name: str | None, user_name: str) -> str:
    """``account/user`` (the user's name alone outside an account): principal_name's form,
    for a caller known by name before it has a Principal (a password login)."""
    if account_name is None:
        return user_name
    return f"{account_name}/{user_name}"
