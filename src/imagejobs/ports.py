"""The interfaces the services need from the outside world; storage implements them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from imagejobs.domain.records import (
    Job,
    JobDetail,
    JobFilter,
    ListedJob,
    ListedSubJob,
    Page,
    PageRequest,
    SubJob,
    SubJobFilter,
)


class JobStore(Protocol):
    """Jobs and sub-jobs, always scoped by project: no method can reach another project."""

    async def list_jobs(
        self, project_id: str, job_filter: JobFilter, page: PageRequest
    ) -> Page[Job]: ...

    async def list_job_rows(
        self, project_id: str, job_type: str, status: str | None, offset: int, limit: int
    ) -> Page[ListedJob]:
        """``list_jobs`` as rows, enum values as stored (the list API's hot path)."""
        ...

    async def get_job(self, project_id: str, job_id: int) -> JobDetail | None: ...

    async def list_sub_jobs(
        self, project_id: str, sub_job_filter: SubJobFilter, page: PageRequest
    ) -> Page[SubJob]: ...

    async def list_sub_job_rows(
        self, project_id: str, sub_job_filter: SubJobFilter, page: PageRequest
    ) -> Page[ListedSubJob]:
        """``list_sub_jobs`` as rows, enum values as stored (ListImageSubJobs' path)."""
        ...

    async def count_sub_jobs(self, project_id: str, sub_job_filter: SubJobFilter) -> int: ...

    async def delete_finished_sub_jobs(self, project_id: str, sub_job_ids: Sequence[int]) -> int:
        """Delete those of ``sub_job_ids`` that are SUCCESS or FAILED; return how many."""
        ...

    async def insert_jobs(self, jobs: Sequence[JobDetail]) -> None:
        """Insert jobs with their sub-jobs and counters in one transaction."""
        ...
