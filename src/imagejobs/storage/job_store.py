"""The job store: every SQL statement that reads or writes jobs, sub-jobs and counters.

Each list answers with one statement, so its ``count`` and its page come from one
snapshot. Counts come from ``job_counters`` (summed over a counter's stripes, kept in the
same transaction as every row change), and pages are a deferred join over a covering
index: the page's ids are found in the index alone, then only those rows are read. The
offset is still skipped row by row in that index (~0.1 us a row on SQLite): a page at
``Database.deep_offset`` or deeper is read with ``fetch_deep``, which holds up no other
caller while it runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, cast

from imagejobs.domain.enums import QUERYABLE_JOB_TYPES, JobStatus, JobType, SubJobStatus
from imagejobs.domain.records import (
    ROW_SEPARATOR,
    Job,
    JobDetail,
    JobFilter,
    ListedJob,
    ListedSubJob,
    Page,
    PageRequest,
    RowText,
    SubJob,
    SubJobFilter,
)
from imagejobs.storage.database import Database, Row, Statement, Transaction

_UNFINISHED_SQL = ", ".join(f"'{s.value}'" for s in (JobStatus.WAITING, JobStatus.RUNNING))
_JOB_COLUMNS = "id, job_type, status, begin_time, end_time, sub_jobs_total"
_SUB_JOB_COLUMNS = (
    "id, job_id, job_type, status, begin_time, end_time,"
    " resource_id, resource_name, error_code, error_message"
)

INSERT_JOB = Statement(
    "INSERT INTO jobs (id, project_id, job_type, status, begin_time, end_time, sub_jobs_total)"
    " VALUES (:id, :project_id, :job_type, :status, :begin_time, :end_time, :sub_jobs_total)"
)
INSERT_SUB_JOB = Statement(
    "INSERT INTO sub_jobs (id, job_id, project_id, job_type, status, begin_time, end_time,"
    " resource_id, resource_name, error_code, error_message)"
    " VALUES (:id, :job_id, :project_id, :job_type, :status, :begin_time, :end_time,"
    " :resource_id, :resource_name, :error_code, :error_message)"
)
ADD_TO_COUNTER = Statement(
    "INSERT INTO job_counters (project_id, scope, job_type, status, stripe, n)"
    " VALUES (:project_id, :scope, :job_type, :status, :stripe, :delta)"
    " ON CONFLICT (project_id, scope, job_type, status, stripe)"
    " DO UPDATE SET n = job_counters.n + excluded.n"
)
SUBTRACT_SUB_JOBS_TOTAL = Statement(
    "UPDATE jobs SET sub_jobs_total = sub_jobs_total - :removed"
    " WHERE project_id = :project_id AND id = :job_id"
)
GET_JOB_WITH_SUB_JOBS = Statement(
    "SELECT j.id, j.job_type, j.status, j.begin_time, j.end_time, j.sub_jobs_total,"
    " s.id, s.job_type, s.status, s.begin_time, s.end_time,"
    " s.resource_id, s.resource_name, s.error_code, s.error_message"
    " FROM jobs AS j LEFT JOIN sub_jobs AS s ON s.job_id = j.id"
    " WHERE j.project_id = :project_id AND j.id = :job_id"
    " ORDER BY s.id"
)


def _total(scope_filter: str) -> str:
    return (
        "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS total FROM job_counters"
        f" WHERE project_id = :project_id AND {scope_filter}"
    )


def _in_list(column: str, prefix: str, size: int) -> str:
    return f"{column} IN ({', '.join(f':{prefix}{i}' for i in range(size))})"


def _page_join(table: str, alias: str, where: str, dialect: str) -> str:
    """Join the page's rows: their ids come from the covering index alone (a deferred
    join), then only those rows are read. A count row without a page still comes back."""
    page = f"SELECT id FROM {table} WHERE {where} ORDER BY id DESC LIMIT :limit OFFSET :offset"
    if dialect == "postgresql":
        # As a derived table PostgreSQL re-plans the query on every call (3x the execution
        # time); as an array of ids the plan is fixed and cheap.
        return f" LEFT JOIN {table} AS {alias} ON {alias}.id = ANY(ARRAY({page}))"
    return (
        f" LEFT JOIN ({page}) AS page ON 1 = 1 LEFT JOIN {table} AS {alias} ON {alias}.id = page.id"
    )


@cache
def list_job_texts_statement(with_status: bool) -> Statement:
    """``list_jobs_statement`` on SQLite with the page as one value: the count, each row's
    text (``JobRowText``) joined by ";" in no set order (``group_concat``'s is arbitrary:
    the reader sorts), and whether a row is unfinished (1, else 0; NULL for no row). The
    sqlite3 module releases and takes the GIL around every column it reads: three values
    instead of seven a row cut ~4% of a list request's instructions."""
    status = " AND status = :status" if with_status else ""
    total = _total("scope = 'job' AND job_type = :job_type" + status)
    where = f"project_id = :project_id AND job_type = :job_type{status}"
    # The id zero-padded to 19 digits (an INTEGER's most; ids are positive): the rows'
    # texts then sort as their ids do. One printf a row, not ten ||: each || allocated a
    # new string, ~33k of the statement's ~210k instructions (NULL end_time prints as '').
    # The FILTER drops the page join's all-NULL row, which || had made NULL.
    row = "printf('%019d,%s,%s,%d,%s,%d', j.id, j.job_type, j.status, j.begin_time,"
    row += " j.end_time, j.sub_jobs_total)"
    return Statement(
        f"SELECT c.total, group_concat({row}, ';') FILTER (WHERE j.id IS NOT NULL),"
        f" MAX(j.status IN ({_UNFINISHED_SQL}))"
        f" FROM ({total}) AS c"
        f"{_page_join('jobs', 'j', where, 'sqlite')}"
    )


