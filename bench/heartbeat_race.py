"""The heartbeat-after-reschedule race (issue 13, item 2), counted: a heartbeat that lands
just after a step was rescheduled must not push the task's due time out by a lease.

One runner (a slot for every sub-job, so nothing queues; a 0.3 s lease: heartbeats every
0.1 s) runs ``--jobs`` sub-jobs
whose driver steps take 0-150 ms and answer ``Pending(0.02 s)`` ``--steps`` times before
they finish. Each reschedule is due 20 ms after it was committed; one whose next step
starts a whole lease (>= 0.25 s) later waited for nothing. Reported per database:
reschedules, how many waited a lease, and the share. A fresh database each run.

    .venv/bin/python bench/heartbeat_race.py [--jobs 100] [--steps 25]
        [--databases sqlite,postgresql] [--postgres-url postgresql://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

LEASE_SECONDS = 0.3
PENDING_SECONDS = 0.02
LATE_SECONDS = 0.25  # a next step this late waited (most of) a lease
PG_DATABASE = "imagejobs_bench_heartbeat"


class PendingDriver:
    """Every step: work 0-150 ms, then Pending(20 ms), ``steps`` times; then done."""

    def __init__(self, steps: int) -> None:
        self._steps = steps
        self._done: dict[int, int] = {}
        self._due: dict[int, float] = {}
        self.delays: list[float] = []
        self._rng = random.Random(13)

    async def create_server(self, ctx: Any, request: Any) -> Any:
        from imagejobs.drivers.interface import Pending, ServerCreated

        if (due := self._due.pop(ctx.sub_job_id, None)) is not None:
            self.delays.append(time.monotonic() - due)
        await asyncio.sleep(self._rng.uniform(0, 0.15))
        done = self._done.get(ctx.sub_job_id, 0)
        if done < self._steps:
            self._done[ctx.sub_job_id] = done + 1
            return Pending(PENDING_SECONDS)
        return ServerCreated(server_id=f"wksapp-{ctx.sub_job_id}", instance_id="ecs")

    def recorded(self, sub_job_ids: list[int]) -> None:
        """These reschedules were committed now: due in PENDING_SECONDS."""
        for sub_job_id in sub_job_ids:
            self._due[sub_job_id] = time.monotonic() + PENDING_SECONDS

    async def delete_server(self, ctx: Any, request: Any) -> Any:
        from imagejobs.drivers.interface import Deleted

        return Deleted()

    async def close(self) -> None:
        return None


async def measure(url: str, jobs: int, steps: int) -> dict[str, Any]:
    from imagejobs.bootstrap import build_services
    from imagejobs.domain.servers import AccountInfo, ImageRef, NewServer
    from imagejobs.runner.runner import Runner
    from imagejobs.settings import load_settings
    from imagejobs.storage.database import database_for
    from imagejobs.storage.migrate import migrate

    await migrate(url)
    environ = {
        "IMAGEJOBS_DATABASE_URL": url,
        "IMAGEJOBS_SIMULATED_QUEUE_SECONDS": "0",
        "IMAGEJOBS_QUOTA_JOBS_IN_FLIGHT": "0",
        "IMAGEJOBS_QUOTA_CREATES_PER_SECOND": "0",
        # Leases of 0.3 s expire under load: a takeover must not end a sub-job.
        "IMAGEJOBS_MAX_ATTEMPTS": "100",
    }
    database = database_for(url)
    await database.open()
    try:
        services = build_services(database, load_settings(environ))
        driver = PendingDriver(steps)
        services.engine.driver = driver
        record = services.engine.record

        async def timed_record(transitions: Any) -> Any:
            # Lateness counts from the commit of a reschedule, not from the driver's
            # answer: the queue of results to write is not the race measured here.
            applied = await record(transitions)
            driver.recorded([t.task.sub_job_id for t in transitions if hasattr(t, "wait_reads")])
            return applied

        services.engine.record = timed_record  # type: ignore[method-assign]
        project = "heartbeat-race"
        for i in range(jobs):
            name = f"race-{i}"
            server = NewServer(
                name=name,
                image_ref=ImageRef("image", "public"),
                authorize_accounts=(AccountInfo("u", "USER"),),
            )
            await services.servers.create(project, server)
        runner = Runner(
            services.engine, concurrency=2 * jobs, lease_seconds=LEASE_SECONDS, poll_seconds=0.05
        )
        running = asyncio.create_task(runner.run())
        started = time.monotonic()
        while time.monotonic() - started < 600:
            queue = await services.engine.summary()
            if queue.due + queue.scheduled + queue.leased + queue.expired == 0:
                break
            await asyncio.sleep(0.1)
        runner.stop()
        await running
    finally:
        await database.close()
    late = sum(1 for d in driver.delays if d >= LATE_SECONDS)
    return {
        "reschedules": len(driver.delays),
        "waited_a_lease": late,
        "share": round(late / max(1, len(driver.delays)), 4),
        "seconds": round(time.monotonic() - started, 1),
    }


async def _admin(url: str, sql: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    for name in args.databases.split(","):
        if name == "sqlite":
            with tempfile.TemporaryDirectory() as directory:
                url = f"sqlite:///{Path(directory) / 'race.db'}"
                result = asyncio.run(measure(url, args.jobs, args.steps))
        else:
            admin = args.postgres_url
            asyncio.run(_admin(admin, f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)"))
            asyncio.run(_admin(admin, f"CREATE DATABASE {PG_DATABASE}"))
            try:
                url = admin.rsplit("/", 1)[0] + "/" + PG_DATABASE
                result = asyncio.run(measure(url, args.jobs, args.steps))
            finally:
                asyncio.run(_admin(admin, f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)"))
        print(name, result, flush=True)


if __name__ == "__main__":
    main()
