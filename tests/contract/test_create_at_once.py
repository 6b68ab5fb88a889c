"""A create as one statement (PostgreSQL) and in steps (SQLite) answers alike: a name
taken by a concurrent create is refused exactly once per loser, and the steering rules'
queue delay applies (issue 12)."""

from __future__ import annotations

import asyncio

import pytest

from imagejobs.domain.enums import JobType
from imagejobs.domain.servers import ServerNameTaken
from imagejobs.domain.steering import ANY, Completion, Rule
from imagejobs.services import Services
from imagejobs.storage.database import Database
from tests.engine_support import counter_mismatches_async, new_server, services_for
from tests.factories import new_project

pytestmark = pytest.mark.anyio
CLIENTS = 8


@pytest.fixture
def services(database: Database, database_url: str) -> Services:
    return services_for(database, database_url)


async def test_one_of_many_concurrent_creates_of_a_name_wins(
    services: Services, database_url: str
) -> None:
    project = new_project()

    async def create(name: str) -> str | ServerNameTaken:
        try:
            return await services.servers.create(project, new_server(name))
        except ServerNameTaken as exc:
            return exc

    for round_number in range(3):
        name = f"same-{round_number}"
        answers = await asyncio.gather(*(create(name) for _ in range(CLIENTS)))
        won = [a for a in answers if isinstance(a, str)]
        lost = [a for a in answers if isinstance(a, ServerNameTaken)]
        assert (len(won), len(lost)) == (1, CLIENTS - 1)
        assert all(
            str(e) == f"An image server named {name!r} already exists in this project."
            for e in lost
        )
    page = await services.jobs.list_jobs(project, JobType.CREATE_SERVER)
    assert page.count == len(page.items) == 3
    assert (await services.engine.summary()).due == 3
    assert len(await services.engine.tasks(project)) == 3
    assert await counter_mismatches_async(database_url) == []


async def test_a_create_is_due_when_the_most_specific_rule_says(services: Services) -> None:
    ruled, other, unruled_type = new_project(), new_project(), new_project()
    steering = services.steering
    await steering.put_rule(Rule(ANY, ANY, queue_seconds=30))
    await steering.put_rule(Rule(ruled, ANY, queue_seconds=60.25))
    # A more specific rule that sets no delay leaves the delay to the less specific ones.
    await steering.put_rule(
        Rule(ruled, JobType.CREATE_SERVER.value, completion=Completion.DURATION)
    )
    await steering.put_rule(Rule(unruled_type, JobType.DELETE_SERVER.value, queue_seconds=5))

    async def delay_ms(project: str) -> int:
        job_id = await services.servers.create(project, new_server())
        job = await services.jobs.show_job(project, job_id)
        [task] = [t for t in await services.engine.tasks(project) if t.job_id == job.job.id]
        return task.due_at - job.job.begin_time

    assert await delay_ms(ruled) == 60_250
    assert await delay_ms(other) == 30_000
    assert await delay_ms(unruled_type) == 30_000
    await steering.delete_rule(ANY, ANY)
    assert await delay_ms(other) == 0  # the process default (IMAGEJOBS_SIMULATED_QUEUE_SECONDS)
