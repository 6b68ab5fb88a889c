"""What operators read and write about the service itself: the readiness checks, the
numbers behind the metrics, and the audit trail of mutating calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from imagejobs.domain.ids import IdGenerator, id_for
from imagejobs.observability import EngineCounts
from imagejobs.storage.database import Database, Row, Statement
from imagejobs.storage.project_keys import NOT_RETIRED

PING = Statement("SELECT 1")
SCHEMA_REVISION = Statement("SELECT version_num FROM alembic_version")
# Neither counts reset projects' old generations (rows the sweeper has yet to delete,
# which no request reads and no runner claims): project_keys.NOT_RETIRED.
COUNTS = Statement(
    f"SELECT scope, job_type, status, SUM(n) FROM job_counters WHERE {NOT_RETIRED}"
    " GROUP BY scope, job_type, status"
)
QUEUE = Statement(
    "SELECT"
    " COALESCE(SUM(CASE WHEN lease_owner IS NULL AND due_at <= :now THEN 1 ELSE 0 END), 0),"
    " MIN(CASE WHEN lease_owner IS NULL AND due_at <= :now THEN due_at END),"
    " COALESCE(SUM(CASE WHEN lease_owner IS NOT NULL AND due_at > :now THEN 1 ELSE 0 END), 0),"
    " COALESCE(SUM(CASE WHEN lease_owner IS NOT NULL AND due_at <= :now THEN 1 ELSE 0 END), 0)"
    f" FROM engine_tasks WHERE {NOT_RETIRED}"
)
_AUDIT_COLUMNS = (
    "id, at, request_id, principal, account_id, method, path, operation, project_id,"
    " status, error_code, dropped"
)
INSERT_AUDIT = Statement(
    f"INSERT INTO audit_events ({_AUDIT_COLUMNS}) VALUES (:id, :at, :request_id, :principal,"
    " :account_id, :method, :path, :operation, :project_id, :status, :error_code, :dropped)"
    " ON CONFLICT (id) DO NOTHING RETURNING id"
)
# Many events in one statement (PostgreSQL): one array per column.
INSERT_AUDIT_MANY = Statement(
    f"INSERT INTO audit_events ({_AUDIT_COLUMNS}) SELECT * FROM unnest("
    "CAST(:id AS BIGINT[]), CAST(:at AS BIGINT[]), CAST(:request_id AS TEXT[]),"
    " CAST(:principal AS TEXT[]), CAST(:account_id AS TEXT[]), CAST(:method AS TEXT[]),"
    " CAST(:path AS TEXT[]), CAST(:operation AS TEXT[]), CAST(:project_id AS TEXT[]),"
    " CAST(:status AS INTEGER[]), CAST(:error_code AS TEXT[]), CAST(:dropped AS INTEGER[]))"
    " ON CONFLICT (id) DO NOTHING RETURNING id"
)
LIST_AUDIT = Statement(
    f"SELECT {_AUDIT_COLUMNS} FROM audit_events WHERE id < :before ORDER BY id DESC LIMIT :limit"
)
LIST_ACCOUNT_AUDIT = Statement(
    f"SELECT {_AUDIT_COLUMNS} FROM audit_events WHERE account_id = :account_id AND id < :before"
    " ORDER BY id DESC LIMIT :limit"
)
# A project-scoped credential's page: index ix_audit_events_project (migration 0010), so a
# project with few events in a busy account is not found by scanning the account's.
LIST_PROJECT_AUDIT = Statement(
    f"SELECT {_AUDIT_COLUMNS} FROM audit_events WHERE account_id = :account_id"
    " AND project_id = :project_id AND id < :before ORDER BY id DESC LIMIT :limit"
)
# Retention: the oldest events first, a bounded batch per statement. Ids are time-ordered
# (domain/ids.py), so "stored before T" is "id below the first id of T": a range of the
# primary key, no index on ``at`` needed. On PostgreSQL, processes purging at once skip
# each other's locked rows and delete disjoint batches instead of waiting on one another;
# the batch is an array there, so that the delete is index lookups whatever the planner
# thinks of the table's size (with ``IN (SELECT …)`` it chose a scan of the whole table).
_OLDEST_AUDIT = "SELECT id FROM audit_events WHERE id < :below ORDER BY id LIMIT :batch"
PURGE_AUDIT = {
    "sqlite": Statement(f"DELETE FROM audit_events WHERE id IN ({_OLDEST_AUDIT}) RETURNING id"),
    "postgresql": Statement(
        f"DELETE FROM audit_events WHERE id = ANY(ARRAY({_OLDEST_AUDIT} FOR UPDATE SKIP LOCKED))"
        " RETURNING id"
    ),
}
_ID_COLLISIONS = 3


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    at: int  # epoch milliseconds
    request_id: str
    principal: str  # account/user, or "-" when the caller was not authenticated
    account_id: str
    method: str
    path: str
    operation: str
    project_id: str
    status: int
    error_code: str
    # A marker of the audit's own bound (api/audit_trail.py): this many of the account's
    # events were not stored; 0 for every event of a call.
    dropped: int = 0


class SqlOpsStore:
    def __init__(self, database: Database, ids: IdGenerator | None = None) -> None:
        self._db = database
        self._ids = ids or IdGenerator()

    async def ping(self) -> None:
        await self._db.fetch(PING, {})

    async def schema_revision(self) -> str | None:
        rows = await self._db.fetch(SCHEMA_REVISION, {})
        return str(rows[0][0]) if rows else None

    async def engine_counts(self, now: int) -> EngineCounts:
        jobs: dict[tuple[str, str], int] = {}
        sub_jobs: dict[tuple[str, str], int] = {}
        # Both read whole tables (the counters: a row per project, type, status and stripe,
        # ~0.4 s at 20,000 projects on SQLite): off the event loop, as deep pages are.
        for scope, job_type, status, n in await self._db.fetch_deep(COUNTS, ()):
            (jobs if scope == "job" else sub_jobs)[(job_type, status)] = int(n)
        queue = await self._db.fetch_deep(QUEUE, QUEUE.args({"now": now}))
        due, oldest, leased, expired = queue[0]
        return EngineCounts(
            jobs=jobs,
            sub_jobs=sub_jobs,
            queue_due=int(due),
            oldest_due_age_seconds=0.0 if oldest is None else max(0, now - int(oldest)) / 1000,
            leased=int(leased),
            expired_leases=int(expired),
        )

    async def add_audit_event(self, event: AuditEvent) -> None:
        """Store ``event`` (its id is assigned here; ``event.id`` is ignored)."""
        await self.add_audit_events([event])

    async def add_audit_events(self, events: Sequence[AuditEvent]) -> None:
        """Store ``events`` together, as one transaction (their ids are assigned here)."""
        pending = [
            {name: _storable(getattr(e, name)) for name in AuditEvent.__slots__} for e in events
        ]
        for _ in range(_ID_COLLISIONS):  # another process may have made the same id
            if not pending:
                return
            for values in pending:
                values["id"] = self._ids.next_id()
            stored = await self._insert_audit(pending)
            pending = [values for values in pending if values["id"] not in stored]

    async def _insert_audit(self, rows: Sequence[dict[str, object]]) -> set[object]:
        """The ids stored (an id taken already is not)."""
        if self._db.dialect == "postgresql":
            columns = {name: [row[name] for row in rows] for name in AuditEvent.__slots__}
            return {row[0] for row in await self._db.write(INSERT_AUDIT_MANY, columns)}
        async with self._db.transaction() as tx:
            return {row[0] for values in rows for row in await tx.fetch(INSERT_AUDIT, values)}

    async def audit_events(
        self,
        limit: int,
        before: int | None = None,
        account_id: str | None = None,
        project_id: str | None = None,
    ) -> list[AuditEvent]:
        """Newest first; ``before`` pages on (an id from the previous page)."""
        rows = await self.audit_rows(limit, before, account_id, project_id)
        return [audit_event(row) for row in rows]

    async def audit_rows(
        self,
        limit: int,
        before: int | None = None,
        account_id: str | None = None,
        project_id: str | None = None,
    ) -> list[Row]:
        """``audit_events`` as rows (``audit_event`` makes each an event), for a caller
        that turns them into events off the event loop. ``project_id`` (with
        ``account_id``): only that project's events, none of the account's own."""
        params: dict[str, object] = {"limit": limit, "before": before or 10**18}
        statement = LIST_AUDIT
        if account_id is not None:
            statement, params["account_id"] = LIST_ACCOUNT_AUDIT, account_id
            if project_id is not None:
                statement, params["project_id"] = LIST_PROJECT_AUDIT, project_id
        # Up to 1,000 rows: read as a deep page is, so that the loop serves others meanwhile.
        return await self._db.fetch_deep(statement, statement.args(params))

    async def purge_audit_events(self, stored_before: int, batch: int) -> int:
        """Delete up to ``batch`` of the oldest events stored before ``stored_before``
        (epoch milliseconds), in one short transaction; the number deleted."""
        below = id_for(stored_before, 0, 0)
        rows = await self._db.write(PURGE_AUDIT[self._db.dialect], {"below": below, "batch": batch})
        return len(rows)


def audit_event(row: Sequence[object]) -> AuditEvent:
    return AuditEvent(*row)  # type: ignore[arg-type]


def _storable(value: object) -> object:
    """A hostile request's NUL (in its path, say) as U+FFFD: PostgreSQL's text holds no
    NUL, and the event must be stored the same on both databases."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value
