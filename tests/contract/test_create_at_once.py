"""A create as one statement (PostgreSQL) and in steps (SQLite) answers alike: a name
taken by a concurrent create is refused exactly once per loser, the steering rules'
queue delay applies, runners elsewhere are notified after the commit, and audit events
written together are all stored (issue 12)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace

import asyncpg
import pytest

from imagejobs.api.audit_trail import AuditTrail
from imagejobs.domain.enums import JobType
from imagejobs.domain.ids import IdGenerator
from imagejobs.domain.servers import ServerNameTaken
from imagejobs.domain.steering import ANY, Completion, Rule
from imagejobs.domain.times import now_ms
from imagejobs.services import Services
from imagejobs.storage.database import Database, database_for, postgres_dsn
from imagejobs.storage.engine_wakeups import CHANNEL
from imagejobs.storage.ops_store import AuditEvent, SqlOpsStore
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


class ScriptedIds(IdGenerator):
    """Ids from a list: the first ones collide on purpose."""

    def __init__(self, ids: list[int]) -> None:
        super().__init__(node=1)
        self._script: Iterator[int] = iter(ids)

    def next_id(self) -> int:
        return next(self._script)


def _event(request_id: str) -> AuditEvent:
    return AuditEvent(0, now_ms(), request_id, "a/u", "a", "POST", "/v1/p/x", "Op", "p", 200, "")


async def test_audit_events_stored_together_are_all_stored(database: Database) -> None:
    await SqlOpsStore(database, ScriptedIds([5])).add_audit_event(_event("first"))
    # Id 5 is taken: that event is written again with the next id, the others stay.
    ops = SqlOpsStore(database, ScriptedIds([5, 6, 7, 8]))
    await ops.add_audit_events([_event("a"), _event("b"), _event("c")])
    stored = {e.id: e.request_id for e in await ops.audit_events(10)}
    assert stored == {8: "a", 7: "c", 6: "b", 5: "first"}
    many = [_event(f"r{n}") for n in range(300)]
    await SqlOpsStore(database).add_audit_events(many)
    assert len(await ops.audit_events(1000)) == 304


async def test_an_audited_nul_is_stored_as_a_replacement_character(database: Database) -> None:
    # A hostile request's NUL (refused at the edge, audited all the same): PostgreSQL text
    # holds none, and both databases must keep the same event.
    ops = SqlOpsStore(database)
    hostile = replace(_event("nul"), principal="a\x00u", path="/v1/p\x00/x", project_id="p\x00")
    await ops.add_audit_event(hostile)
    (stored,) = await ops.audit_events(10)
    assert (stored.principal, stored.path, stored.project_id) == (
        "a\ufffdu",
        "/v1/p\ufffd/x",
        "p\ufffd",
    )


@pytest.mark.postgres
async def test_runners_elsewhere_are_notified_before_a_create_answers(
    postgres_url: str,
) -> None:
    database = database_for(postgres_url)
    await database.open()
    listener = await asyncpg.connect(postgres_dsn(postgres_url))
    notified = asyncio.Event()
    await listener.add_listener(CHANNEL, lambda *_: notified.set())
    try:
        services = services_for(database, postgres_url)
        project = new_project()
        await asyncio.gather(*(services.servers.create(project, new_server()) for _ in range(8)))
        # Sent after the commits and before the answers: delivered, not lost with the loop.
        await asyncio.wait_for(notified.wait(), 30)
        notified.clear()
        await services.servers.create(project, new_server())
        await asyncio.wait_for(notified.wait(), 30)
    finally:
        await listener.close()
        await database.close()


@pytest.mark.postgres
async def test_an_event_the_database_refuses_costs_only_itself(postgres_url: str) -> None:
    database = database_for(postgres_url)
    await database.open()
    try:
        ops = SqlOpsStore(database)
        trail = AuditTrail(ops)
        refused = replace(_event("refused"), method="X" * 9)  # longer than its column holds
        for event in (_event("before"), refused, _event("after")):
            trail.add(event)  # queued together: one batch
        await trail.drain(timeout=30)
        assert sorted(e.request_id for e in await ops.audit_events(10)) == ["after", "before"]
        # Counted for /metrics (imagejobs_audit_events_dropped_total{reason="database"}).
        assert trail.dropped_by_reason == {
            "account_rate": 0,
            "unauthenticated_rate": 0,
            "database": 1,
        }
    finally:
        await database.close()
