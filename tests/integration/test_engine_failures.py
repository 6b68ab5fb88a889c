"""A runner meets a failing database: a read after a claim, a result that cannot be
written for a moment. Nothing claimed is dropped and no attempt is lost: the job ends
well before the 30 s lease would have handed its task to another runner."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from imagejobs.domain.enums import JobStatus
from imagejobs.domain.errors import ServiceUnavailable
from imagejobs.runner.runner import Runner
from imagejobs.services import Services
from imagejobs.services.engine import EngineService
from imagejobs.storage.database import Database
from tests.engine_support import new_server, services_for
from tests.factories import new_project

pytestmark = pytest.mark.anyio
LEASE_SECONDS = 30.0
DEADLINE = 15.0  # well under the lease


class _FailsOnce:
    """Delegates to ``inner``; the first call of ``method`` raises ServiceUnavailable."""

    def __init__(self, inner: Any, method: str) -> None:
        self._inner = inner
        self._method = method
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name != self._method:
            return attribute

        async def once(*args: Any, **kwargs: Any) -> Any:
            if not self.failures:
                self.failures += 1
                raise ServiceUnavailable()
            return await attribute(*args, **kwargs)

        return once


async def _run_one_job(services: Services, engine: EngineService) -> JobStatus:
    """Create one server, run a runner on ``engine`` until its job ends (or the
    deadline), and answer the job's status."""
    project = new_project()
    job_id = await services.servers.create(project, new_server())
    runner = Runner(engine, concurrency=4, lease_seconds=LEASE_SECONDS, poll_seconds=0.2)
    running = asyncio.create_task(runner.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while loop.time() < deadline:
            status = (await services.jobs.show_job(project, job_id)).job.status
            if status in (JobStatus.SUCCESS, JobStatus.FAILED):
                return status
            await asyncio.sleep(0.1)
        return status
    finally:
        runner.stop()
        await running


def _engine(services: Services, store: Any = None, steering: Any = None) -> EngineService:
    base = services.engine
    return EngineService(
        store or base.store,
        steering or base._steering,
        base.driver,
        clock=base.clock,
    )


async def test_a_claimed_task_is_not_dropped_when_a_read_after_the_claim_fails(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "executions.log"
    services = services_for(database, database_url, IMAGEJOBS_SIMULATED_EXECUTION_LOG=str(log))
    steering = _FailsOnce(services.steering, "behaviours")

    status = await _run_one_job(services, _engine(services, steering=steering))

    assert steering.failures == 1
    assert status is JobStatus.SUCCESS  # released at once, not left to its lease
    assert len(log.read_text().splitlines()) == 1


async def test_a_transient_error_while_recording_costs_no_attempt(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "executions.log"
    services = services_for(database, database_url, IMAGEJOBS_SIMULATED_EXECUTION_LOG=str(log))
    store = _FailsOnce(services.engine.store, "record")

    status = await _run_one_job(services, _engine(services, store=store))

    assert store.failures == 1
    assert status is JobStatus.SUCCESS  # recorded again, not re-run after the lease
    steps: Iterable[str] = log.read_text().splitlines()
    assert [line.split()[3] for line in steps] == ["1"]  # one run, its first attempt
