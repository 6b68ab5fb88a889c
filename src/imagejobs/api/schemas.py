"""Wire bodies as msgspec structs: they encode responses, decode request bodies, and are
the source of the OpenAPI schemas. Field names and enum spellings follow spec §3."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Annotated, TypeVar

import msgspec
from msgspec import Meta, Struct

from imagejobs.domain.enums import JobStatus, JobType, SubJobStatus
from imagejobs.domain.records import (
    Job,
    JobDetail,
    ListedJob,
    ListedSubJob,
    SubJob,
    job_row,
    sub_job_row,
)
from imagejobs.domain.times import format_optional_time, format_time

# What each pattern of a request body asks for, in words: a value that does not match is
# refused naming this rule (api/endpoint.py), not the regular expression, which a person
# filling a form or a flag cannot be expected to read. OpenAPI still shows the pattern.
PATTERN_RULES: dict[str, str] = {}


def pattern_rule(pattern: str, rule: str) -> str:
    """``pattern``, with ``rule`` ("1 to 64 letters, …") recorded as what it asks for."""
    PATTERN_RULES[pattern] = rule
    return pattern


DateTime = Annotated[
    str,
    Meta(
        description="UTC time with milliseconds, e.g. 2022-03-07T10:40:43.858Z",
        extra_json_schema={"format": "date-time"},
    ),
]


class ImageJobInfo(Struct, kw_only=True):
    id: Annotated[str, Meta(description="Job ID: 18 digits.")]
    job_type: JobType
    begin_time: DateTime
    end_time: DateTime | None = None
    status: JobStatus
    sub_jobs_total: Annotated[int, Meta(description="Total number of sub-jobs.")]


class ListImageJobsResponse(Struct):
    count: Annotated[int, Meta(description="Total number of jobs matching the filter.")]
    items: list[ImageJobInfo]


class ImageJobResourceInfo(Struct):
    resource_id: str
    resource_name: str


class ImageJobExecuteInfo(Struct):
    error_code: str
    error_message: str


class ImageJobDetailInfo(Struct, kw_only=True):
    id: str
    job_type: JobType
    job_resource_info: ImageJobResourceInfo
    begin_time: DateTime
    end_time: DateTime | None = None
    status: SubJobStatus
    job_execute_info: ImageJobExecuteInfo
    project_id: str
    job_id: str


class ShowImageJobResponse(ImageJobInfo, kw_only=True):
    sub_jobs: list[ImageJobDetailInfo]


class ListImageSubJobsResponse(Struct):
    count: int
    items: list[ImageJobDetailInfo]


class CountImageSubJobsResponse(Struct):
    count: int


SubJobId = Annotated[str, Meta(min_length=1, max_length=128)]


class StringSet(Struct, forbid_unknown_fields=False):
    items: Annotated[list[SubJobId], Meta(min_length=1, max_length=20)]


class ErrorResponse(Struct):
    error_code: str
    error_msg: str


# --- records -> wire ---------------------------------------------------------------------


def job_info(job: Job) -> ImageJobInfo:
    end_time = job.end_time  # inline, not format_optional_time: ten items a page
    return ImageJobInfo(
        id=str(job.id),
        job_type=job.job_type,
        begin_time=format_time(job.begin_time),
        end_time=None if end_time is None else format_time(end_time),
        status=job.status,
        sub_jobs_total=job.sub_jobs_total,
    )


# Enum values as stored -> the same text; a lookup that refuses a value the wire does not
# know (KeyError, a 500), as JobType(value) would.
_JOB_TYPES = {t.value: t.value for t in JobType}
_JOB_STATUSES = {s.value: s.value for s in JobStatus}
# Each distinct job row's JSON text. The key is the whole row, so an entry is never
# stale; lists are read again and again (consoles refresh, SDKs poll their jobs) and a
# finished job's row never changes, so most rows were sent before, and a lookup costs a
# fifth of formatting one. Emptied when full, so it stays small (~3 MB).
_ROW_JSON: dict[ListedJob, str] = {}
_ROW_JSON_MAX = 8192


_Row = TypeVar("_Row", bound=Hashable)


class PageBodies:
    """Recent pages' bodies by their whole content: (count, rows[, project]). On SQLite a
    repeated page's rows come as the same tuple (storage.job_store.PageRows), so a page
    sent before is one lookup, not a lookup a row, a join and an encode (~4% of a list
    request). The key is everything the body is made of, so a body is never stale.
    Only tuples are kept: a list (PostgreSQL's and deep pages) is read once. Bounded:
    emptied when full, a large body not kept."""

    _MAX_PAGES = 256
    _MAX_BODY = 16_384

    def __init__(self) -> None:
        self._bodies: dict[tuple[object, ...], bytes] = {}

    def get(self, key: tuple[object, ...] | None) -> bytes | None:
        return None if key is None else self._bodies.get(key)

    def keep(self, key: tuple[object, ...] | None, body: bytes) -> bytes:
        if key is not None and len(body) <= self._MAX_BODY:
            if len(self._bodies) >= self._MAX_PAGES:
                self._bodies.clear()
            self._bodies[key] = body
        return body

    def page(
        self,
        count: int,
        rows: Sequence[_Row],
        row_json: dict[_Row, str],
        build: Callable[[_Row], str],
    ) -> bytes:
        """``{"count":count,"items":[...]}`` of ``rows``, each row's JSON from ``row_json``
        (its cache) or ``build``; remembered by (count, rows)."""
        key = (count, rows) if type(rows) is tuple else None
        body = self.get(key)
        if body is None:
            cached = row_json.get
            items = ",".join([cached(row) or build(row) for row in rows])
            body = self.keep(key, f'{{"count":{count},"items":[{items}]}}'.encode())
        return body


_JOB_PAGES = PageBodies()


def job_page_json(count: int, rows: Sequence[ListedJob]) -> bytes:
    """``encoder.encode(ListImageJobsResponse(count, [job_info(...) ...]))``, byte for
    byte, straight from the rows: ListImageJobs is the hot path, and building a ``Job``
    and an ``ImageJobInfo`` per row cost a fifth of its request."""
    return _JOB_PAGES.page(count, rows, _ROW_JSON, _job_row_json)


def _job_row_json(row: ListedJob) -> str:
    # Nothing needs JSON escaping: ids and totals are integers (INTEGER columns), types
    # and statuses checked enum values, times formatted digits.
    job_id, job_type, status, begin_time, end_time, sub_jobs_total = job_row(row)
    end = "null" if end_time is None else f'"{format_time(end_time)}"'
    text = (
        f'{{"id":"{job_id}","job_type":"{_JOB_TYPES[job_type]}",'
        f'"begin_time":"{format_time(begin_time)}","end_time":{end},'
        f'"status":"{_JOB_STATUSES[status]}","sub_jobs_total":{sub_jobs_total}}}'
    )
    if len(_ROW_JSON) >= _ROW_JSON_MAX:
        _ROW_JSON.clear()
    _ROW_JSON[row] = text
    return text


def sub_job_info(sub_job: SubJob, project_id: str) -> ImageJobDetailInfo:
    """``project_id``: the request's (the sub-job's record carries its storage key)."""
    return ImageJobDetailInfo(
        id=str(sub_job.id),
        job_type=sub_job.job_type,
        job_resource_info=ImageJobResourceInfo(sub_job.resource_id, sub_job.resource_name),
        begin_time=format_time(sub_job.begin_time),
        end_time=format_optional_time(sub_job.end_time),
        status=sub_job.status,
        job_execute_info=ImageJobExecuteInfo(sub_job.error_code, sub_job.error_message),
        project_id=project_id,
        job_id=str(sub_job.job_id),
    )


# Each sub-job row's JSON, around where the request's project id goes (the row's own
# project is its storage key): (up to '"project_id":', from the comma after it).
_SUB_JOB_JSON: dict[ListedSubJob, tuple[str, str]] = {}
_SUB_JOB_PAGES = PageBodies()


def sub_job_page_json(count: int, rows: Sequence[ListedSubJob], project_id: str) -> bytes:
    """``encoder.encode(ListImageSubJobsResponse(count, [sub_job_info(...) ...]))``, byte
    for byte, straight from the rows, as ``job_page_json``."""
    key = (count, rows, project_id) if type(rows) is tuple else None
    body = _SUB_JOB_PAGES.get(key)
    if body is None:
        project = encoder.encode(project_id).decode()
        cached = _SUB_JOB_JSON.get
        parts = [cached(row) or _sub_job_row_json(row) for row in rows]
        items = ",".join([f"{head}{project}{tail}" for head, tail in parts])
        body = _SUB_JOB_PAGES.keep(key, f'{{"count":{count},"items":[{items}]}}'.encode())
    return body


def _sub_job_row_json(row: ListedSubJob) -> tuple[str, str]:
    r = sub_job_row(row)
    sub_job = SubJob(r[0], r[1], "", JobType(r[2]), SubJobStatus(r[3]), *r[4:])
    # Encoded with an empty project id, the only '"project_id":""' outside a string
    # (one inside has its quotes escaped), near the end: cut there.
    text = encoder.encode(sub_job_info(sub_job, "")).decode()
    head, _, tail = text.rpartition('"project_id":""')
    if len(_SUB_JOB_JSON) >= _ROW_JSON_MAX:
        _SUB_JOB_JSON.clear()
    parts = _SUB_JOB_JSON[row] = (head + '"project_id":', tail)
    return parts


def job_detail(detail: JobDetail, project_id: str) -> ShowImageJobResponse:
    job = detail.job
    return ShowImageJobResponse(
        id=str(job.id),
        job_type=job.job_type,
        begin_time=format_time(job.begin_time),
        end_time=format_optional_time(job.end_time),
        status=job.status,
        sub_jobs_total=job.sub_jobs_total,
        sub_jobs=[sub_job_info(s, project_id) for s in detail.sub_jobs],
    )


encoder = msgspec.json.Encoder()
