"""The engine's queue and the image-server transactions, on SQLite and on PostgreSQL.

Time is passed explicitly (``now``), so lease expiry is tested without waiting.
"""

from __future__ import annotations

import asyncio

import pytest

from imagejobs.domain.enums import ImageServerStatus, JobStatus, JobType, SubJobStatus
from imagejobs.domain.errors import InvalidParameter
from imagejobs.domain.lifecycle import (
    Done,
    Failed,
    Pending,
    Phase,
    Reschedule,
)
from imagejobs.domain.servers import ServerBusy, ServerNameTaken, ServerUpdate
from imagejobs.domain.times import now_ms
from imagejobs.services import Services
from imagejobs.storage.database import Database
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


async def test_a_create_writes_everything_in_one_transaction(
    services: Services, database_url: str
) -> None:
    project = new_project()
    job_id = await services.servers.create(project, new_server("first"))

    job = await services.jobs.show_job(project, job_id)
    assert job.job.status is JobStatus.WAITING
    [sub_job] = job.sub_jobs
    assert sub_job.status is SubJobStatus.WAITING
    server = await services.servers.show(project, sub_job.resource_id)
    assert (server.name, server.status) == ("first", ImageServerStatus.CREATING)
    assert (await services.engine.summary()).due == 1
    assert await counter_mismatches_async(database_url) == []


async def test_names_are_unique_per_project(services: Services) -> None:
    project = new_project()
    await services.servers.create(project, new_server("same"))
    with pytest.raises(ServerNameTaken):
        await services.servers.create(project, new_server("same"))
    await services.servers.create(new_project(), new_server("same"))
    other = await services.servers.create(project, new_server("other"))
    other_id = (await services.jobs.show_job(project, other)).sub_jobs[0].resource_id
    with pytest.raises(ServerNameTaken):
        await services.servers.update(project, other_id, ServerUpdate(name="same"))
    await services.servers.update(project, other_id, ServerUpdate(name="other", description="d"))
    assert (await services.servers.show(project, other_id)).description == "d"


async def test_a_claim_leases_and_starts_the_sub_job_and_its_job(
    services: Services, database_url: str
) -> None:
    store = store_of(services)
    project = new_project()
    job_id = await services.servers.create(project, new_server())
    now = now_ms()

    [task] = await store.claim("runner-a", 10, now, LEASE)

    assert (task.fencing_token, task.attempts, task.phase) == (1, 1, Phase.RUN)
    assert task.started_at == now
    job = await services.jobs.show_job(project, job_id)
    assert job.job.status is JobStatus.RUNNING
    assert job.sub_jobs[0].status is SubJobStatus.RUNNING
    assert await store.claim("runner-b", 10, now + LEASE - 1, LEASE) == []
    assert await counter_mismatches_async(database_url) == []


async def test_an_expired_lease_is_taken_over_and_the_stale_runner_is_fenced(
    services: Services, database_url: str
) -> None:
    store = store_of(services)
    project = new_project()
    job_id = await services.servers.create(project, new_server())
    now = now_ms()
    [stale] = await store.claim("runner-a", 10, now, LEASE)

    [fresh] = await store.claim("runner-b", 10, now + LEASE, LEASE)

    assert fresh.sub_job_id == stale.sub_job_id
    assert (fresh.fencing_token, fresh.attempts) == (2, 2)
    assert fresh.started_at == stale.started_at  # the sub-job started once
    done = Done({"server_id": "wksapp-x", "instance_id": "ecs-x"})
    assert await store.record([outcome(stale, done, now)], now + LEASE) == [False]
    await store.heartbeat(
        "runner-a", [(stale.sub_job_id, stale.fencing_token, "")], now + 10 * LEASE
    )
    assert await store.claim("runner-c", 10, now + 2 * LEASE, LEASE) != []  # not extended
    job = await services.jobs.show_job(project, job_id)
    assert job.job.status is JobStatus.RUNNING  # the stale result changed nothing
    assert await counter_mismatches_async(database_url) == []


