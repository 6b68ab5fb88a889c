"""The engine's guarantees across machines and failures (issue 13), on SQLite and
PostgreSQL: late heartbeats, errors that survive a release, sticky job failures, bad
driver results, fair claims, id nodes and per-project quotas.

Time is passed explicitly (``now``) to the store, as in test_engine_store.py.
"""

from __future__ import annotations

import asyncio

import pytest

from imagejobs.domain.enums import JobStatus, SubJobStatus
from imagejobs.domain.errors import QuotaExceeded, Throttled
from imagejobs.domain.lifecycle import Done, Failed, Pending
from imagejobs.domain.steering import Behaviour, Completion
from imagejobs.domain.times import now_ms
from imagejobs.drivers.interface import ServerCreated
from imagejobs.services import Services
from imagejobs.storage.database import Database
from imagejobs.storage.node_store import SqlNodeStore
from tests.engine_support import (
    counter_mismatches_async,
    new_server,
    outcome,
    services_for,
    store_of,
)
from tests.factories import new_project

pytestmark = pytest.mark.anyio
LEASE = 2_000


@pytest.fixture
def services(database: Database, database_url: str) -> Services:
    return services_for(database, database_url)


async def test_a_late_heartbeat_does_not_extend_a_rescheduled_task(services: Services) -> None:
    store = store_of(services)
    await services.servers.create(new_project(), new_server())
    now = now_ms()
    [task] = await store.claim("runner-a", 10, now, LEASE)
    await store.record([outcome(task, Pending(0.01), now)], now)
    # The runner's heartbeat snapshot still held the task: it lands after the reschedule.
    await store.heartbeat("runner-a", [(task.sub_job_id, task.fencing_token, "")], now + LEASE)
    [again] = await store.claim("runner-b", 10, now + 10, LEASE)  # due at once, not a lease
    assert again.sub_job_id == task.sub_job_id


async def test_a_release_during_rollback_keeps_the_error(
    services: Services, database_url: str
) -> None:
    store = store_of(services)
    project = new_project()
    job_id = await services.servers.create(project, new_server())
    now = now_ms()
    [task] = await store.claim("runner-a", 10, now, LEASE)
    await store.record([outcome(task, Failed("WKS.42", "no quota"), now)], now)
    [rollback] = await store.claim("runner-a", 10, now + 1, LEASE)

    await store.release([rollback], now + 2)  # the runner shuts down mid-rollback

    [again] = await store.claim("runner-b", 10, now + 3, LEASE)
    await store.record([outcome(again, Done(), now + 4)], now + 4)
    job = await services.jobs.show_job(project, job_id)
    assert job.job.status is JobStatus.FAILED
    sub_job = job.sub_jobs[0]
    assert (sub_job.status, sub_job.error_code, sub_job.error_message) == (
        SubJobStatus.FAILED,
        "WKS.42",
        "no quota",
    )
    assert await counter_mismatches_async(database_url) == []


async def test_a_job_whose_failed_sub_job_was_deleted_still_fails(
    services: Services, database_url: str
) -> None:
    store = store_of(services)
    project = new_project()
    ids = []
    for _ in range(2):
        created = await services.servers.create(project, new_server())
        ids.append((await services.jobs.show_job(project, created)).sub_jobs[0].resource_id)
    now = now_ms()
    tasks = await store.claim("runner-a", 10, now, LEASE)
    done = Done({"server_id": "a", "instance_id": "b"})
    await store.record([outcome(t, done, now) for t in tasks], now)
    delete_job = await services.servers.batch_delete(project, ids)
    first, second = await store.claim("runner-a", 10, now_ms(), LEASE)
    now = now_ms()
    await store.record([outcome(first, Failed("WKS.1", "in use"), now)], now)

    # While its sibling still runs, the failed sub-job is cleaned up by the client.
    assert await services.jobs.delete_sub_jobs(project, [str(first.sub_job_id)]) == 1
    await store.record([outcome(second, Done(), now + 1)], now + 1)

    job = await services.jobs.show_job(project, delete_job)
    assert job.job.status is JobStatus.FAILED
    assert [s.status for s in job.sub_jobs] == [SubJobStatus.SUCCESS]
    assert await counter_mismatches_async(database_url) == []


