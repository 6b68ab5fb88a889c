"""Reset by storage key, on each database: a reset moves the project to a fresh key and
leaves every other project exact; the sweeper deletes the old generation's rows (and only
those); a step of the old generation never writes into the new one; a fixture loaded again
after a reset gets its ids back; and another process sees the new key as it sees any
identity change, while a request that resolved the old key keeps one whole generation."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from imagejobs.api.operator_schemas import RuleBody, rule_record
from imagejobs.domain.enums import JobType
from imagejobs.domain.errors import Conflict
from imagejobs.domain.lifecycle import Done, Failed, Pending
from imagejobs.domain.times import now_ms
from imagejobs.services import Services
from imagejobs.services.demo_world import demo_state
from imagejobs.services.project_keys import ProjectKeys
from imagejobs.services.seeding import seed
from imagejobs.services.testkit import ProjectState, TestKitService
from imagejobs.storage.database import Database, Statement, database_for
from imagejobs.storage.engine_store import REMEMBER_FAILURE
from imagejobs.storage.ops_store import SqlOpsStore
from imagejobs.storage.project_keys import SWEPT_TABLES, move_to_new_key
from imagejobs.storage.seed import SeedPlan
from imagejobs.storage.state_store import SqlStateStore
from tests.engine_support import counter_mismatches_async, outcome, services_for, store_of

pytestmark = pytest.mark.anyio
LEASE = 30_000
TABLES = (*SWEPT_TABLES, "engine_rules")
UNFINISHED_JOBS = Statement(
    "SELECT id FROM jobs WHERE project_id = :key AND status IN ('WAITING', 'RUNNING')"
)
FAILURES = Statement("SELECT job_id FROM engine_job_failures")


def _testkit(services: Services, database: Database) -> TestKitService:
    state = SqlStateStore(database, store_of(services))
    return TestKitService(state, services.steering, None, services.keys)


async def _rows_by_key(database: Database) -> dict[str, int]:
    """Rows of every project table, by the key they are stored under."""
    counts: dict[str, int] = {}
    for table in TABLES:
        sql = f"SELECT project_id, COUNT(*) FROM {table} GROUP BY project_id"
        for key, n in await database.fetch(Statement(sql), {}):
            counts[key] = counts.get(key, 0) + n
    return counts


async def _counts(services: Services, project_id: str) -> dict[str, int]:
    """What the API would count for the project: its jobs and sub-jobs per type."""
    key = await services.keys.storage_key(project_id)
    counts = {}
    for job_type in JobType:
        page = await services.jobs.list_job_rows(key, job_type.value, None, 0, 1)
        sub_jobs = await services.jobs.count_sub_jobs(key, [job_type], None, None)
        counts[job_type.value] = page.count
        counts[f"{job_type.value} sub-jobs"] = sub_jobs
    return counts


def _shape(state: ProjectState) -> tuple[Any, ...]:
    return (
        state.project_id,
        sorted(s.id for s in state.servers),
        sorted((d.job.id, d.job.status, len(d.sub_jobs)) for d in state.jobs),
    )


async def test_reset_beside_another_project_leaves_it_exact_and_the_sweep_removes_only_old_rows(
    database: Database, database_url: str
) -> None:
    services = services_for(database, database_url)
    testkit = _testkit(services, database)
    now = now_ms()
    await testkit.load(demo_state("project-a", 300, now, seed=1))
    await testkit.load(demo_state("project-b", 120, now, seed=2))
    for project_id in ("project-a", "project-b"):
        await services.steering.put_rule(
            rule_record(project_id, "*", RuleBody(completion="immediate"))
        )
    neighbour = (_shape(await testkit.dump("project-b")), await _counts(services, "project-b"))
    assert (await _counts(services, "project-a"))["CREATE_SERVER"] > 0

    await testkit.reset("project-a")

    key = await services.keys.storage_key("project-a")
    assert key != "project-a"
    assert _shape(await testkit.dump("project-a")) == ("project-a", [], [])
    assert set((await _counts(services, "project-a")).values()) == {0}
    assert (_shape(await testkit.dump("project-b")), await _counts(services, "project-b")) == (
        neighbour
    )
    # O(1): the old generation's rows are all still there, under the old key.
    assert (await _rows_by_key(database)).get("project-a", 0) > 300

    swept = await services.keys.sweeper.sweep(grace_ms=0)
    assert swept > 300
    rows = await _rows_by_key(database)
    assert set(rows) == {"project-b"}  # the new generation of project-a is empty too
    assert [r.project_id for r in await services.steering.rules()] == ["project-b"]
    assert rows["project-b"] > 120
    assert await database.fetch(Statement("SELECT * FROM retired_project_keys"), {}) == []
    assert (_shape(await testkit.dump("project-b")), await _counts(services, "project-b")) == (
        neighbour
    )
    assert await counter_mismatches_async(database_url) == []
    assert await services.keys.sweeper.sweep(grace_ms=0) == 0


async def test_a_step_of_the_old_generation_never_writes_into_the_new_one(
    database: Database, database_url: str
) -> None:
    services = services_for(database, database_url)
    testkit, store = _testkit(services, database), store_of(services)
    now = now_ms()
    await testkit.load(demo_state("project-a", 40, now, seed=3))
    now = now_ms() + 1000  # the tasks are due when loaded
    claimed = await store.claim("runner-a", 100, now, LEASE)
    assert claimed
    early, late = claimed[: len(claimed) // 2], claimed[len(claimed) // 2 :]

    await testkit.reset("project-a")
    # Steps that end after the reset but before the sweep: dropped (their key is retired).
    assert not any(await store.record([outcome(t, Done(), now + 1) for t in early], now + 1))
    assert set((await _counts(services, "project-a")).values()) == {0}
    await services.keys.sweeper.sweep(grace_ms=0)
    # Steps that end after the sweep: their tasks are gone, nothing is written.
    assert not any(await store.record([outcome(t, Done(), now + 2) for t in late], now + 2))
    assert await _rows_by_key(database) == {}
    assert await store.claim("runner-b", 100, now + LEASE * 2, LEASE) == []
    assert await counter_mismatches_async(database_url) == []


async def test_a_fixture_loaded_again_after_a_reset_gets_its_ids_back_but_not_another_projects(
    database: Database, database_url: str
) -> None:
    services = services_for(database, database_url)
    testkit = _testkit(services, database)
    state = demo_state("project-a", 50, now_ms(), seed=4)
    await testkit.load(state)
    await testkit.reset("project-a")
    await testkit.load(state)  # the same ids, the old generation not swept yet
    assert _shape(await testkit.dump("project-a")) == _shape(state)
    with pytest.raises(Conflict):  # a live project keeps its ids
        await testkit.load(ProjectState("project-b", (), state.jobs, state.payloads))
    assert _shape(await testkit.dump("project-a")) == _shape(state)
    await services.keys.sweeper.sweep(grace_ms=0)
    assert _shape(await testkit.dump("project-a")) == _shape(state)
    assert await counter_mismatches_async(database_url) == []


async def test_another_process_sees_the_new_key_at_its_next_identity_check(
    database: Database, database_url: str
) -> None:
    services = services_for(database, database_url)
    testkit = _testkit(services, database)
    uncached = ProjectKeys(database, cache_seconds=0)
    cached = ProjectKeys(database, cache_seconds=3600)
    assert await uncached.storage_key("project-a") == "project-a"
    assert await cached.storage_key("project-a") == "project-a"

    await testkit.reset("project-a")

    new = await services.keys.storage_key("project-a")  # the process that reset: at once
    assert new != "project-a"
    assert await uncached.storage_key("project-a") == new
    # Within its cache's seconds a process keeps the old key: one whole generation.
    assert await cached.storage_key("project-a") == "project-a"
    cached.forget()
    assert await cached.storage_key("project-a") == new
    await testkit.reset("project-a")
    assert await uncached.storage_key("project-a") not in (new, "project-a")


async def test_reset_refuses_the_every_project_scope(database: Database, database_url: str) -> None:
    services = services_for(database, database_url)
    with pytest.raises(Exception, match="must name one project"):
        await _testkit(services, database).reset("*")


async def test_resetting_everything_after_a_project_reset_leaves_no_row_and_keys_that_work(
    database: Database, database_url: str
) -> None:
    services = services_for(database, database_url)
    testkit = _testkit(services, database)
    now = now_ms()
    state = demo_state("project-a", 30, now, seed=5)
    await testkit.load(state)
    await testkit.load(demo_state("project-b", 20, now, seed=6))
    await testkit.reset("project-a")
    await testkit.load(demo_state("project-a", 10, now, seed=7))

    await testkit.reset(None)

    assert await _rows_by_key(database) == {}
    assert await database.fetch(Statement("SELECT * FROM retired_project_keys"), {}) == []
    await testkit.load(state)  # into the project's current key, its old ids free again
    assert _shape(await testkit.dump("project-a")) == _shape(state)
    assert (await _counts(services, "project-a"))["CREATE_SERVER"] > 0
    assert await counter_mismatches_async(database_url) == []


async def test_seeding_a_project_reset_earlier_writes_under_its_current_key_and_survives_the_sweep(
    database: Database, database_url: str
) -> None:
    services = services_for(database, database_url)
    testkit = _testkit(services, database)
    await testkit.load(demo_state("project-a", 20, now_ms(), seed=8))
    await testkit.reset("project-a")
    plan = SeedPlan("project-a", 600, sub_jobs_per_job=2, random_seed=9, projects=2)

    await seed(database, plan)
    await services.keys.sweeper.sweep(grace_ms=0)

    key = await services.keys.storage_key("project-a")
    rows = await _rows_by_key(database)
    assert set(rows) == {key, plan.project_ids()[1]}
    counts = await _counts(services, "project-a")
    assert sum(counts[t.value] for t in JobType) == 300
    assert sum(counts[f"{t.value} sub-jobs"] for t in JobType) == 600
    # The unfinished sub-jobs' tasks carry the key too: the engine works on them.
    tasks = await store_of(services).claim("runner-a", 1000, now_ms() + 1000, LEASE)
    assert tasks
    assert {t.project_id for t in tasks} <= {key, plan.project_ids()[1]}
    assert await counter_mismatches_async(database_url) == []


async def _remember_failures(database: Database, services: Services, project_id: str) -> set[int]:
    """As the engine does when a sub-job of a running job fails: that job will fail.
    The ids of the project's running jobs, each remembered so."""
    key = await services.keys.storage_key(project_id)
    rows = await database.fetch(UNFINISHED_JOBS, {"key": key})
    ids = {int(row[0]) for row in rows}
    assert ids
    async with database.transaction() as tx:
        await tx.execute_many(REMEMBER_FAILURE, [{"id": i} for i in sorted(ids)])
    return ids


