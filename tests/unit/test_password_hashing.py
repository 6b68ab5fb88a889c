"""Password hashing runs beside the event loop, not on it, and its queue is bounded."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from imagejobs.domain.errors import Throttled
from imagejobs.iam.passwords import hash_password
from imagejobs.services.password_hashing import PasswordHashing

pytestmark = pytest.mark.anyio
STORED = hash_password("Correct-horse-1")


async def test_the_event_loop_keeps_running_while_a_password_is_hashed() -> None:
    # hashlib.scrypt releases the GIL: a coroutine gets turns during each hash. (Run on
    # the event loop, or in a thread holding the GIL, it would get none before the end.)
    hashing = PasswordHashing(threads=1, queue=0)
    turns = 0
    task = asyncio.ensure_future(hashing.verify("Wrong-horse-1", STORED))
    await asyncio.sleep(0)  # the hash starts
    while not task.done():
        turns += 1
        await asyncio.sleep(0)
    assert await task is False
    assert turns > 20
    hashing.close()


async def test_beyond_the_queue_a_hash_is_refused_at_once() -> None:
    hashing = PasswordHashing(threads=1, queue=1)
    first = asyncio.ensure_future(hashing.verify("Correct-horse-1", STORED))
    second = asyncio.ensure_future(hashing.verify("Wrong-horse-1", STORED))
    await asyncio.sleep(0)
    with pytest.raises(Throttled) as refused:
        await hashing.verify("Another-horse-1", STORED)
    assert (refused.value.status, refused.value.code, refused.value.retry_after) == (
        429,
        "APIGW.0308",
        1,
    )
    assert await first is True
    assert await second is False
    assert await hashing.verify("Correct-horse-1", STORED) is True  # room again
    hashing.close()


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="thread priorities: Linux")
async def test_hashing_threads_run_at_the_lowest_priority() -> None:
    hashing = PasswordHashing(threads=1, queue=0)

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(hashing._executor, niceness) == 19
    assert niceness() != 19
    hashing.close()
