"""Reading and cleaning up image jobs: the five job APIs as use cases."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from imagejobs.domain.enums import JobStatus, JobType, SubJobStatus
from imagejobs.domain.errors import NotFound
from imagejobs.domain.ids import parse_id
from imagejobs.domain.records import (
    Job,
    JobDetail,
    JobFilter,
    ListedJob,
    ListedSubJob,
    Page,
    PageRequest,
    SubJobFilter,
)
from imagejobs.ports import JobStore

FIRST_PAGE = PageRequest()


class JobNotFound(NotFound):
    """The job does not exist."""


class JobService:
    def __init__(self, store: JobStore) -> None:
        self._store = store

    async def list_jobs(
        self,
        project_id: str,
        job_type: JobType,
        status: JobStatus | None = None,
        page: PageRequest = FIRST_PAGE,
    ) -> Page[Job]:
        return await self._store.list_jobs(project_id, JobFilter(job_type, status), page)

    async def list_job_rows(
        self, project_id: str, job_type: str, status: str | None, offset: int, limit: int
    ) -> Page[ListedJob]:
        """``list_jobs`` as rows (ListImageJobs encodes them without per-row objects);
        ``job_type`` and ``status`` are values the API has validated."""
        return await self._store.list_job_rows(project_id, job_type, status, offset, limit)

    async def show_job(self, project_id: str, job_id: str) -> JobDetail:
        numeric_id = parse_id(job_id)
        detail = None if numeric_id is None else await self._store.get_job(project_id, numeric_id)
        if detail is None:
            raise JobNotFound(f"The job {job_id} does not exist.")
        return detail

    async def list_sub_job_rows(
        self,
        project_id: str,
        job_type: JobType,
        status: SubJobStatus | None = None,
        job_id: str | None = None,
        page: PageRequest = FIRST_PAGE,
    ) -> Page[ListedSubJob]:
        """The sub-jobs as rows (ListImageSubJobs encodes them without per-row objects)."""
        return await self._store.list_sub_job_rows(
            project_id, _sub_job_filter((job_type,), status, job_id), page
        )

    async def count_sub_jobs(
        self,
        project_id: str,
        job_types: Sequence[JobType] = (),
        status: SubJobStatus | None = None,
        job_id: str | None = None,
    ) -> int:
        return await self._store.count_sub_jobs(
            project_id, _sub_job_filter(tuple(job_types), status, job_id)
        )

    async def delete_sub_jobs(self, project_id: str, sub_job_ids: Sequence[str]) -> int:
        """Delete the finished ones among ``sub_job_ids``; unknown ids are ignored."""
        numeric = [n for n in (parse_id(i) for i in sub_job_ids) if n is not None]
        return await self._store.delete_finished_sub_jobs(project_id, numeric)


# The filters without a parent job: one frozen object each, not one a request. Bounded, as
# CountImageSubJobs' list of types is the caller's.
@lru_cache(maxsize=64)
def _any_job_filter(job_types: tuple[JobType, ...], status: SubJobStatus | None) -> SubJobFilter:
    return SubJobFilter(job_types, status)


def _sub_job_filter(
    job_types: tuple[JobType, ...], status: SubJobStatus | None, job_id: str | None
) -> SubJobFilter:
    if not job_id:  # absent or "": no filter on the parent job
        return _any_job_filter(job_types, status)
    numeric_id = parse_id(job_id)
    return SubJobFilter(job_types, status, numeric_id, impossible=numeric_id is None)