async def _failures(database: Database) -> set[int]:
    return {int(row[0]) for row in await database.fetch(FAILURES, {})}


async def test_the_sweep_removes_the_failures_remembered_for_a_reset_projects_jobs(
    database: Database, database_url: str
) -> None:
    services = services_for(database, database_url)
    testkit = _testkit(services, database)
    now = now_ms()
    await testkit.load(demo_state("project-a", 300, now, seed=10))
    await testkit.load(demo_state("project-b", 300, now, seed=11))
    await _remember_failures(database, services, "project-a")
    kept = await _remember_failures(database, services, "project-b")

    await testkit.reset("project-a")
    await services.keys.sweeper.sweep(grace_ms=0)

    assert await _failures(database) == kept
    assert set(await _rows_by_key(database)) == {"project-b"}


async def test_a_job_imported_again_does_not_inherit_a_failure_remembered_for_its_id(
    database: Database, database_url: str
) -> None:
    services = services_for(database, database_url)
    testkit = _testkit(services, database)
    state = demo_state("project-a", 100, now_ms(), seed=12)
    await testkit.load(state)
    await _remember_failures(database, services, "project-a")
    await testkit.load(state)  # replaced in place
    assert await _failures(database) == set()

    await _remember_failures(database, services, "project-a")
    await testkit.reset("project-a")
    await testkit.load(state)  # the old generation not swept yet gives its ids up
    assert await _failures(database) == set()

    await _remember_failures(database, services, "project-a")
    await testkit.reset(None)
    assert await _failures(database) == set()


