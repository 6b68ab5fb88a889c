"""Where runners live: in a worker process until a signal, or inside a server worker
(started and stopped by the ASGI lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from imagejobs.runner.runner import Runner

logger = logging.getLogger("imagejobs.runner")


async def run_until_signalled(runner: Runner) -> None:
    """Run ``runner`` until SIGTERM or SIGINT, then let it finish or release its steps."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, runner.stop)
    try:
        logger.info("runner %s started", runner.owner)
        await runner.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


class EmbeddedRunner:
    """A runner as a background task of a server worker (``imagejobs serve``)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="imagejobs-runner")

    def heartbeat_at(self) -> float | None:
        """The runner's last heartbeat (``time.monotonic()``), or None if it is not running."""
        if self._task is None or self._task.done():
            return None
        return self.runner.heartbeat_at

    async def _run(self) -> None:
        try:
            await self.runner.run()
        except Exception:
            logger.exception("the embedded runner stopped on an error")

    async def stop(self) -> None:
        if self._task is None:
            return
        self.runner.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
