"""DeepReadBudget: one account's deep reads take turns, a bounded number wait, the rest
are refused, and an account that is done leaves nothing behind."""

from __future__ import annotations

import asyncio

import pytest

from imagejobs.domain.errors import Throttled
from imagejobs.services.protection import DeepReadBudget

pytestmark = pytest.mark.anyio


async def test_one_runs_the_queue_waits_one_more_is_refused_others_go_on() -> None:
    budget = DeepReadBudget(threshold=1_000, queue=1)
    release = asyncio.Event()
    order: list[str] = []

    async def read(account: str, name: str) -> None:
        async with budget.admit(account):
            order.append(name)
            await release.wait()

    first = asyncio.create_task(read("a", "a1"))
    second = asyncio.create_task(read("a", "a2"))
    await asyncio.sleep(0)
    assert order == ["a1"]
    with pytest.raises(Throttled) as refused:
        await read("a", "a3")
    assert refused.value.retry_after == 1
    other = asyncio.create_task(read("b", "b1"))  # another account is not in a's queue
    await asyncio.sleep(0)
    assert order == ["a1", "b1"]
    release.set()
    await asyncio.gather(first, second, other)
    assert order == ["a1", "b1", "a2"]
    assert (budget.in_flight("a"), budget.in_flight("b")) == (0, 0)
    assert not budget._accounts  # memory stays bounded by the callers in flight


async def test_a_cancelled_caller_gives_its_place_back() -> None:
    budget = DeepReadBudget(threshold=1_000, queue=0)
    holding = asyncio.Event()

    async def hold() -> None:
        async with budget.admit("a"):
            holding.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hold())
    await holding.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with budget.admit("a"):
        assert budget.in_flight("a") == 1


async def test_the_queue_is_shared_out_among_the_workers_the_turn_is_not() -> None:
    """With --workers N each worker keeps IMAGEJOBS_DEEP_PAGE_QUEUE // N waiting places
    (docs/operations.md), so an account holds about QUEUE + N deep reads, not N x QUEUE."""
    from imagejobs.bootstrap import deep_read_budget
    from imagejobs.settings import load_settings

    async def admitted(workers: int) -> int:
        """How many deep reads of one account one worker admits at once."""
        environ = {"IMAGEJOBS_WORKERS": str(workers), "IMAGEJOBS_DEEP_PAGE_QUEUE": "4"}
        budget = deep_read_budget(load_settings(environ))
        release = asyncio.Event()

        async def read() -> None:
            async with budget.admit("a"):
                await release.wait()

        reads = [asyncio.create_task(read()) for _ in range(10)]
        await asyncio.sleep(0)
        held = budget.in_flight("a")
        release.set()
        results = await asyncio.gather(*reads, return_exceptions=True)
        assert sum(isinstance(r, Throttled) for r in results) == 10 - held
        return held

    assert [await admitted(n) for n in (1, 2, 3, 4, 5, 8)] == [5, 3, 2, 2, 1, 1]
