"""SharedCounts: /metrics reads the engine's counts (whole tables) at most once per
max_age, and scrapes that arrive during a read share it."""

from __future__ import annotations

import asyncio

import pytest

from imagejobs.api.probes import SharedCounts
from imagejobs.domain.errors import ServiceUnavailable
from imagejobs.observability import EngineCounts

pytestmark = pytest.mark.anyio


def _counts(due: int) -> EngineCounts:
    return EngineCounts(
        jobs={},
        sub_jobs={},
        queue_due=due,
        oldest_due_age_seconds=0.0,
        leased=0,
        expired_leases=0,
    )


async def test_scrapes_during_a_read_share_it_and_a_fresh_answer_is_reused() -> None:
    now = [0.0]
    reads: list[asyncio.Event] = []

    async def read() -> EngineCounts:
        done = asyncio.Event()
        reads.append(done)
        await done.wait()
        return _counts(len(reads))

    shared = SharedCounts(read, max_age=5.0, clock=lambda: now[0])
    scrapes = [asyncio.create_task(shared.get()) for _ in range(10)]
    while not reads:
        await asyncio.sleep(0)
    for _ in range(10):  # every scrape is waiting now, none started a read of its own
        await asyncio.sleep(0)
    assert len(reads) == 1
    reads[0].set()
    assert {(await s).queue_due for s in scrapes} == {1}
    now[0] = 4.9
    assert (await shared.get()).queue_due == 1  # fresh enough: no read
    assert len(reads) == 1
    now[0] = 5.0
    again = asyncio.create_task(shared.get())
    while len(reads) < 2:
        await asyncio.sleep(0)
    reads[1].set()
    assert (await again).queue_due == 2


async def test_a_failed_read_fails_its_scrapes_and_the_next_scrape_reads_again() -> None:
    failing = [True]

    async def read() -> EngineCounts:
        if failing[0]:
            raise ServiceUnavailable()
        return _counts(7)

    shared = SharedCounts(read, max_age=5.0)
    with pytest.raises(ServiceUnavailable):
        await shared.get()
    failing[0] = False
    assert (await shared.get()).queue_due == 7


async def test_scrapes_during_a_render_share_it_and_a_later_scrape_renders_again() -> None:
    """/metrics needs no credentials: 256 connections scraping back to back rendered 256
    times at once, holding the GIL from every tenant. Scrapes share a render in progress."""
    import threading

    from imagejobs.api.probes import SharedRender

    release = threading.Event()
    renders: list[int] = []

    def render() -> bytes:
        renders.append(1)
        release.wait(10)
        return b"metrics %d" % len(renders)

    shared = SharedRender(render)
    scrapes = [asyncio.create_task(shared.get()) for _ in range(10)]
    while not renders:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)  # every scrape is waiting now
    release.set()
    assert {await s for s in scrapes} == {b"metrics 1"}
    assert len(renders) == 1
    assert await shared.get() == b"metrics 2"  # a scrape after it: rendered afresh