class _RecordingDriver:
    """The simulated driver, noting the project of every step's context."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.projects: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def step(ctx: Any, *args: Any) -> Any:
            self.projects.append(ctx.project_id)
            return await method(ctx, *args)

        return step


async def test_a_driver_is_told_a_reset_projects_id_not_its_storage_key(
    database: Database, database_url: str
) -> None:
    services = services_for(database, database_url)
    testkit = _testkit(services, database)
    await testkit.reset("project-a")
    await testkit.reset("project-a")  # a key made by a reset, retired by the next
    await testkit.load(demo_state("project-a", 200, now_ms(), seed=13))
    assert (await services.keys.storage_key("project-a")).startswith("~")
    driver = _RecordingDriver(services.engine.driver)
    services.engine.driver = driver

    claimed = await services.engine.claim("runner-a", 100, LEASE)
    behaviours = await services.engine.behaviours(claimed)
    for task in claimed:
        await services.engine.run_step(task, behaviours[(task.project_id, task.job_type)])

    assert claimed
    assert driver.projects == ["project-a"] * len(claimed)


class _HeldDriver:
    """The simulated driver, whose steps wait for ``release`` once they have begun."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.begun = asyncio.Event()
        self.release = asyncio.Event()
        self.steps = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def step(ctx: Any, *args: Any) -> Any:
            self.steps += 1
            self.begun.set()
            await self.release.wait()
            return await method(ctx, *args)

        return step