async def test_heartbeats_keep_a_lease(services: Services) -> None:
    store = store_of(services)
    await services.servers.create(new_project(), new_server())
    now = now_ms()
    [task] = await store.claim("runner-a", 10, now, LEASE)
    await store.heartbeat(
        "runner-a", [(task.sub_job_id, task.fencing_token, "50%")], now + 5 * LEASE
    )
    assert await store.claim("runner-b", 10, now + 4 * LEASE, LEASE) == []
    [view] = await store.list_tasks(None, 10)
    assert (view.progress, view.lease_owner) == ("50%", "runner-a")


async def test_success_makes_the_server_active_and_ends_the_job(
    services: Services, database_url: str
) -> None:
    store = store_of(services)
    project = new_project()
    job_id = await services.servers.create(project, new_server())
    now = now_ms()
    [task] = await store.claim("runner-a", 10, now, LEASE)
    done = Done({"server_id": "wksapp-1", "instance_id": "ecs-1"})

    assert await store.record([outcome(task, done, now + 5)], now + 5) == [True]
    assert await store.record([outcome(task, done, now + 6)], now + 6) == [False]  # once only

    job = await services.jobs.show_job(project, job_id)
    assert (job.job.status, job.job.end_time) == (JobStatus.SUCCESS, now + 5)
    sub_job = job.sub_jobs[0]
    assert (sub_job.status, sub_job.end_time) == (SubJobStatus.SUCCESS, now + 5)
    server = await services.servers.show(project, sub_job.resource_id)
    assert (server.status, server.server_id, server.instance_id) == (
        ImageServerStatus.ACTIVE,
        "wksapp-1",
        "ecs-1",
    )
    assert (await services.engine.summary()).due == 0
    assert await counter_mismatches_async(database_url) == []


async def test_a_failed_creation_rolls_back_then_fails(
    services: Services, database_url: str
) -> None:
    store = store_of(services)
    project = new_project()
    job_id = await services.servers.create(project, new_server())
    now = now_ms()
    [task] = await store.claim("runner-a", 10, now, LEASE)
    await store.record([outcome(task, Failed("WKS.42", "no quota"), now)], now)

    job = await services.jobs.show_job(project, job_id)
    assert job.job.status is JobStatus.RUNNING
    assert job.sub_jobs[0].status is SubJobStatus.ROLLBACK
    assert await counter_mismatches_async(database_url) == []

    [rollback] = await store.claim("runner-a", 10, now + 1, LEASE)
    assert (rollback.phase, rollback.attempts, rollback.error_code) == (
        Phase.ROLLBACK,
        1,
        "WKS.42",
    )
    await store.record([outcome(rollback, Done(), now + 2)], now + 2)

    job = await services.jobs.show_job(project, job_id)
    assert job.job.status is JobStatus.FAILED
    sub_job = job.sub_jobs[0]
    assert (sub_job.status, sub_job.error_code, sub_job.error_message) == (
        SubJobStatus.FAILED,
        "WKS.42",
        "no quota",
    )
    server = await services.servers.show(project, sub_job.resource_id)
    assert server.status is ImageServerStatus.ERROR
    assert await counter_mismatches_async(database_url) == []


async def test_pending_steps_wait_and_reads_wake_them(services: Services) -> None:
    store = store_of(services)
    project = new_project()
    job_id = await services.servers.create(project, new_server())
    now = now_ms()
    [task] = await store.claim("runner-a", 10, now, LEASE)
    transition = outcome(task, Pending(3600, until_reads=2), now)
    assert isinstance(transition, Reschedule)
    await store.record([transition], now)
    assert await store.claim("runner-a", 10, now + 1, LEASE) == []

    numeric = int(job_id)
    assert await store.count_reads(project, [numeric], now + 2) == {numeric: 1}
    assert await store.claim("runner-a", 10, now + 3, LEASE) == []
    # Not its job: no read.
    assert await store.count_reads("another-project", [numeric], now + 4) == {}
    assert await store.count_reads(project, [numeric], now + 5) == {numeric: 2}
    [again] = await store.claim("runner-a", 10, now + 6, LEASE)
    assert (again.reads, again.attempts) == (2, 1)  # the pending claim did not count