def json_rows_sql(alias: str, columns: str) -> str:
    """SQLite: a page's rows as one value (``list_job_texts_statement``'s way, for rows
    holding any text), each a ``RowText`` of ``alias``'s id and ``columns``, joined by
    ROW_SEPARATOR in no set order (``row_texts`` sorts them); NULL without a row."""
    values = ", ".join(f"{alias}.{column}" for column in columns.split(", "))
    row = f"json_array(printf('%019d', {alias}.id), {values})"
    # The page join gives one all-NULL row for an empty page: json_array of it is not NULL.
    return f"group_concat({row}, char({ord(ROW_SEPARATOR)})) FILTER (WHERE {alias}.id IS NOT NULL)"


class PageRows:
    """A page read as one value (``list_job_texts_statement``, ``json_rows_sql``) as its
    rows, newest first (as ORDER BY id DESC), remembered by that value. Lists are read
    again and again (consoles refresh, SDKs poll), and the value is the whole page, so a
    remembered split and sort is never stale; repeated pages also hand on the same row
    strings, whose hashes the per-row JSON caches then need not compute again. Bounded:
    emptied when full, and a large page is not kept."""

    _MAX_PAGES = 256
    _MAX_TEXT = 8192  # characters: 10 rows are ~700 (jobs), ~3,000 (sub-jobs), ~7,000 (servers)

    def __init__(self, separator: str) -> None:
        self._separator = separator
        self._pages: dict[str, tuple[str, ...]] = {}

    def rows(self, joined: str) -> tuple[str, ...]:
        rows = self._pages.get(joined)
        if rows is None:
            listed = joined.split(self._separator)
            listed.sort(reverse=True)  # zero-padded ids: text order is id order
            rows = tuple(listed)
            if len(joined) <= self._MAX_TEXT:
                if len(self._pages) >= self._MAX_PAGES:
                    self._pages.clear()
                self._pages[joined] = rows
        return rows


_JOB_PAGES = PageRows(";")
_JSON_PAGES = PageRows(ROW_SEPARATOR)


def row_texts(joined: str) -> tuple[RowText, ...]:
    """``json_rows_sql``'s value as the page's rows, newest first (as ORDER BY id DESC)."""
    return _JSON_PAGES.rows(joined)


@cache
def list_sub_job_texts_statement(
    type_count: int, with_status: bool, with_job_id: bool
) -> Statement:
    """``list_sub_jobs_statement`` on SQLite with the page as one value: the count and
    ``json_rows_sql``'s rows."""
    where = _sub_job_conditions(type_count, with_status, with_job_id)
    count = count_sub_jobs_statement(type_count, with_status, with_job_id).text
    rows = json_rows_sql("s", _SUB_JOB_COLUMNS.removeprefix("id, "))
    return Statement(
        f"SELECT c.total, {rows} FROM ({count}) AS c{_page_join('sub_jobs', 's', where, 'sqlite')}"
    )


@cache
def list_jobs_statement(with_status: bool, dialect: str = "sqlite") -> Statement:
    status = " AND status = :status" if with_status else ""
    total = _total("scope = 'job' AND job_type = :job_type" + status)
    where = f"project_id = :project_id AND job_type = :job_type{status}"
    return Statement(
        f"SELECT c.total, j.{_JOB_COLUMNS.replace(', ', ', j.')}"
        f" FROM ({total}) AS c"
        f"{_page_join('jobs', 'j', where, dialect)}"
        " ORDER BY j.id DESC"
    )