async def _generation(database: Database, key: str) -> list[Any]:
    """Every row stored under ``key``, in a comparable form."""
    rows: list[Any] = []
    for table in (*TABLES, "engine_job_failures"):
        if table == "engine_job_failures":
            sql = (
                "SELECT f.job_id FROM engine_job_failures AS f JOIN jobs AS j"
                " ON j.id = f.job_id WHERE j.project_id = :key ORDER BY 1"
            )
        else:
            sql = f"SELECT * FROM {table} WHERE project_id = :key ORDER BY 1, 2, 3"
        rows.append((table, [tuple(r) for r in await database.fetch(Statement(sql), {"key": key})]))
    return rows


async def test_a_step_running_through_two_resets_writes_nothing_under_its_retired_key(
    database: Database, database_url: str
) -> None:
    services = services_for(database, database_url)
    testkit, store = _testkit(services, database), store_of(services)
    await testkit.reset("project-a")  # its rows now go under a key a reset made
    await testkit.load(demo_state("project-a", 60, now_ms(), seed=21))
    key = await services.keys.storage_key("project-a")
    assert key.startswith("~")
    driver = _HeldDriver(services.engine.driver)
    services.engine.driver = driver
    claimed = await services.engine.claim("runner-a", 100, LEASE)
    assert claimed
    behaviours = await services.engine.behaviours(claimed)
    first, rest = claimed[0], claimed[1:]
    running = asyncio.create_task(
        services.engine.run_step(first, behaviours[(first.project_id, first.job_type)])
    )
    await driver.begun.wait()  # the step runs under the key, now

    await testkit.reset("project-a")  # the key is retired
    await testkit.reset("project-a")  # and so is the next one
    # As the resets left it (on PostgreSQL the first gave its leased tasks new tokens).
    before = await _generation(database, key)
    assert await services.keys.storage_key("project-a") not in (key, "project-a")
    driver.release.set()
    transition = await running
    now = services.engine.now()
    # Its result, every other step's (done, failed, rescheduled), the heartbeats and a
    # release all hold no more: nothing is written under the retired key.
    assert await services.engine.record([transition]) == [False]
    others = [
        outcome(t, result, now)
        for t, result in zip(
            rest, itertools.cycle([Done(), Failed("WKS.1", "no", False), Pending(60)])
        )
    ]
    assert not any(await services.engine.record(others))
    await services.engine.heartbeat(
        "runner-a", [(t.sub_job_id, t.fencing_token, "") for t in rest], LEASE * 10
    )
    await services.engine.release(rest)
    assert await _generation(database, key) == before
    # Nor does any runner claim its tasks again once their leases expire, nor is a driver
    # told of a step claimed just before the reset (its key maps to no project).
    assert await store.claim("runner-b", 100, now + LEASE * 2, LEASE) == []
    steps = driver.steps
    later = await services.engine.run_step(
        rest[0], behaviours[(rest[0].project_id, rest[0].job_type)]
    )
    assert driver.steps == steps
    assert await services.engine.record([later]) == [False]
    assert await _generation(database, key) == before

    assert set((await _counts(services, "project-a")).values()) == {0}
    await services.keys.sweeper.sweep(grace_ms=0)
    assert await _rows_by_key(database) == {}
    assert await counter_mismatches_async(database_url) == []


