"""The periodic purge of dead credentials in each serving process (one cheap DELETE each)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from imagejobs.services.credentials import Credentials

logger = logging.getLogger("imagejobs.iam")


class CredentialPurge:
    """Every ``interval`` seconds, deletes expired or revoked tokens, dead temporary keys
    and stale failure counts. Several processes may purge at once: the deletes commute."""

    def __init__(self, identity: Credentials, interval: float) -> None:
        self._identity = identity
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._identity.purge_expired()
            except Exception:  # a database hiccup: the next round purges
                logger.warning("credential purge failed", exc_info=True)