async def test_batch_delete_skips_unknown_ids_and_refuses_busy_servers(
    services: Services, database_url: str
) -> None:
    store = store_of(services)
    project = new_project()
    creating_job = await services.servers.create(project, new_server("creating"))
    creating = (await services.jobs.show_job(project, creating_job)).sub_jobs[0].resource_id

    with pytest.raises(InvalidParameter) as caught:
        await services.servers.batch_delete(project, [creating, "702364883651395584"])
    assert creating in caught.value.message
    assert (await services.servers.show(project, creating)).status is ImageServerStatus.CREATING

    now = now_ms()
    [task] = await store.claim("runner-a", 10, now, LEASE)
    await store.record([outcome(task, Done({"server_id": "a", "instance_id": "b"}), now)], now)
    delete_job = await services.servers.batch_delete(project, [creating, "x", "1" * 18])
    job = await services.jobs.show_job(project, delete_job)
    assert (job.job.job_type, job.job.sub_jobs_total) == (JobType.DELETE_SERVER, 1)
    assert (await services.servers.show(project, creating)).status is ImageServerStatus.DELETING
    # Already being deleted: skipped, like an unknown id; nothing left is done at once.
    nothing = await services.jobs.show_job(
        project, await services.servers.batch_delete(project, [creating])
    )
    assert (nothing.job.status, nothing.job.sub_jobs_total) == (JobStatus.SUCCESS, 0)
    assert nothing.job.end_time is not None

    now = now_ms()
    [deletion] = await store.claim("runner-a", 10, now + 1, LEASE)
    await store.record([outcome(deletion, Done(), now + 2)], now + 2)
    assert (await services.servers.list(project, _all(), _page())).count == 0
    assert (await services.jobs.show_job(project, delete_job)).job.status is JobStatus.SUCCESS
    assert await counter_mismatches_async(database_url) == []


async def test_an_image_is_built_only_from_a_running_server(
    services: Services, database_url: str
) -> None:
    from imagejobs.domain.servers import NewImage

    store = store_of(services)
    project = new_project()
    created = await services.servers.create(project, new_server())
    server_id = (await services.jobs.show_job(project, created)).sub_jobs[0].resource_id
    with pytest.raises(ServerBusy):
        await services.servers.recreate_image(project, server_id, NewImage("image"))
    now = now_ms()
    [task] = await store.claim("runner-a", 10, now, LEASE)
    await store.record([outcome(task, Done({"server_id": "a", "instance_id": "b"}), now)], now)

    image_job = await services.servers.recreate_image(project, server_id, NewImage("image"))

    job = await services.jobs.show_job(project, image_job)
    image_id = job.sub_jobs[0].resource_id
    assert len(image_id) == 36  # a UUID, named before the image exists
    assert job.sub_jobs[0].resource_name == "image"
    assert (await services.servers.show(project, server_id)).status is ImageServerStatus.BUILDING
    now = now_ms()
    [build] = await store.claim("runner-a", 10, now + 1, LEASE)
    await store.record([outcome(build, Done({"image_id": image_id}), now + 2)], now + 2)
    server = await services.servers.show(project, server_id)
    assert (server.status, server.image_id) == (ImageServerStatus.BUILT, image_id)
    assert await counter_mismatches_async(database_url) == []


async def test_a_job_ends_once_all_its_sub_jobs_did(services: Services, database_url: str) -> None:
    store = store_of(services)
    project = new_project()
    ids = []
    for _ in range(3):
        created = await services.servers.create(project, new_server())
        ids.append((await services.jobs.show_job(project, created)).sub_jobs[0].resource_id)
    now = now_ms()
    tasks = await store.claim("runner-a", 10, now, LEASE)
    assert len(tasks) == 3
    done = Done({"server_id": "a", "instance_id": "b"})
    await store.record([outcome(t, done, now) for t in tasks], now)
    delete_job = await services.servers.batch_delete(project, ids)
    now = now_ms()
    first, second, third = await store.claim("runner-a", 10, now + 1, LEASE)

    await store.record([outcome(first, Failed("WKS.1", "in use"), now + 2)], now + 2)
    assert (await services.jobs.show_job(project, delete_job)).job.status is JobStatus.RUNNING
    await store.record([outcome(second, Done(), now + 3), outcome(third, Done(), now + 3)], now + 3)

    job = await services.jobs.show_job(project, delete_job)
    assert job.job.status is JobStatus.FAILED
    assert [s.status for s in job.sub_jobs].count(SubJobStatus.SUCCESS) == 2
    assert await counter_mismatches_async(database_url) == []