def _sub_job_conditions(type_count: int, with_status: bool, with_job_id: bool) -> str:
    conditions = ["project_id = :project_id", _in_list("job_type", "job_type", type_count)]
    if with_status:
        conditions.append("status = :status")
    if with_job_id:
        conditions.append("job_id = :job_id")
    return " AND ".join(conditions)


@cache
def count_sub_jobs_statement(type_count: int, with_status: bool, with_job_id: bool) -> Statement:
    if with_job_id:
        # A job has a handful of sub-jobs: counting its rows is cheap and exact.
        where = _sub_job_conditions(type_count, with_status, with_job_id)
        return Statement(f"SELECT COUNT(*) AS total FROM sub_jobs WHERE {where}")
    status = " AND status = :status" if with_status else ""
    types = _in_list("job_type", "job_type", type_count)
    return Statement(_total(f"scope = 'sub_job' AND {types}{status}"))


@cache
def list_sub_jobs_statement(
    type_count: int, with_status: bool, with_job_id: bool, dialect: str = "sqlite"
) -> Statement:
    where = _sub_job_conditions(type_count, with_status, with_job_id)
    columns = ", ".join(f"s.{c}" for c in _SUB_JOB_COLUMNS.split(", "))
    count = count_sub_jobs_statement(type_count, with_status, with_job_id).text
    return Statement(
        f"SELECT c.total, {columns}"
        f" FROM ({count}) AS c"
        f"{_page_join('sub_jobs', 's', where, dialect)}"
        " ORDER BY s.id DESC"
    )


@cache
def delete_finished_sub_jobs_statement(id_count: int) -> Statement:
    return Statement(
        "DELETE FROM sub_jobs WHERE project_id = :project_id"
        f" AND {_in_list('id', 'id', id_count)} AND status IN ('SUCCESS', 'FAILED')"
        " RETURNING job_id, job_type, status"
    )


# Enum members by value: a dict lookup, where calling JobType(value) costs far more.
_JOB_TYPE: dict[str, JobType] = {t.value: t for t in JobType}
_JOB_STATUS: dict[str, JobStatus] = {s.value: s for s in JobStatus}
_SUB_JOB_STATUS: dict[str, SubJobStatus] = {s.value: s for s in SubJobStatus}


def _job(project_id: str, row: Row, offset: int = 0) -> Job:
    return Job(
        row[offset],
        project_id,
        _JOB_TYPE[row[offset + 1]],
        _JOB_STATUS[row[offset + 2]],
        row[offset + 3],
        row[offset + 4],
        row[offset + 5],
    )


def _sub_job(project_id: str, row: Row, offset: int, job_id: int | None = None) -> SubJob:
    # With ``job_id`` given the row has no job_id column (it is the parent's).
    shift = 0 if job_id is None else -1
    return SubJob(
        id=row[offset],
        job_id=row[offset + 1] if job_id is None else job_id,
        project_id=project_id,
        job_type=_JOB_TYPE[row[offset + 2 + shift]],
        status=_SUB_JOB_STATUS[row[offset + 3 + shift]],
        begin_time=row[offset + 4 + shift],
        end_time=row[offset + 5 + shift],
        resource_id=row[offset + 6 + shift],
        resource_name=row[offset + 7 + shift],
        error_code=row[offset + 8 + shift],
        error_message=row[offset + 9 + shift],
    )


CounterKey = tuple[str, str, str, str]  # project_id, scope, job_type, status


async def apply_counter_deltas(tx: Transaction, deltas: Counter[CounterKey]) -> None:
    """Apply counter changes in key order, so concurrent writers never deadlock."""
    stripe = tx.counter_stripe  # one stripe for all: the key order still holds
    rows = [
        {"project_id": p, "scope": s, "job_type": t, "status": st, "stripe": stripe, "delta": d}
        for (p, s, t, st), d in sorted(deltas.items())
        if d
    ]
    if rows:
        await tx.execute_many(ADD_TO_COUNTER, rows)


