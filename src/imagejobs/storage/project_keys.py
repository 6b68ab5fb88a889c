"""Project storage keys (schema.py ``project_keys``): which key a project's rows are stored
under now, a reset's move to a fresh key, and the sweep of retired keys' rows.

A reset writes three small rows whatever the project's size; the old generation's rows
stay until the sweeper deletes them, batch by batch, in short transactions. Nothing reads
them meanwhile: every request resolves its project to the current key once, before it
touches a table. A runner in the middle of an old generation's step writes nothing: every
write about a task holds only while its key is not retired (engine_store.RETIRED_FENCE),
and no claim takes a retired key's task.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from imagejobs.storage.database import Database, Statement, Transaction

_RESOLVE = "SELECT storage_key FROM project_keys WHERE project_id = :project_id"
RESOLVE = Statement(_RESOLVE)
CLAIM = Statement(
    "INSERT INTO project_keys (project_id, storage_key) VALUES (:project_id, :project_id)"
    " ON CONFLICT (project_id) DO NOTHING"
)
# The row is locked (PostgreSQL) so that two resets of one project retire one key each.
RESOLVE_FOR_UPDATE = {
    "sqlite": RESOLVE,  # one writer at a time already
    "postgresql": Statement(f"{_RESOLVE} FOR UPDATE"),
}
MOVE = Statement(
    "UPDATE project_keys SET storage_key = :storage_key WHERE project_id = :project_id"
)
# PostgreSQL: the old key's leased tasks (steps running now) get a new fencing token in
# the reset's transaction. The fence on retired keys is read from the snapshot of the
# statement that writes a step's result; one that began before the reset committed did
# not see the key retired, and its result landed in the old generation (whose ids a state
# loaded again may already have taken back: END_JOB and SET_SUB_JOB_STATUS go by id).
# Now such a statement either locked the task row first (the reset waits: the result is
# the old generation's last write, before the reset) or waits for the reset's row lock
# and then re-checks the row's token, which no longer matches: it writes nothing. Rows
# visited: the project's live tasks (ix_engine_tasks_project_due), rows written: the
# leased ones. SQLite has one writer at a time: the fence is exact there already.
FENCE_LEASED = Statement(
    "UPDATE engine_tasks SET fencing_token = fencing_token + 1"
    " WHERE project_id = :storage_key AND lease_owner IS NOT NULL"
)
RETIRE = Statement(
    "INSERT INTO retired_project_keys (storage_key, retired_at) VALUES (:storage_key, :now)"
    " ON CONFLICT (storage_key) DO NOTHING"
)
FORGET_RULES = Statement("DELETE FROM engine_rules WHERE project_id = :storage_key")
PROJECT_OF = Statement("SELECT project_id FROM project_keys WHERE storage_key = :storage_key")
ALL_KEYS = Statement("SELECT project_id, storage_key FROM project_keys")
RETIRED = Statement(
    "SELECT storage_key, retired_at FROM retired_project_keys ORDER BY retired_at, storage_key"
)
FORGET_RETIRED = Statement("DELETE FROM retired_project_keys WHERE storage_key = :storage_key")
FORGET_ALL_RETIRED = Statement("DELETE FROM retired_project_keys")
# A row of a current generation (a condition on the row's project_id): what the engine's
# writes, claims and counts hold to; a retired key's rows are only swept.
NOT_RETIRED = "project_id NOT IN (SELECT storage_key FROM retired_project_keys)"
# Tasks first: a running step of the old generation loses its fencing token before its
# sub-job goes; then the failures remembered for its running jobs (keyed by job id alone:
# found through the jobs, so before them), children before parents (sub-jobs, jobs), then
# the rest.
SWEPT_TABLES = (
    "engine_tasks",
    "sub_jobs",
    "jobs",
    "image_servers",
    "job_counters",
    "project_throttles",
)
_FAILURES_OF_KEY = (
    "SELECT f.job_id FROM engine_job_failures AS f JOIN jobs AS j ON j.id = f.job_id"
    " WHERE j.project_id = :storage_key LIMIT :batch"
)


def _sweeps(dialect: str) -> dict[str, Statement]:
    """One batch of a retired key's rows in one table, over the index leading with
    project_id (every table has one). On PostgreSQL concurrent sweepers take disjoint rows."""
    if dialect == "sqlite":
        failures = f"DELETE FROM engine_job_failures WHERE job_id IN ({_FAILURES_OF_KEY})"
        batch = (
            "DELETE FROM {0} WHERE rowid IN (SELECT rowid FROM {0}"
            " WHERE project_id = :storage_key LIMIT :batch) RETURNING 1"
        )
    else:
        failures = (
            "DELETE FROM engine_job_failures WHERE job_id = ANY(ARRAY("
            f"{_FAILURES_OF_KEY} FOR UPDATE OF f SKIP LOCKED))"
        )
        batch = (
            "DELETE FROM {0} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {0}"
            " WHERE project_id = :storage_key LIMIT :batch FOR UPDATE SKIP LOCKED)) RETURNING 1"
        )
    statements = {t: Statement(batch.format(t)) for t in SWEPT_TABLES}
    return {
        "engine_tasks": statements.pop("engine_tasks"),
        "engine_job_failures": Statement(f"{failures} RETURNING 1"),
        **statements,
    }


SWEEP = {dialect: _sweeps(dialect) for dialect in ("sqlite", "postgresql")}
# An id of a state being imported may still be held by a retired generation's row.
_RETIRED_KEYS = "SELECT storage_key FROM retired_project_keys"
FREE_IDS = {
    table: Statement(f"DELETE FROM {table} WHERE id = :id AND project_id IN ({_RETIRED_KEYS})")
    for table in ("sub_jobs", "jobs", "image_servers")
}
# A failure remembered for such a job would fail the imported job of the same id.
FREE_FAILURES = Statement(
    "DELETE FROM engine_job_failures WHERE job_id = :id"
    f" AND job_id IN (SELECT id FROM jobs WHERE id = :id AND project_id IN ({_RETIRED_KEYS}))"
)


def new_storage_key() -> str:
    """A key no project id is: "~" and 32 random hex digits (IAM's ids are hex)."""
    return f"~{uuid.uuid4().hex}"


class SqlProjectKeyStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def storage_key(self, project_id: str) -> str:
        rows = await self._db.fetch(RESOLVE, {"project_id": project_id})
        return project_id if not rows else str(rows[0][0])

    async def project_of(self, storage_key: str) -> str | None:
        """The project whose current key ``storage_key`` is (None: none, or it is retired)."""
        rows = await self._db.fetch(PROJECT_OF, {"storage_key": storage_key})
        return None if not rows else str(rows[0][0])

    async def storage_keys(self, project_ids: Sequence[str]) -> list[str]:
        """Each project's storage key now, in one read whatever their number (the table
        holds a row per project ever reset only)."""
        keys = {str(p): str(k) for p, k in await self._db.fetch(ALL_KEYS, {})}
        return [keys.get(p, p) for p in project_ids]

    async def shown_ids(self) -> tuple[dict[str, str], set[str]]:
        """What listings of every project show: each current storage key that is not a
        project id, mapped to its project's id; and every retired key (rows being swept)."""
        current = {str(k): str(p) for p, k in await self._db.fetch(ALL_KEYS, {})}
        retired = {k for k, _ in await self.retired()}
        return current, retired

    async def retired(self) -> list[tuple[str, int]]:
        """Every retired key with when it was retired, oldest first."""
        return [(str(k), int(at)) for k, at in await self._db.fetch(RETIRED, {})]

    async def sweep(self, storage_key: str, batch: int) -> int:
        """Delete up to ``batch`` rows of ``storage_key`` (retired), from the first table
        that still has some, in one short transaction; the number deleted (0: none left)."""
        params = {"storage_key": storage_key, "batch": batch}
        for statement in SWEEP[self._db.dialect].values():
            deleted = len(await self._db.write(statement, params))
            if deleted:
                return deleted
        return 0

    async def forget_retired(self, storage_key: str) -> None:
        await self._db.write(FORGET_RETIRED, {"storage_key": storage_key})

    async def free_ids(
        self, tx: Transaction, servers: Sequence[int], jobs: Sequence[int], sub_jobs: Sequence[int]
    ) -> None:
        """Delete the retired generations' rows that hold any of these ids."""
        if jobs:
            await tx.execute_many(FREE_FAILURES, [{"id": i} for i in jobs])
        for table, ids in (("sub_jobs", sub_jobs), ("jobs", jobs), ("image_servers", servers)):
            if ids:
                await tx.execute_many(FREE_IDS[table], [{"id": i} for i in ids])


async def move_to_new_key(tx: Transaction, dialect: str, project_id: str, now: int) -> str:
    """Within ``tx``: the project gets a fresh storage key, its old key is retired and the
    old key's steering rules are forgotten. The old key."""
    params = {"project_id": project_id}
    await tx.execute(CLAIM, params)
    [(old,)] = await tx.fetch(RESOLVE_FOR_UPDATE[dialect], params)
    await tx.execute(MOVE, {"project_id": project_id, "storage_key": new_storage_key()})
    await tx.execute(RETIRE, {"storage_key": old, "now": now})
    await tx.execute(FORGET_RULES, {"storage_key": old})
    if dialect == "postgresql":
        await tx.execute(FENCE_LEASED, {"storage_key": old})
    return str(old)