async def test_engine_counts_leave_out_a_reset_projects_old_generation(
    database: Database, database_url: str
) -> None:
    """`imagejobs engine status`, GET /_imagejobs/engine and /metrics: a reset project's
    old rows are not counted while they wait for the sweeper."""
    services = services_for(database, database_url)
    testkit, store, ops = _testkit(services, database), store_of(services), SqlOpsStore(database)
    now, at = now_ms(), now_ms() + 1000
    await testkit.load(demo_state("project-b", 30, now, seed=6))
    await testkit.load(demo_state("project-a", 40, now, seed=5))
    await store.claim("runner-a", 4, at, LEASE)  # leased tasks of both are counted too
    both = (await store.summary(at), await ops.engine_counts(at))

    await testkit.reset("project-a")
    assert await _rows_by_key(database)  # not swept yet
    counted = (await store.summary(at), await ops.engine_counts(at))
    assert counted != both
    await services.keys.sweeper.sweep(grace_ms=0)
    assert (await store.summary(at), await ops.engine_counts(at)) == counted


@pytest.mark.postgres
async def test_a_result_whose_statement_began_before_the_reset_committed_writes_nothing(
    postgres_url: str,
) -> None:
    """PostgreSQL reads the retired keys from the snapshot of the statement that writes a
    step's result: one that began while a reset was not yet committed did not see the key
    retired, and landed in the old generation, whose job and sub-job ids a state loaded
    again may already have taken back (their updates go by id). The reset now gives the
    key's leased tasks a new fencing token: such a statement waits for the reset, then
    matches no task."""
    database = database_for(postgres_url)
    await database.open()
    try:
        await _result_during_a_reset(database, postgres_url)
    finally:
        await database.close()


async def _result_during_a_reset(database: Database, database_url: str) -> None:
    services = services_for(database, database_url)
    testkit, store = _testkit(services, database), store_of(services)
    now = now_ms()
    await testkit.load(demo_state("project-a", 10, now, seed=5))
    now = now_ms() + 1000
    claimed = await store.claim("runner-a", 100, now, LEASE)
    assert claimed
    waiting = Statement("SELECT COUNT(*) FROM pg_locks WHERE NOT granted")
    async with database.transaction() as tx:  # the reset, not committed yet
        await move_to_new_key(tx, "postgresql", "project-a", now)
        result = asyncio.ensure_future(
            store.record([outcome(t, Done(), now + 1) for t in claimed], now + 1)
        )
        for _ in range(500):  # until the result's statement runs (it waits, or it is done)
            if result.done() or (await database.fetch(waiting, {}))[0][0]:
                break
            await asyncio.sleep(0.01)
    assert not any(await result)
    ended = Statement(
        "SELECT COUNT(*) FROM sub_jobs WHERE id = ANY(CAST(:ids AS BIGINT[]))"
        " AND status IN ('SUCCESS', 'FAILED')"
    )
    assert (await database.fetch(ended, {"ids": [t.sub_job_id for t in claimed]}))[0][0] == 0