class SqlJobStore:
    """``JobStore`` on SQLite or PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def list_jobs(
        self, project_id: str, job_filter: JobFilter, page: PageRequest
    ) -> Page[Job]:
        params: dict[str, Any] = {
            "project_id": project_id,
            "job_type": job_filter.job_type.value,
            "limit": page.limit,
            "offset": page.offset,
        }
        if job_filter.status is not None:
            params["status"] = job_filter.status.value
        statement = list_jobs_statement(job_filter.status is not None, self._db.dialect)
        if page.offset >= self._db.deep_offset:
            rows = await self._db.fetch_deep(statement, statement.args(params))
        else:
            rows = await self._db.fetch(statement, params)
        items = [_job(project_id, row, 1) for row in rows if row[1] is not None]
        return Page(count=rows[0][0], items=items)

    async def list_job_rows(
        self, project_id: str, job_type: str, status: str | None, offset: int, limit: int
    ) -> Page[ListedJob]:
        """``list_jobs`` as rows, for the ListImageJobs hot path (no per-row objects); on
        SQLite a page short of ``deep_offset`` as the rows' texts."""
        if status is None:
            args: tuple[Any, ...] = (project_id, job_type, limit, offset)
        else:
            args = (project_id, job_type, status, limit, offset)
        if offset < self._db.deep_offset and self._db.dialect == "sqlite":
            ((count, texts, unfinished),) = await self._db.fetch_args(
                list_job_texts_statement(status is not None), args
            )
            if texts is None:  # no row on the page
                return Page(count, [], all_finished=True)
            return Page(count, _JOB_PAGES.rows(texts), all_finished=not unfinished)
        statement = list_jobs_statement(status is not None, self._db.dialect)
        if offset < self._db.deep_offset:
            rows = await self._db.fetch_args(statement, args)
        else:
            rows = await self._db.fetch_deep(statement, args)
        items = cast("list[ListedJob]", [row[1:] for row in rows if row[1] is not None])
        return Page(rows[0][0], items)

    async def get_job(self, project_id: str, job_id: int) -> JobDetail | None:
        rows = await self._db.fetch(
            GET_JOB_WITH_SUB_JOBS, {"project_id": project_id, "job_id": job_id}
        )
        if not rows:
            return None
        job = _job(project_id, rows[0])
        sub_jobs = [_sub_job(project_id, row, 6, job.id) for row in rows if row[6] is not None]
        return JobDetail(job=job, sub_jobs=sub_jobs)

    @staticmethod
    def _sub_job_params(project_id: str, sub_job_filter: SubJobFilter) -> dict[str, Any]:
        types = sub_job_filter.job_types or QUERYABLE_JOB_TYPES
        params: dict[str, Any] = {"project_id": project_id}
        params.update({f"job_type{i}": t.value for i, t in enumerate(types)})
        if sub_job_filter.status is not None:
            params["status"] = sub_job_filter.status.value
        if sub_job_filter.job_id is not None:
            params["job_id"] = sub_job_filter.job_id
        return params

    @staticmethod
    def _sub_job_args(
        project_id: str, sub_job_filter: SubJobFilter, page: PageRequest
    ) -> list[Any]:
        """``_sub_job_params`` and the page's limit and offset as the list statements take
        them, in order (no dict of named values built and read back on every request;
        test_job_page checks the order against the statements' own)."""
        types = sub_job_filter.job_types or QUERYABLE_JOB_TYPES
        args: list[Any] = [project_id, *[t.value for t in types]]
        if sub_job_filter.status is not None:
            args.append(sub_job_filter.status.value)
        if sub_job_filter.job_id is not None:
            args.append(sub_job_filter.job_id)
        args += (page.limit, page.offset)
        return args

    @staticmethod
    def _shape(sub_job_filter: SubJobFilter) -> tuple[int, bool, bool]:
        return (
            len(sub_job_filter.job_types or QUERYABLE_JOB_TYPES),
            sub_job_filter.status is not None,
            sub_job_filter.job_id is not None,
        )

    async def list_sub_jobs(
        self, project_id: str, sub_job_filter: SubJobFilter, page: PageRequest
    ) -> Page[SubJob]:
        if sub_job_filter.impossible:
            return Page(count=0, items=[])
        params = self._sub_job_params(project_id, sub_job_filter)
        params["limit"] = page.limit
        params["offset"] = page.offset
        statement = list_sub_jobs_statement(*self._shape(sub_job_filter), self._db.dialect)
        # One job's sub-jobs are a handful: with job_id, any offset is cheap.
        if page.offset >= self._db.deep_offset and sub_job_filter.job_id is None:
            rows = await self._db.fetch_deep(statement, statement.args(params))
        else:
            rows = await self._db.fetch(statement, params)
        items = [_sub_job(project_id, row, 1) for row in rows if row[1] is not None]
        return Page(count=rows[0][0], items=items)

    async def list_sub_job_rows(
        self, project_id: str, sub_job_filter: SubJobFilter, page: PageRequest
    ) -> Page[ListedSubJob]:
        """``list_sub_jobs`` as rows, for ListImageSubJobs (no per-row objects); on SQLite
        a page read inline as the rows' texts."""
        if sub_job_filter.impossible:
            return Page(count=0, items=[])
        shape = self._shape(sub_job_filter)
        # One job's sub-jobs are a handful: with job_id, any offset is cheap.
        deep = page.offset >= self._db.deep_offset and sub_job_filter.job_id is None
        if not deep and self._db.dialect == "sqlite":
            ((count, texts),) = await self._db.fetch_args(
                list_sub_job_texts_statement(*shape),
                self._sub_job_args(project_id, sub_job_filter, page),
            )
            return Page(count, [] if texts is None else row_texts(texts))
        params = self._sub_job_params(project_id, sub_job_filter)
        params["limit"] = page.limit
        params["offset"] = page.offset
        statement = list_sub_jobs_statement(*shape, self._db.dialect)
        if deep:
            rows = await self._db.fetch_deep(statement, statement.args(params))
        else:
            rows = await self._db.fetch(statement, params)
        listed = cast("list[ListedSubJob]", [row[1:] for row in rows if row[1] is not None])
        return Page(rows[0][0], listed)

    async def count_sub_jobs(self, project_id: str, sub_job_filter: SubJobFilter) -> int:
        if sub_job_filter.impossible:
            return 0
        rows = await self._db.fetch(
            count_sub_jobs_statement(*self._shape(sub_job_filter)),
            self._sub_job_params(project_id, sub_job_filter),
        )
        total: int = rows[0][0]
        return total

    async def delete_finished_sub_jobs(self, project_id: str, sub_job_ids: Sequence[int]) -> int:
        ids = sorted(set(sub_job_ids))
        if not ids:
            return 0
        params: dict[str, Any] = {"project_id": project_id}
        params.update({f"id{i}": sub_job_id for i, sub_job_id in enumerate(ids)})
        async with self._db.transaction() as tx:
            deleted = await tx.fetch(delete_finished_sub_jobs_statement(len(ids)), params)
            removed_per_job = Counter(row[0] for row in deleted)
            for job_id, removed in sorted(removed_per_job.items()):
                await tx.execute(
                    SUBTRACT_SUB_JOBS_TOTAL,
                    {"project_id": project_id, "job_id": job_id, "removed": removed},
                )
            await apply_counter_deltas(tx, _negated_counts(project_id, deleted))
        return len(deleted)

    async def insert_jobs(self, jobs: Sequence[JobDetail]) -> None:
        async with self._db.transaction() as tx:
            await insert_jobs(tx, jobs)


