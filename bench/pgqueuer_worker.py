"""One pgqueuer worker process for bench/engine_vs_pgqueuer.py: an entrypoint that does
nothing, run by ``QueueManager.run()`` with pgqueuer's defaults (batch size 10, no
concurrency cap, 30 s heartbeat timeout). Runs in the benchmark's own environment
(bench/.venv-pgqueuer, with pgqueuer 1.6.0 and asyncpg), never imagejobs'.

    bench/.venv-pgqueuer/bin/python bench/pgqueuer_worker.py DSN
"""

from __future__ import annotations

import asyncio
import signal
import sys

import asyncpg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager


async def main(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    manager = QueueManager(Queries(AsyncpgDriver(connection)))

    @manager.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, manager.shutdown.set)
    await manager.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
