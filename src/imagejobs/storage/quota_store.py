"""What per-project quotas are measured against: servers, jobs in flight (from the
counters, O(1)) and a token bucket of job-starting requests, shared by every process."""

from __future__ import annotations

from imagejobs.storage.database import Database, Statement

COUNT_SERVERS = Statement(
    "SELECT COUNT(*) FROM (SELECT 1 FROM image_servers WHERE project_id = :project_id"
    " LIMIT :limit) AS s"
)
# Jobs WAITING or RUNNING, and CREATE_SERVER jobs ever started (no project has more
# servers than that: the exact count is needed only once it reaches the quota).
USAGE = Statement(
    "SELECT CAST(COALESCE(SUM(CASE WHEN status IN ('WAITING', 'RUNNING') THEN n ELSE 0 END),"
    " 0) AS BIGINT), CAST(COALESCE(SUM(CASE WHEN job_type = 'CREATE_SERVER' THEN n ELSE 0"
    " END), 0) AS BIGINT) FROM job_counters WHERE project_id = :project_id AND scope = 'job'"
)
_BURST = "CAST(:burst AS DOUBLE PRECISION)"
_REFILLED = (
    "project_throttles.tokens + (CAST(:now AS BIGINT) - project_throttles.updated_at)"
    " * CAST(:rate AS DOUBLE PRECISION) / 1000.0"
)
# Take one token if the bucket (refilled at ``rate`` per second, up to ``burst``) has one:
# a row comes back when it did; a refused request changes nothing.
TAKE_TOKEN = Statement(
    "INSERT INTO project_throttles (project_id, tokens, updated_at)"
    f" VALUES (:project_id, {_BURST} - 1, CAST(:now AS BIGINT))"
    " ON CONFLICT (project_id) DO UPDATE SET"
    f" tokens = CASE WHEN {_REFILLED} > {_BURST} THEN {_BURST} ELSE {_REFILLED} END - 1,"
    " updated_at = excluded.updated_at"
    f" WHERE {_REFILLED} >= 1"
    " RETURNING tokens"
)


class SqlQuotaStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def servers(self, project_id: str, limit: int) -> int:
        """The project's servers, counted up to ``limit``."""
        rows = await self._db.fetch(COUNT_SERVERS, {"project_id": project_id, "limit": limit})
        return int(rows[0][0])

    async def usage(self, project_id: str) -> tuple[int, int]:
        """(jobs WAITING or RUNNING, CREATE_SERVER jobs ever started), from the counters."""
        rows = await self._db.fetch(USAGE, {"project_id": project_id})
        return int(rows[0][0]), int(rows[0][1])

    async def take_token(self, project_id: str, rate: float, burst: float, now: int) -> bool:
        params = {"project_id": project_id, "rate": rate, "burst": burst, "now": now}
        async with self._db.transaction() as tx:
            return bool(await tx.fetch(TAKE_TOKEN, params))