def _negated_counts(project_id: str, deleted: Iterable[Row]) -> Counter[CounterKey]:
    deltas: Counter[CounterKey] = Counter()
    for row in deleted:
        deltas[(project_id, "sub_job", row[1], row[2])] -= 1
    return deltas


def job_row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "project_id": job.project_id,
        "job_type": job.job_type.value,
        "status": job.status.value,
        "begin_time": job.begin_time,
        "end_time": job.end_time,
        "sub_jobs_total": job.sub_jobs_total,
    }


def sub_job_row(sub_job: SubJob) -> dict[str, Any]:
    return {
        "id": sub_job.id,
        "job_id": sub_job.job_id,
        "project_id": sub_job.project_id,
        "job_type": sub_job.job_type.value,
        "status": sub_job.status.value,
        "begin_time": sub_job.begin_time,
        "end_time": sub_job.end_time,
        "resource_id": sub_job.resource_id,
        "resource_name": sub_job.resource_name,
        "error_code": sub_job.error_code,
        "error_message": sub_job.error_message,
    }


def counter_deltas_for(jobs: Iterable[JobDetail]) -> Counter[CounterKey]:
    deltas: Counter[CounterKey] = Counter()
    for detail in jobs:
        job = detail.job
        deltas[(job.project_id, "job", job.job_type.value, job.status.value)] += 1
        for sub in detail.sub_jobs:
            deltas[(sub.project_id, "sub_job", sub.job_type.value, sub.status.value)] += 1
    return deltas


async def insert_jobs(tx: Transaction, jobs: Sequence[JobDetail]) -> None:
    """Insert jobs, their sub-jobs and the matching counter increments in ``tx``."""
    await tx.execute_many(INSERT_JOB, [job_row(d.job) for d in jobs])
    sub_rows = [sub_job_row(s) for d in jobs for s in d.sub_jobs]
    if sub_rows:
        await tx.execute_many(INSERT_SUB_JOB, sub_rows)
    await apply_counter_deltas(tx, counter_deltas_for(jobs))
