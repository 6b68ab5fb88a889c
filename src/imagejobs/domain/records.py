"""Immutable records the services hand out: jobs, sub-jobs and pages of them.

Jobs and sub-jobs are NamedTuples: as immutable as frozen dataclasses, but built by
``tuple.__new__``, several times cheaper on the list path, where every page builds ten.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from imagejobs.domain.enums import JobStatus, JobType, SubJobStatus

T = TypeVar("T")


class Job(NamedTuple):
    id: int
    project_id: str
    job_type: JobType
    status: JobStatus
    begin_time: int  # epoch milliseconds
    end_time: int | None
    sub_jobs_total: int


class SubJob(NamedTuple):
    id: int
    job_id: int
    project_id: str
    job_type: JobType
    status: SubJobStatus
    begin_time: int
    end_time: int | None
    resource_id: str = ""
    resource_name: str = ""
    error_code: str = ""
    error_message: str = ""


# A job as the list path reads it: (id, job_type, status, begin_time, end_time,
# sub_jobs_total), enum values as stored. ListImageJobs turns these rows straight into its
# JSON body: a page of ten ``Job`` records and their wire structs was a fifth of a request.
JobRow = tuple[int, str, str, int, int | None, int]


# The same row as SQLite's page statement hands it over: one text,
# "id,job_type,status,begin_time,end_time,sub_jobs_total" (the id zero-padded to 19
# digits, end_time empty when NULL). A
# page of ten rows then crosses from SQLite as one value, not seventy: the sqlite3 module
# releases and takes the GIL around every column it reads (bench/README.md, list_limit.py).
JobRowText = str
# A row of a page as the store lists it: a tuple, or its text (SQLite's usual pages).
ListedJob = JobRow | JobRowText


def job_row(row: ListedJob) -> JobRow:
    """``row`` as a tuple (a row's text split and converted)."""
    if not isinstance(row, str):
        return row
    job_id, job_type, status, begin_time, end_time, sub_jobs_total = row.split(",")
    end = int(end_time) if end_time else None
    return (int(job_id), job_type, status, int(begin_time), end, int(sub_jobs_total))


# A sub-job as the list path reads it: (id, job_id, job_type, status, begin_time,
# end_time, resource_id, resource_name, error_code, error_message), enum values as stored.
SubJobRow = tuple[int, int, str, str, int, int | None, str, str, str, str]
# The same row as SQLite's page statement hands it over (a page as one value, as
# JobRowText): a RowText.
ListedSubJob = SubJobRow | str

# A row of a page as SQLite's sub-job and server lists hand it over: its values as a JSON
# array, the id first as a string zero-padded to 19 digits (the texts sort as the ids do).
# Their names and messages may hold any character; JSON escapes every control character,
# so a page's rows are joined by one, ROW_SEPARATOR (storage.job_store.json_rows_sql).
RowText = str
ROW_SEPARATOR = "\x1e"


def row_of_text(text: RowText) -> tuple[Any, ...]:
    """A row's values from its text, the id an integer again."""
    values = json.loads(text)
    values[0] = int(values[0])
    return tuple(values)


def sub_job_row(row: ListedSubJob) -> SubJobRow:
    """``row`` as a tuple (a row's text parsed)."""
    return row_of_text(row) if isinstance(row, str) else row


def job_of_row(project_id: str, listed: ListedJob) -> Job:
    row = job_row(listed)
    return Job(row[0], project_id, JobType(row[1]), JobStatus(row[2]), row[3], row[4], row[5])


@dataclass(frozen=True, slots=True)
class JobDetail:
    job: Job
    sub_jobs: Sequence[SubJob]

    def under(self, project_id: str) -> JobDetail:
        """The same job and sub-jobs, labelled with ``project_id`` (a project's id as the
        API shows it, or the storage key its rows are written under)."""
        return JobDetail(
            self.job._replace(project_id=project_id),
            [sub._replace(project_id=project_id) for sub in self.sub_jobs],
        )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a filtered list; ``count`` is the total matching the filter."""

    count: int
    items: Sequence[T]
    # True when the store knows that no item is an unfinished (WAITING or RUNNING) job:
    # then nothing need look at each item for that (services/steering.py).
    all_finished: bool = False


@dataclass(frozen=True, slots=True)
class PageRequest:
    offset: int = 0
    limit: int = 10


@dataclass(frozen=True, slots=True)
class JobFilter:
    job_type: JobType
    status: JobStatus | None = None


@dataclass(frozen=True, slots=True)
class SubJobFilter:
    """Sub-job filter; ``job_types`` empty means the three documented types (spec §4.4)."""

    job_types: tuple[JobType, ...]
    status: SubJobStatus | None = None
    job_id: int | None = None
    # True when the caller asked for a job_id that cannot exist: the answer is empty.
    impossible: bool = False
