"""Password hashing off the event loop: a few threads behind a bounded queue.

scrypt costs tens of milliseconds of CPU and 32 MiB per hash. ``hashlib.scrypt`` releases
the GIL while it works (tests/unit/test_password_hashing.py shows the event loop running
beside it), so hashing threads leave the event loop free for every other request; the
bound keeps a flood of logins from queueing without limit: past it, a login is answered
at once with 429. The threads also run at the lowest CPU priority (nice 19, Linux), so
that on a busy or single CPU the event loop comes first and logins are what slows down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from imagejobs.domain.errors import Throttled
from imagejobs.iam.passwords import hash_password, verify_password

T = TypeVar("T")


class PasswordHashing:
    """Runs hashes on ``threads`` threads; at most ``threads + queue`` at once in a process.

    Without ``threads`` (the CLI, tests) hashes run on the event loop's default executor,
    unbounded.
    """

    def __init__(self, threads: int | None = None, queue: int = 0, *, cost: int = 15) -> None:
        self._cost = cost  # log2 of scrypt's N for new hashes (IMAGEJOBS_PASSWORD_HASH_COST)
        self._executor = (
            None
            if threads is None
            else ThreadPoolExecutor(
                threads, thread_name_prefix="imagejobs-password", initializer=_lowest_priority
            )
        )
        self._capacity = None if threads is None else threads + queue
        self._in_flight = 0
        self._lock = threading.Lock()  # the count drops in the hashing thread

    async def verify(self, password: str, stored: str) -> bool:
        return await self._run(verify_password, password, stored)

    async def hash(self, password: str) -> str:
        return await self._run(hash_password, password, self._cost)

    def refuse_when_full(self) -> None:
        """Throttled when no hash could start or wait now: lets a login give way before
        doing any other work."""
        if self._capacity is not None and self._in_flight >= self._capacity:
            raise Throttled(
                f"policy password hashing over ratelimit,limit:{self._capacity},time:in flight",
                retry_after=1,
            )

    async def _run(self, function: Callable[..., T], *args: str | int) -> T:
        with self._lock:
            self.refuse_when_full()
            self._in_flight += 1

        def run() -> T:
            # Released here, not by the awaiting coroutine: a cancelled request (the client
            # went away) must not free a slot while its hash still runs.
            try:
                return function(*args)
            finally:
                with self._lock:
                    self._in_flight -= 1

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _lowest_priority() -> None:
    """Nice 19 for this thread alone (on Linux a thread's id is a valid PRIO_PROCESS who);
    elsewhere, or without the call, hashing keeps the default priority."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
