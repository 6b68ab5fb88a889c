"""The image-server store: reads, and the transactions that start server jobs.

A request that starts a job (create, batch delete, recreate image) writes the server
row(s), the job, its sub-jobs, the counters and the engine's tasks in one transaction,
so an acknowledged ``job_id`` always has its work queued; the runners are woken after
the commit (the local one at once, the others on PostgreSQL by a NOTIFY).
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from typing import Any, Protocol, cast

import asyncpg
import msgspec

from imagejobs.domain.enums import ImageServerStatus
from imagejobs.domain.errors import InvalidParameter
from imagejobs.domain.ids import IdCollision, parse_id
from imagejobs.domain.lifecycle import NewTask
from imagejobs.domain.records import JobDetail, Page, PageRequest
from imagejobs.domain.servers import (
    IMAGE_SOURCE_STATUSES,
    SKIPPED_BY_DELETE,
    UNDELETABLE_STATUSES,
    AccountInfo,
    ImageRef,
    ImageServer,
    ListedServer,
    ServerBusy,
    ServerFilter,
    ServerNameTaken,
    ServerNotFound,
    ServerUpdate,
)
from imagejobs.storage.database import COUNTER_STRIPES, Database, Row, Statement, Transaction
from imagejobs.storage.job_store import insert_jobs, json_rows_sql, row_texts
from imagejobs.storage.steering_store import RULED_DUE_AT_SQL

# A job and its tasks, planned from the servers the transaction found.
JobPlan = tuple[JobDetail, Sequence[NewTask]]

_COLUMNS = (
    "id, project_id, name, description, status, image_ref, authorize_accounts,"
    " server_group_id, app_group_id, aps_server_id, instance_id, image_id,"
    " enterprise_project_id, spec, create_time, update_time"
)
INSERT_SERVER = Statement(
    f"INSERT INTO image_servers ({_COLUMNS}) VALUES (:id, :project_id, :name, :description,"
    " :status, :image_ref, :authorize_accounts, :server_group_id, :app_group_id,"
    " :aps_server_id, :instance_id, :image_id, :enterprise_project_id, :spec,"
    " :create_time, :update_time)"
)
NAME_TAKEN = Statement(
    "SELECT id FROM image_servers WHERE project_id = :project_id AND name = :name"
)
GET_SERVER = Statement(
    f"SELECT {_COLUMNS} FROM image_servers WHERE project_id = :project_id AND id = :id"
)
LOCK_SERVER = {
    "sqlite": GET_SERVER,
    "postgresql": Statement(GET_SERVER.text + " FOR UPDATE"),
}
SET_STATUS = Statement(
    "UPDATE image_servers SET status = :status, update_time = :now WHERE id = :id"
)
UPDATE_SERVER = Statement(
    "UPDATE image_servers SET name = COALESCE(:name, name),"
    " description = COALESCE(:description, description), update_time = :now"
    " WHERE project_id = :project_id AND id = :id RETURNING id"
)
# A create on PostgreSQL, all in one statement (one round trip, atomic on its own: no
# BEGIN and COMMIT round trips): the server, unless its name is taken (the unique
# constraint decides, waiting for a concurrent create of the same name to end), and only
# then its job, sub-job, the two counters (one stripe, in key order), the engine task
# (due when the steering rules say, else as planned from the defaults). No row back: the
# name was taken. The NOTIFY for runners elsewhere follows the commit (announce()): inside
# it, it would take PostgreSQL's cluster-wide notify lock through the commit's WAL flush,
# one create at a time (~120 creates/s here, against ~620/s without it).
CREATE_SERVER_AT_ONCE = Statement(
    "WITH server AS ("
    f" INSERT INTO image_servers ({_COLUMNS}) VALUES (:id, :project_id, :name, :description,"
    " :status, :image_ref, :authorize_accounts, :server_group_id, :app_group_id,"
    " :aps_server_id, :instance_id, :image_id, :enterprise_project_id, :spec,"
    " :create_time, :update_time)"
    " ON CONFLICT (project_id, name) DO NOTHING RETURNING id),"
    " job AS (INSERT INTO jobs"
    " (id, project_id, job_type, status, begin_time, end_time, sub_jobs_total)"
    " SELECT :job_id, :project_id, :job_type, :job_status, :job_begin_time, :job_end_time,"
    " :sub_jobs_total FROM server RETURNING id),"
    " sub_job AS (INSERT INTO sub_jobs (id, job_id, project_id, job_type, status, begin_time,"
    " end_time, resource_id, resource_name, error_code, error_message)"
    " SELECT :sub_job_id, job.id, :project_id, :job_type, :sub_job_status,"
    " :sub_job_begin_time, :sub_job_end_time, :resource_id, :resource_name, :error_code,"
    " :error_message FROM job RETURNING id),"
    " counters AS (INSERT INTO job_counters (project_id, scope, job_type, status, stripe, n)"
    " SELECT :project_id, c.scope, :job_type, c.status, :stripe, 1 FROM server"
    " CROSS JOIN (VALUES ('job', CAST(:job_status AS TEXT)),"
    " ('sub_job', CAST(:sub_job_status AS TEXT))) AS c (scope, status) ORDER BY c.scope"
    " ON CONFLICT (project_id, scope, job_type, status, stripe)"
    " DO UPDATE SET n = job_counters.n + excluded.n),"
    " task AS (INSERT INTO engine_tasks (sub_job_id, job_id, project_id, job_type, position,"
    " phase, due_at, payload, created_at)"
    " SELECT sub_job.id, :job_id, :project_id, :job_type, :position, 'run',"
    f" COALESCE({RULED_DUE_AT_SQL}, :due_at), :payload, :now FROM sub_job"
    " RETURNING sub_job_id)"
    " SELECT sub_job_id FROM task"
)
_encoder = msgspec.json.Encoder()
_NAME_CONSTRAINT = "uq_image_servers_project_name"


@cache
def lock_servers_statement(dialect: str, size: int) -> Statement:
    ids = ", ".join(f":id{i}" for i in range(size))
    lock = " FOR UPDATE" if dialect == "postgresql" else ""
    return Statement(
        f"SELECT {_COLUMNS} FROM image_servers"
        f" WHERE project_id = :project_id AND id IN ({ids}) ORDER BY id{lock}"
    )


# A page's columns, in the order of ServerListRow.
_LIST_COLUMNS = (
    "id, name, description, status, image_ref, authorize_accounts, server_group_id,"
    " app_group_id, aps_server_id, instance_id, image_id, enterprise_project_id,"
    " create_time, update_time"
)


def _server_conditions(dialect: str, by_name: bool, by_id: bool, by_project: bool) -> str:
    conditions = ["project_id = :project_id"]
    if by_name:
        # A plain, case-sensitive substring test: no LIKE wildcards to escape.
        find = "instr(name, :server_name)" if dialect == "sqlite" else "strpos(name, :server_name)"
        conditions.append(f"{find} > 0")
    if by_id:
        conditions.append("id = :server_id")
    if by_project:
        conditions.append("enterprise_project_id = :enterprise_project_id")
    return " AND ".join(conditions)


def _server_page(where: str) -> str:
    return (
        f" FROM (SELECT COUNT(*) AS total FROM image_servers WHERE {where}) AS c"
        f" LEFT JOIN (SELECT id FROM image_servers WHERE {where}"
        " ORDER BY id DESC LIMIT :limit OFFSET :offset) AS page ON 1 = 1"
        " LEFT JOIN image_servers AS s ON s.id = page.id"
    )


@cache
def list_servers_statement(dialect: str, by_name: bool, by_id: bool, by_project: bool) -> Statement:
    where = _server_conditions(dialect, by_name, by_id, by_project)
    columns = ", ".join(f"s.{c}" for c in _LIST_COLUMNS.split(", "))
    return Statement(f"SELECT c.total, {columns}{_server_page(where)} ORDER BY s.id DESC")


@cache
def list_server_texts_statement(by_name: bool, by_id: bool, by_project: bool) -> Statement:
    """``list_servers_statement`` on SQLite with the page as one value: the count and
    ``json_rows_sql``'s rows."""
    where = _server_conditions("sqlite", by_name, by_id, by_project)
    rows = json_rows_sql("s", _LIST_COLUMNS.removeprefix("id, "))
    return Statement(f"SELECT c.total, {rows}{_server_page(where)}")