async def test_release_gives_a_task_back_without_counting_the_attempt(services: Services) -> None:
    store = store_of(services)
    await services.servers.create(new_project(), new_server())
    now = now_ms()
    [task] = await store.claim("runner-a", 10, now, LEASE)
    await store.release([task], now)
    [again] = await store.claim("runner-b", 10, now, LEASE)
    assert (again.attempts, again.fencing_token) == (1, 2)


@pytest.mark.postgres
async def test_concurrent_claims_never_share_a_task(postgres_url: str) -> None:
    from imagejobs.storage.database import database_for

    database = database_for(postgres_url)
    await database.open()
    try:
        services = services_for(database, postgres_url)
        store = store_of(services)
        project = new_project()
        for _ in range(60):
            await services.servers.create(project, new_server())
        now = now_ms()
        batches = await asyncio.gather(
            *(store.claim(f"runner-{i}", 7, now, LEASE) for i in range(8))
        )
        claimed = [t.sub_job_id for batch in batches for t in batch]
        assert len(claimed) == len(set(claimed)) == 56
        assert await counter_mismatches_async(postgres_url) == []
    finally:
        await database.close()


def _all():  # type: ignore[no-untyped-def]
    from imagejobs.domain.servers import ServerFilter

    return ServerFilter()


def _page():  # type: ignore[no-untyped-def]
    from imagejobs.domain.records import PageRequest

    return PageRequest()


async def test_a_stale_and_a_fresh_result_in_one_batch_count_once(
    services: Services, database_url: str
) -> None:
    store = store_of(services)
    project = new_project()
    job_id = await services.servers.create(project, new_server())
    now = now_ms()
    [stale] = await store.claim("runner-a", 10, now, LEASE)
    [fresh] = await store.claim("runner-a", 10, now + LEASE, LEASE)  # its own, taken over
    done = Done({"server_id": "a", "instance_id": "b"})

    applied = await store.record([outcome(stale, done, now), outcome(fresh, done, now)], now)

    assert applied == [False, True]
    assert (await services.jobs.show_job(project, job_id)).job.status is JobStatus.SUCCESS
    assert await counter_mismatches_async(database_url) == []


async def test_a_batch_across_projects_starts_and_ends_each_once(
    services: Services, database_url: str
) -> None:
    """Claims and results are set statements over the whole batch (PostgreSQL: one
    statement per table): every row of a batch moves once, and its counters with it."""
    store = store_of(services)
    projects = [new_project() for _ in range(3)]
    servers: dict[str, list[str]] = {p: [] for p in projects}
    for project in projects:
        for _ in range(4):
            created = await services.servers.create(project, new_server())
            detail = await services.jobs.show_job(project, created)
            servers[project].append(detail.sub_jobs[0].resource_id)
    now = now_ms()
    tasks = await store.claim("runner-a", 100, now, LEASE)
    assert len(tasks) == 12
    assert {t.started_at for t in tasks} == {now}
    assert await counter_mismatches_async(database_url) == []
    done = Done({"server_id": "wksapp-y", "instance_id": "ecs-y"})
    assert await store.record([outcome(t, done, now) for t in tasks], now + 1) == [True] * 12
    for project in projects:
        for server_id in servers[project]:
            server = await services.servers.show(project, server_id)
            assert (server.status, server.server_id) == (ImageServerStatus.ACTIVE, "wksapp-y")
    assert await counter_mismatches_async(database_url) == []

    # One job, three sub-jobs, claimed in two batches: the job starts once.
    project = projects[0]
    delete_job = await services.servers.batch_delete(project, servers[project][:3])
    now = now_ms()
    first = await store.claim("runner-a", 1, now, LEASE)
    assert (await services.jobs.show_job(project, delete_job)).job.status is JobStatus.RUNNING
    rest = await store.claim("runner-b", 10, now + 1, LEASE)
    assert len(first) + len(rest) == 3
    assert await counter_mismatches_async(database_url) == []
    applied = await store.record([outcome(t, Done(), now + 2) for t in first + rest], now + 2)
    assert applied == [True] * 3
    job = await services.jobs.show_job(project, delete_job)
    assert job.job.status is JobStatus.SUCCESS
    assert [s.status for s in job.sub_jobs] == [SubJobStatus.SUCCESS] * 3
    assert await counter_mismatches_async(database_url) == []