class _BadIdDriver:
    """Answers an id no column can hold for one sub-job, a good one for the others."""

    def __init__(self, bad_sub_job: int) -> None:
        self.bad_sub_job = bad_sub_job

    async def create_server(self, ctx, request):  # type: ignore[no-untyped-def]
        if ctx.sub_job_id == self.bad_sub_job:
            return ServerCreated(server_id="wksapp-\x00" + "x" * 200, instance_id="ecs")
        return ServerCreated(server_id=f"wksapp-{ctx.sub_job_id}", instance_id="ecs")

    async def delete_server(self, ctx, request):  # type: ignore[no-untyped-def]
        from imagejobs.drivers.interface import Deleted

        return Deleted()


async def test_one_invalid_driver_result_fails_only_its_own_sub_job(
    services: Services, database_url: str
) -> None:
    store = store_of(services)
    project = new_project()
    jobs = [await services.servers.create(project, new_server()) for _ in range(2)]
    tasks = await store.claim("runner-a", 10, now_ms(), LEASE)
    services.engine.driver = _BadIdDriver(tasks[0].sub_job_id)  # type: ignore[assignment]
    immediate = Behaviour(completion=Completion.IMMEDIATE)
    transitions = [await services.engine.run_step(t, immediate) for t in tasks]

    assert await services.engine.record(transitions) == [True, True]  # one batch

    by_sub_job = {}
    for job_id in jobs:
        detail = await services.jobs.show_job(project, job_id)
        by_sub_job[detail.sub_jobs[0].id] = detail.sub_jobs[0]
    bad, good = by_sub_job[tasks[0].sub_job_id], by_sub_job[tasks[1].sub_job_id]
    assert bad.status is SubJobStatus.ROLLBACK  # a failed creation: rolled back, then FAILED
    assert good.status is SubJobStatus.SUCCESS
    server = await services.servers.show(project, good.resource_id)
    assert server.server_id == f"wksapp-{tasks[1].sub_job_id}"
    assert await counter_mismatches_async(database_url) == []


async def test_claims_take_turns_across_projects(services: Services) -> None:
    store = store_of(services)
    busy, quiet = new_project(), new_project()
    for _ in range(6):
        await services.servers.create(busy, new_server())
    await services.servers.create(quiet, new_server())  # the newest of all
    claimed = await store.claim("runner-a", 2, now_ms() + 1, LEASE)
    assert sorted(t.project_id for t in claimed) == sorted([busy, quiet])


async def test_live_processes_never_share_an_id_node(database: Database) -> None:
    nodes = SqlNodeStore(database)
    now = now_ms()
    until = now + 60_000
    owners = [f"process-{i}" for i in range(40)]
    leased = await asyncio.gather(*(nodes.lease(o, now, until, None) for o in owners))
    assert None not in leased
    assert len(set(leased)) == len(owners)
    # A renewal keeps a process's node; a node is reused only after its lease ended.
    assert await nodes.lease("process-0", now + 1, until + 1, leased[0]) == leased[0]
    others = await asyncio.gather(*(nodes.lease(f"new-{i}", now, until, None) for i in range(216)))
    assert len(set(others) | set(leased)) == 256
    assert await nodes.lease("one-too-many", now, until, None) is None
    assert await nodes.lease("after-expiry", until + 2, until + 60_000, None) is not None


async def test_quotas_answer_with_the_documented_errors(
    database: Database, database_url: str
) -> None:
    limited = services_for(
        database,
        database_url,
        IMAGEJOBS_QUOTA_CREATES_PER_SECOND="0.001",  # a burst of one, then 1 in 1000 s
    )
    project = new_project()
    await limited.servers.create(project, new_server())
    with pytest.raises(Throttled) as throttled:
        await limited.servers.create(project, new_server())
    assert (throttled.value.status, throttled.value.code) == (429, "APIGW.0308")
    await limited.servers.create(new_project(), new_server())  # per project

    in_flight_only = services_for(database, database_url, IMAGEJOBS_QUOTA_JOBS_IN_FLIGHT="2")
    await in_flight_only.servers.create(project, new_server())
    with pytest.raises(QuotaExceeded) as in_flight:
        await in_flight_only.servers.create(project, new_server())
    assert (in_flight.value.status, in_flight.value.code) == (403, "WKS.00081105")
    assert "limit 2" in in_flight.value.message

    servers_only = services_for(database, database_url, IMAGEJOBS_QUOTA_SERVERS="2")
    with pytest.raises(QuotaExceeded) as servers:
        await servers_only.servers.create(project, new_server())
    assert "image servers exceeds limit 2" in servers.value.message
