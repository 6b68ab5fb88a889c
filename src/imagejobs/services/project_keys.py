"""Which storage key a project's rows are under now (storage/project_keys.py), resolved
once per request where the request's project is, and the sweep of retired keys' rows.

The answers are cached per process. A reset bumps the identity generation in its own
transaction (as every identity change does): the process that reset forgets its cache at
once, every other process within ``cache_seconds`` (IMAGEJOBS_IAM_CACHE_SECONDS), as it
notices any identity change. A request resolves its project once, so it reads and writes
one generation whole: the old one, or the new one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from imagejobs.domain.params import check_project_id
from imagejobs.domain.times import now_ms
from imagejobs.storage.database import Database, Statement
from imagejobs.storage.project_keys import SqlProjectKeyStore

logger = logging.getLogger("imagejobs.reset")
_CACHE_LIMIT = 10_000
GENERATION = Statement("SELECT value FROM iam_state WHERE name = 'iam_generation'")
# A retired key is forgotten this long after its reset at the earliest, once it has no
# rows left: a request that resolved it just before the reset may still be writing.
RETIRED_GRACE_MS = 60_000
MIN_PAUSE_SECONDS = 0.005


class ProjectKeys:
    def __init__(self, database: Database, cache_seconds: float = 1.0) -> None:
        self._db = database
        self.store = SqlProjectKeyStore(database)
        self.sweeper = RetiredKeySweeper(self.store)
        self._cache_seconds = cache_seconds
        self._keys: dict[str, str] = {}
        self._projects: dict[str, str] = {}  # current storage key -> project id
        self._generation: object = None
        self._checked_at = float("-inf")
        # False where the identity cache checks the generation before every request
        # resolves its project, and calls ``forget`` when it changed (IamAccess's
        # on_change): one read of it per check, not two.
        self.checks_generation = True

    async def storage_key(self, project_id: str) -> str:
        """The key ``project_id``'s rows are stored under now (``*``, every project in a
        steering rule's scope, stays ``*``). InvalidParameter for what cannot be a
        project's id (check_project_id): above all a storage key ("~..."), whose rows are
        another project's, whoever names it (a state, a rule, a path under auth=none)."""
        if project_id == "*":
            return project_id
        if self.checks_generation and time.monotonic() - self._checked_at >= self._cache_seconds:
            await self._refresh()
        key = self._keys.get(project_id)
        if key is None:
            check_project_id(project_id)  # once per id: a refused one is never cached
            key = await self.store.storage_key(project_id)
            if len(self._keys) >= _CACHE_LIMIT:  # anyone can name projects: bounded
                self._keys.clear()
            self._keys[project_id] = key
        return key

    async def project_id(self, storage_key: str) -> str | None:
        """The id of the project whose rows ``storage_key`` holds, for what shows it
        outside the stores (a driver's StepContext). A key is its project's id until the
        project's first reset; the keys made by resets (new_storage_key) start with "~"
        (no project id holds one). None for such a key retired before it was first
        mapped: its project was reset again, and whatever its step does is dropped."""
        if not storage_key.startswith("~"):
            return storage_key
        project_id = self._projects.get(storage_key)
        if project_id is None:
            project_id = await self.store.project_of(storage_key)
            if project_id is None:  # retired: no current key of any project
                return None
            if len(self._projects) >= _CACHE_LIMIT:
                self._projects.clear()
            self._projects[storage_key] = project_id
        return project_id

    async def shown_ids(self) -> Callable[[str], str | None]:
        """For listings of every project (tasks, rules): the project id a stored key's
        row is shown with, None for a row of a retired key (its project was reset; the
        row is being swept and no request sees it)."""
        current, retired = await self.store.shown_ids()

        def shown(key: str) -> str | None:
            return None if key in retired else current.get(key, key)

        return shown

    def forget(self) -> None:
        """Drop every cached key (a project was reset): a key mapped to its project
        before may be retired now, and a retired key maps to no project."""
        self._keys.clear()
        self._projects.clear()
        self._checked_at = float("-inf")

    async def _refresh(self) -> None:
        moment = time.monotonic()
        rows = await self._db.fetch(GENERATION, {})
        generation = rows[0][0] if rows else 0
        self._checked_at = moment
        if generation != self._generation:
            self._generation = generation
            self._keys.clear()
            self._projects.clear()


class RetiredKeySweeper:
    """Deletes retired storage keys' rows in batches of ``batch``, in every serving
    process: when woken by a reset here, and every ``interval`` seconds (another process's
    resets). Each batch is one short transaction, and the sweeper rests at least as long
    as the batch took before the next, so requests take the write lock in between."""

    def __init__(
        self,
        store: SqlProjectKeyStore,
        batch: int = 1000,
        *,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._batch = batch
        self._clock_ms = clock_ms
        self.swept = 0  # rows this process deleted
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def sweep(self, grace_ms: int = RETIRED_GRACE_MS) -> int:
        """Delete every retired key's rows; forget the keys retired more than
        ``grace_ms`` ago (a request that resolved one just before its reset may still
        write a row under it until then). The number of rows deleted."""
        total = 0
        for storage_key, retired_at in await self._store.retired():
            while True:
                started = time.monotonic()
                n = await self._store.sweep(storage_key, self._batch)
                if not n:
                    break
                total += n
                self.swept += n
                await asyncio.sleep(max(MIN_PAUSE_SECONDS, time.monotonic() - started))
            if retired_at < self._clock_ms() - grace_ms:
                await self._store.forget_retired(storage_key)
        return total

    def wake(self) -> None:
        self._wake.set()

    def start(self, interval: float) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(interval))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, interval: float) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            try:
                await self.sweep()
            except Exception:  # a database hiccup: the next round sweeps
                logger.warning("sweeping reset projects' rows failed", exc_info=True)