def server_row(server: ImageServer) -> dict[str, Any]:
    return {
        "id": server.id,
        "project_id": server.project_id,
        "name": server.name,
        "description": server.description,
        "status": server.status.value,
        "image_ref": _encoder.encode(server.image_ref).decode(),
        "authorize_accounts": _encoder.encode(server.authorize_accounts).decode(),
        "server_group_id": server.server_group_id,
        "app_group_id": server.app_group_id,
        "aps_server_id": server.server_id,
        "instance_id": server.instance_id,
        "image_id": server.image_id,
        "enterprise_project_id": server.enterprise_project_id,
        "spec": _encoder.encode(dict(server.spec)).decode(),
        "create_time": server.create_time,
        "update_time": server.update_time,
    }


def create_params(server: ImageServer, plan: JobPlan, now: int) -> dict[str, Any]:
    """CREATE_SERVER_AT_ONCE's parameters: the rows a create writes in steps."""
    detail, (task,) = plan
    (sub_job,) = detail.sub_jobs
    job = detail.job
    params = server_row(server)
    params.update(
        job_id=job.id,
        job_type=job.job_type.value,
        job_status=job.status.value,
        job_begin_time=job.begin_time,
        job_end_time=job.end_time,
        sub_jobs_total=job.sub_jobs_total,
        sub_job_id=sub_job.id,
        sub_job_status=sub_job.status.value,
        sub_job_begin_time=sub_job.begin_time,
        sub_job_end_time=sub_job.end_time,
        resource_id=sub_job.resource_id,
        resource_name=sub_job.resource_name,
        error_code=sub_job.error_code,
        error_message=sub_job.error_message,
        stripe=random.randrange(COUNTER_STRIPES),  # noqa: S311 - spreads writers, not secret
        position=task.position,
        due_at=task.due_at,
        payload=_encoder.encode(dict(task.payload)).decode(),
    )
    params["now"] = now
    return params


