"""Waking idle runners when work becomes due, instead of only polling.

- In one process: a doorbell (an asyncio.Event) rung after a commit that added due work.
- Across processes on PostgreSQL: ``NOTIFY imagejobs_engine``, sent by a transaction
  that changes tasks (delivered at its commit), or on its own after the commit of new
  tasks, before the answer (a create: one NOTIFY for all the commits that end while one
  is being sent, so that creates do not hold PostgreSQL's notify lock through their
  commits; a process that dies in between leaves the others to find that work when they
  next poll). Idle runners ``LISTEN`` on a connection
  of their own. When that connection drops (a restart, a failover, a killed backend) the
  runner looks for work at once (it may have missed a NOTIFY) and listens again on a new
  connection, retrying on each wait until the database answers.
- Across processes on SQLite: ``PRAGMA data_version`` changes when another connection
  commits; idle runners look at it every 50 ms (no I/O: it reads shared memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from imagejobs.storage.database import Database, PostgresDatabase, Statement, Transaction

CHANNEL = "imagejobs_engine"
NOTIFY = Statement(f"SELECT pg_notify('{CHANNEL}', '')")
DATA_VERSION = Statement("PRAGMA data_version")
SQLITE_WATCH_SECONDS = 0.05
logger = logging.getLogger("imagejobs.engine")


async def notify(tx: Transaction, dialect: str) -> None:
    """Tell runners in other processes, when ``tx`` commits, that work is due."""
    if dialect == "postgresql":
        await tx.fetch(NOTIFY, {})


class Wakeups:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._doorbell = asyncio.Event()
        self._data_version: int | None = None
        self._listener: Any = None
        self._listening = False  # wanted: listen() was called and unlisten() was not
        self._lost = False  # the LISTEN connection dropped (the pool has let go of it)
        self._notifier: asyncio.Task[None] | None = None
        self._next_notify: asyncio.Future[None] | None = None  # the NOTIFY not yet begun

    def ring(self) -> None:
        self._doorbell.set()

    async def announce(self) -> None:
        """NOTIFY runners in other processes (PostgreSQL) that work was just committed.

        Commits that end while a NOTIFY is being sent share the next one (a NOTIFY that
        began before a commit may be delivered before it, too early to show its work)."""
        if not isinstance(self._db, PostgresDatabase):
            return
        if self._next_notify is None:
            self._next_notify = asyncio.get_running_loop().create_future()
            if self._notifier is None:
                self._notifier = asyncio.get_running_loop().create_task(self._send_notifies())
        await asyncio.shield(self._next_notify)

    async def _send_notifies(self) -> None:
        sent: asyncio.Future[None] | None = None
        try:
            while (sent := self._next_notify) is not None:
                self._next_notify = None
                try:
                    await self._db.write(NOTIFY, {})
                except Exception:  # the work is committed: runners elsewhere poll for it
                    logger.warning("cannot NOTIFY runners elsewhere now", exc_info=True)
                sent.set_result(None)
        finally:  # also when cancelled (shutdown): no caller waits forever
            self._notifier = None
            for waiting in (sent, self._next_notify):
                if waiting is not None and not waiting.done():
                    waiting.set_result(None)
            self._next_notify = None

    async def wait(self, timeout: float) -> None:
        """Return when work may have become due, or after ``timeout`` seconds."""
        if self._db.dialect != "sqlite":
            await self._listen_again()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._doorbell.wait(), timeout)
            self._doorbell.clear()
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._doorbell.wait(), min(remaining, SQLITE_WATCH_SECONDS))
                break
            if await self._sqlite_changed():
                break
        self._doorbell.clear()

    async def _sqlite_changed(self) -> bool:
        """Whether another connection committed since the last look."""
        version = (await self._db.fetch(DATA_VERSION, {}))[0][0]
        changed = self._data_version is not None and version != self._data_version
        self._data_version = version
        return changed

    async def listen(self) -> None:
        """On PostgreSQL, start waking on NOTIFY from other processes (if the database
        cannot be reached now, the next waits try again)."""
        if not isinstance(self._db, PostgresDatabase):
            return
        self._listening = True
        await self._listen_again()

    async def _listen_again(self) -> None:
        if not self._listening or not isinstance(self._db, PostgresDatabase):
            return
        if self._listener is not None:
            if not self._lost:
                return
            await self._drop_listener()
        try:
            connection = await self._db.pool.acquire()
        except Exception:
            logger.warning("cannot LISTEN for work now; polling meanwhile", exc_info=True)
            return
        try:
            await connection.add_listener(CHANNEL, self._on_notify)
            connection.add_termination_listener(self._on_lost)
            self._lost = False
        except Exception:
            logger.warning("cannot LISTEN for work now; polling meanwhile", exc_info=True)
            await self._db.pool.release(connection)
            return
        self._listener = connection

    def _on_notify(self, *args: object) -> None:
        self._doorbell.set()

    def _on_lost(self, *args: object) -> None:
        """The LISTEN connection dropped: look for work now (a NOTIFY may have been
        lost with it); the wait that follows listens again."""
        logger.warning("the LISTEN connection was lost; listening again")
        self._lost = True
        self._doorbell.set()

    async def _drop_listener(self) -> None:
        if self._listener is None or not isinstance(self._db, PostgresDatabase):
            return
        connection, self._listener = self._listener, None
        try:
            connection.remove_termination_listener(self._on_lost)
            await connection.remove_listener(CHANNEL, self._on_notify)
        except Exception:
            # Maybe still listening: pooled connections are not reset (database.py).
            connection.terminate()
        with contextlib.suppress(Exception):
            await self._db.pool.release(connection)

    async def unlisten(self) -> None:
        self._listening = False
        await self._drop_listener()
