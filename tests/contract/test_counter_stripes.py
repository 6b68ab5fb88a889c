"""Counts stay exact while creates run at once, in one project and across projects (on
PostgreSQL concurrent writers add to different stripes of a counter; issue 12)."""

from __future__ import annotations

import asyncio

import pytest

from imagejobs.domain.enums import JobStatus, JobType
from imagejobs.domain.records import PageRequest
from imagejobs.services import Services
from imagejobs.storage.database import Database
from tests.engine_support import counter_mismatches_async, new_server, services_for
from tests.factories import new_project

pytestmark = pytest.mark.anyio
CLIENTS, CREATES = 8, 10  # 80 creates: every one of them fits one page of 100


async def test_every_count_is_exact_while_creates_run_at_once(
    database: Database, database_url: str
) -> None:
    services: Services = services_for(database, database_url)
    crowded, spread = new_project(), [new_project() for _ in range(CLIENTS)]
    answers: list[tuple[int, int]] = []
    creating = True

    async def client(number: int) -> None:
        for _ in range(CREATES):
            await services.servers.create(crowded, new_server())
            await services.servers.create(spread[number], new_server())

    async def reader() -> None:
        # Each answer's count and page come from one snapshot: they must agree.
        while creating:
            page = await services.jobs.list_jobs(
                crowded, JobType.CREATE_SERVER, JobStatus.WAITING, PageRequest(limit=100)
            )
            answers.append((page.count, len(page.items)))
            await asyncio.sleep(0)

    reading = asyncio.ensure_future(reader())
    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    creating = False
    await reading

    assert answers
    assert all(count == items for count, items in answers)
    final = await services.jobs.list_jobs(crowded, JobType.CREATE_SERVER, JobStatus.WAITING)
    assert final.count == CLIENTS * CREATES
    for project in spread:
        page = await services.jobs.list_jobs(project, JobType.CREATE_SERVER)
        assert page.count == CREATES
    assert await services.jobs.count_sub_jobs(crowded, [JobType.CREATE_SERVER]) == 80
    assert await counter_mismatches_async(database_url) == []