def _server(row: Row, offset: int = 0) -> ImageServer:
    r = row[offset:]
    return ImageServer(
        id=r[0],
        project_id=r[1],
        name=r[2],
        description=r[3],
        status=ImageServerStatus(r[4]),
        image_ref=msgspec.json.decode(r[5], type=ImageRef),
        authorize_accounts=msgspec.json.decode(r[6], type=tuple[AccountInfo, ...]),
        server_group_id=r[7],
        app_group_id=r[8],
        server_id=r[9],
        instance_id=r[10],
        image_id=r[11],
        enterprise_project_id=r[12],
        spec=msgspec.json.decode(r[13]),
        create_time=r[14],
        update_time=r[15],
    )


def _is_unique_violation(exc: Exception) -> bool:
    return isinstance(exc, sqlite3.IntegrityError | asyncpg.UniqueViolationError)


def _name_collided(exc: Exception) -> bool:
    """Whether a unique violation is a server name's (else it is a new id's)."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return getattr(exc, "constraint_name", None) == _NAME_CONSTRAINT
    return "image_servers.name" in str(exc)


def _id_collision() -> IdCollision:
    return IdCollision("A new id collided with an existing one.")


class TaskQueue(Protocol):
    """Where a job's tasks go (the engine's queue, storage/engine_store.py)."""

    async def add_tasks(self, tx: Transaction, tasks: Sequence[NewTask], now: int) -> None: ...

    async def announce(self) -> None:
        """Wake the runners, here and in other processes: the tasks have committed."""


class SqlServerStore:
    """Image servers on SQLite or PostgreSQL, always scoped by project."""

    def __init__(self, database: Database, engine: TaskQueue) -> None:
        self._db = database
        self._engine = engine
        self._dialect = database.dialect
        # On PostgreSQL a create is one statement, which also finds the queue delay.
        self.resolves_queue_delay = self._dialect == "postgresql"

    async def create(self, server: ImageServer, plan: JobPlan, now: int) -> None:
        """Insert the server, its CREATE_SERVER job and the job's tasks, atomically."""
        try:
            if self.resolves_queue_delay:
                params = create_params(server, plan, now)
                if not await self._db.write(CREATE_SERVER_AT_ONCE, params):
                    raise _name_taken(server.name)
            else:
                await self._create_in_steps(server, plan, now)
        except Exception as exc:
            if _is_unique_violation(exc):
                if _name_collided(exc):  # a concurrent create of the same name won
                    raise _name_taken(server.name) from exc
                raise _id_collision() from exc
            raise
        await self._engine.announce()

    async def _create_in_steps(self, server: ImageServer, plan: JobPlan, now: int) -> None:
        async with self._db.transaction() as tx:
            taken = {"project_id": server.project_id, "name": server.name}
            if await tx.fetch(NAME_TAKEN, taken):
                raise _name_taken(server.name)
            await tx.execute(INSERT_SERVER, server_row(server))
            await self._start_job(tx, plan, now)

    async def _start_job(self, tx: Transaction, plan: JobPlan, now: int) -> None:
        job, tasks = plan
        await insert_jobs(tx, [job])
        if tasks:
            await self._engine.add_tasks(tx, tasks, now)

    async def get(self, project_id: str, server_id: int) -> ImageServer | None:
        rows = await self._db.fetch(GET_SERVER, {"project_id": project_id, "id": server_id})
        return _server(rows[0]) if rows else None

    async def list(
        self, project_id: str, server_filter: ServerFilter, page: PageRequest
    ) -> Page[ListedServer]:
        """The page as rows (ListImageServers encodes them without per-row objects); on
        SQLite as the rows' texts."""
        params: dict[str, Any] = {
            "project_id": project_id,
            "limit": page.limit,
            "offset": page.offset,
        }
        by_name = bool(server_filter.server_name)
        by_id = bool(server_filter.server_id)
        if by_id:
            numeric = parse_id(server_filter.server_id or "")
            if numeric is None:
                return Page(count=0, items=[])
            params["server_id"] = numeric
        if by_name:
            params["server_name"] = server_filter.server_name
        by_project = server_filter.enterprise_project_id is not None
        if by_project:
            params["enterprise_project_id"] = server_filter.enterprise_project_id or "0"
        sqlite = self._dialect == "sqlite"
        if sqlite:
            statement = list_server_texts_statement(by_name, by_id, by_project)
        else:
            statement = list_servers_statement(self._dialect, by_name, by_id, by_project)
        # A deep page, or a filter that tests every server of the project (no index
        # serves a substring): read where it holds up no other caller.
        if not by_id and (page.offset >= self._db.deep_offset or by_name or by_project):
            rows = await self._db.fetch_deep(statement, statement.args(params))
        else:
            rows = await self._db.fetch(statement, params)
        if sqlite:
            ((count, texts),) = rows
            return Page(count, [] if texts is None else row_texts(texts))
        listed = cast("list[ListedServer]", [row[1:] for row in rows if row[1] is not None])
        return Page(rows[0][0], listed)

    async def update(self, project_id: str, server_id: int, update: ServerUpdate, now: int) -> None:
        params = {
            "project_id": project_id,
            "id": server_id,
            "name": update.name,
            "description": update.description,
            "now": now,
        }
        try:
            async with self._db.transaction() as tx:
                if update.name is not None:
                    taken = await tx.fetch(
                        NAME_TAKEN, {"project_id": project_id, "name": update.name}
                    )
                    if taken and taken[0][0] != server_id:
                        raise _name_taken(update.name)
                if not await tx.fetch(UPDATE_SERVER, params):
                    raise _not_found(server_id)
        except Exception as exc:
            if _is_unique_violation(exc):
                raise _name_taken(update.name or "") from exc
            raise

    async def start_deletion(
        self,
        project_id: str,
        server_ids: Sequence[int],
        plan: Callable[[Sequence[ImageServer]], JobPlan],
        now: int,
    ) -> JobDetail:
        """Mark the servers DELETING and start their DELETE_SERVER job; unknown ids and
        servers already being deleted are skipped, CREATING and BUILDING ones refused."""
        ids = sorted(set(server_ids))
        return await self._started(self._start_deletion(project_id, ids, plan, now))

    async def _start_deletion(
        self,
        project_id: str,
        ids: Sequence[int],
        plan: Callable[[Sequence[ImageServer]], JobPlan],
        now: int,
    ) -> JobPlan:
        async with self._db.transaction() as tx:
            found: list[ImageServer] = []
            if ids:
                params: dict[str, Any] = {"project_id": project_id}
                params.update({f"id{i}": server_id for i, server_id in enumerate(ids)})
                statement = lock_servers_statement(self._dialect, len(ids))
                found = [_server(row) for row in await tx.fetch(statement, params)]
            busy = [s for s in found if s.status in UNDELETABLE_STATUSES]
            if busy:
                names = ", ".join(f"{s.id} ({s.status.value})" for s in busy)
                raise InvalidParameter(
                    "items",
                    f"contains image servers being created or built, which cannot be deleted"
                    f" now: {names}",
                )
            deletable = [s for s in found if s.status not in SKIPPED_BY_DELETE]
            for server in deletable:
                status = {"id": server.id, "status": ImageServerStatus.DELETING.value, "now": now}
                await tx.execute(SET_STATUS, status)
            job_plan = plan(deletable)
            await self._start_job(tx, job_plan, now)
        return job_plan

    async def start_image_build(
        self,
        project_id: str,
        server_id: int,
        plan: Callable[[ImageServer], JobPlan],
        now: int,
    ) -> JobDetail:
        """Mark the server BUILDING and start its CREATE_SERVER_IMAGE job."""
        return await self._started(self._start_image_build(project_id, server_id, plan, now))

    async def _started(self, starting: Awaitable[JobPlan]) -> JobDetail:
        """The job that ``starting`` (a transaction) starts; the runner woken after its
        commit. A unique violation there is one of the new ids colliding."""
        try:
            job_plan = await starting
        except Exception as exc:
            if _is_unique_violation(exc):
                raise _id_collision() from exc
            raise
        await self._engine.announce()
        return job_plan[0]

    async def _start_image_build(
        self,
        project_id: str,
        server_id: int,
        plan: Callable[[ImageServer], JobPlan],
        now: int,
    ) -> JobPlan:
        async with self._db.transaction() as tx:
            rows = await tx.fetch(
                LOCK_SERVER[self._dialect], {"project_id": project_id, "id": server_id}
            )
            if not rows:
                raise _not_found(server_id)
            server = _server(rows[0])
            if server.status not in IMAGE_SOURCE_STATUSES:
                raise ServerBusy(
                    f"The image server {server_id} is {server.status.value}: an image can"
                    " only be built from an ACTIVE or BUILT image server."
                )
            building = {"id": server_id, "status": ImageServerStatus.BUILDING.value, "now": now}
            await tx.execute(SET_STATUS, building)
            job_plan = plan(server)
            await self._start_job(tx, job_plan, now)
        return job_plan


def _name_taken(name: str) -> ServerNameTaken:
    return ServerNameTaken(f"An image server named {name!r} already exists in this project.")


def _not_found(server_id: int | str) -> ServerNotFound:
    return ServerNotFound(f"The image server {server_id} does not exist.")
