"""The engine with real worker processes: kill -9 mid-step, SIGTERM, and many workers
at once. Nothing acknowledged is lost, nothing is stuck past the lease bound, no
sub-job has two results, and on PostgreSQL every sub-job runs exactly once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from imagejobs.services import Services
from imagejobs.storage.database import database_for
from tests.engine_support import FAST, counter_mismatches, new_server, query, services_for
from tests.factories import new_project

LEASE_SECONDS = 2


class WorkerProcess:
    """``imagejobs worker`` in a child process, as an operator runs it."""

    def __init__(self, database_url: str, log: Path, env: dict[str, str], concurrency: int):
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imagejobs",
                "worker",
                "--database-url",
                database_url,
                "--concurrency",
                str(concurrency),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "IMAGEJOBS_LOG_LEVEL": "info", **env},
        )

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no cleanup at all
        self.process.wait()
        self._log.close()

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._log.close()
        return code


def engine_env(log: Path, **extra: str) -> dict[str, str]:
    return {
        **FAST,
        "IMAGEJOBS_LEASE_SECONDS": str(LEASE_SECONDS),
        "IMAGEJOBS_SIMULATED_EXECUTION_LOG": str(log),
        **extra,
    }


def create_servers(url: str, project: str, count: int) -> list[str]:
    """CREATE_SERVER jobs, created as the API does; their ids once acknowledged."""

    async def create() -> list[str]:
        database = database_for(url)
        await database.open()
        try:
            services: Services = services_for(database, url)
            job_ids: list[str] = []
            for start in range(0, count, 50):
                batch = [
                    services.servers.create(project, new_server())
                    for _ in range(start, min(count, start + 50))
                ]
                job_ids += await asyncio.gather(*batch)
            return job_ids
        finally:
            await database.close()

    return asyncio.run(create())


def job_statuses(url: str) -> Counter[str]:
    return Counter(status for (status,) in query(url, "SELECT status FROM jobs"))


def leased(url: str) -> int:
    rows = query(url, "SELECT COUNT(*) FROM engine_tasks WHERE lease_owner IS NOT NULL")
    return int(rows[0][0])


def wait_for(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def assert_all_succeeded_once(url: str, job_ids: list[str]) -> None:
    assert job_statuses(url) == Counter({"SUCCESS": len(job_ids)})
    sub_jobs = query(url, "SELECT status, end_time FROM sub_jobs")
    assert len(sub_jobs) == len(job_ids)
    assert all(status == "SUCCESS" and end is not None for status, end in sub_jobs)
    assert query(url, "SELECT COUNT(*) FROM engine_tasks") == [(0,)]
    servers = query(url, "SELECT status, aps_server_id FROM image_servers")
    assert {status for status, _ in servers} == {"ACTIVE"}
    # Idempotent steps: however often a step ran, each server got one identity.
    assert len({aps for _, aps in servers}) == len(job_ids)
    # Two results for one sub-job would have moved a counter twice.
    assert counter_mismatches(url) == []


def test_killed_workers_lose_nothing_and_leases_bound_the_delay(
    database_url: str, tmp_path: Path
) -> None:
    executions = tmp_path / "executions.log"
    env = engine_env(
        executions,
        IMAGEJOBS_SIMULATED_COMPLETION="duration",
        IMAGEJOBS_SIMULATED_DURATION_SECONDS="0.8",
        IMAGEJOBS_MAX_ATTEMPTS="100",
    )
    job_ids = create_servers(database_url, new_project(), 24)
    rng = random.Random(4)
    held_at_kill = 0
    for round_number in range(5):
        worker = WorkerProcess(database_url, tmp_path / f"worker-{round_number}.log", env, 6)
        # Kill it mid-step: once it holds leases, at a random moment of the step.
        assert wait_for(lambda: leased(database_url) > 0, 30)
        time.sleep(rng.uniform(0.05, 0.6))
        held_at_kill += leased(database_url)
        worker.kill()
        assert counter_mismatches(database_url) == []
    assert held_at_kill > 0

    survivor = WorkerProcess(database_url, tmp_path / "survivor.log", env, 24)
    try:
        # Bound: the last lease expires, then every remaining step runs once more.
        bound = LEASE_SECONDS + 0.8 + 10
        assert wait_for(lambda: job_statuses(database_url)["SUCCESS"] == len(job_ids), bound)
    finally:
        assert survivor.terminate() == 0
    assert_all_succeeded_once(database_url, job_ids)
    ran = Counter(line.split()[0] for line in executions.read_text().splitlines())
    assert len(ran) == len(job_ids)


def test_sigterm_releases_the_steps_in_progress_at_once(database_url: str, tmp_path: Path) -> None:
    executions = tmp_path / "executions.log"
    env = engine_env(
        executions,
        IMAGEJOBS_SIMULATED_COMPLETION="duration",
        # Short enough to be slept in the runner slot (a longer wait is rescheduled).
        IMAGEJOBS_SIMULATED_DURATION_SECONDS="1",
        IMAGEJOBS_SHUTDOWN_GRACE_SECONDS="0.2",
        IMAGEJOBS_LEASE_SECONDS="30",
    )
    job_ids = create_servers(database_url, new_project(), 4)
    worker = WorkerProcess(database_url, tmp_path / "worker.log", env, 8)
    assert wait_for(lambda: leased(database_url) == 4, 30)

    assert worker.terminate() == 0

    # Released, not left to a 30 s lease: due now, and the attempt did not count.
    rows = query(database_url, "SELECT lease_owner, attempts FROM engine_tasks")
    assert rows == [(None, 0)] * 4
    assert counter_mismatches(database_url) == []
    finisher = WorkerProcess(database_url, tmp_path / "finisher.log", env, 8)
    try:
        assert wait_for(lambda: job_statuses(database_url)["SUCCESS"] == 4, 30)
    finally:
        finisher.terminate()
    assert_all_succeeded_once(database_url, job_ids)


@pytest.mark.postgres
def test_four_workers_run_two_thousand_sub_jobs_exactly_once(
    postgres_url: str, tmp_path: Path
) -> None:
    executions = tmp_path / "executions.log"
    env = engine_env(executions)
    workers = [WorkerProcess(postgres_url, tmp_path / f"worker-{i}.log", env, 16) for i in range(4)]
    try:
        job_ids = create_servers(postgres_url, new_project(), 2000)
        assert wait_for(lambda: job_statuses(postgres_url)["SUCCESS"] == 2000, 120)
    finally:
        codes = [w.terminate() for w in workers]
    assert codes == [0, 0, 0, 0]
    assert_all_succeeded_once(postgres_url, job_ids)
    lines = executions.read_text().splitlines()
    ran = Counter(line.split()[0] for line in lines)
    assert len(ran) == 2000
    assert set(ran.values()) == {1}  # each sub-job executed exactly once
    # The work was shared: every worker process ran some of it.
    assert len({line.split()[4] for line in lines}) == 4


def test_serve_without_a_runner_leaves_jobs_to_workers(sqlite_url: str, tmp_path: Path) -> None:
    from tests.conftest import ServerProcess
    from tests.engine_support import server_body

    env = engine_env(tmp_path / "executions.log")
    server = ServerProcess(
        sqlite_url, tmp_path, "--no-runner", extra_env={**env, "IMAGEJOBS_AUTH": "none"}
    )
    try:
        import httpx

        project = new_project()
        created = httpx.post(f"{server.base_url}/v1/{project}/image-servers", json=server_body())
        job = f"{server.base_url}/v1/{project}/image-server-jobs/{created.json()['job_id']}"
        time.sleep(1)  # an embedded runner would have run it by now
        assert httpx.get(job).json()["status"] == "WAITING"
        worker = WorkerProcess(sqlite_url, tmp_path / "worker.log", env, 4)
        try:
            assert wait_for(lambda: httpx.get(job).json()["status"] == "SUCCESS", 30)
        finally:
            worker.terminate()
    finally:
        server.stop()


def test_heartbeats_keep_a_long_step_with_its_runner(sqlite_url: str, tmp_path: Path) -> None:
    """Steps longer than the lease are not taken over while their runner lives."""
    executions = tmp_path / "executions.log"
    env = engine_env(
        executions,
        IMAGEJOBS_LEASE_SECONDS="1",
        IMAGEJOBS_SIMULATED_COMPLETION="duration",
        IMAGEJOBS_SIMULATED_DURATION_SECONDS="2.5",
    )
    job_ids = create_servers(sqlite_url, new_project(), 3)
    worker = WorkerProcess(sqlite_url, tmp_path / "worker.log", env, 4)
    try:
        assert wait_for(lambda: job_statuses(sqlite_url)["SUCCESS"] == 3, 30)
    finally:
        worker.terminate()
    assert_all_succeeded_once(sqlite_url, job_ids)
    # One runner, leases of 1 s, steps of 2.5 s: without heartbeats it would have
    # taken its own expired tasks over and run each step again.
    assert len(executions.read_text().splitlines()) == 3
