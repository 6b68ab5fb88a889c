"""Builders of realistic jobs for tests, and a way to write them into a database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from imagejobs.domain.enums import JobStatus, JobType, SubJobStatus
from imagejobs.domain.ids import IdGenerator
from imagejobs.domain.records import Job, JobDetail, SubJob
from imagejobs.domain.times import now_ms
from imagejobs.storage.database import database_for
from imagejobs.storage.job_store import SqlJobStore

ids = IdGenerator()

_SUB_STATUS = {
    JobStatus.WAITING: SubJobStatus.WAITING,
    JobStatus.RUNNING: SubJobStatus.RUNNING,
    JobStatus.SUCCESS: SubJobStatus.SUCCESS,
    JobStatus.FAILED: SubJobStatus.FAILED,
}


def new_project() -> str:
    return uuid.uuid4().hex


def make_job(
    project_id: str,
    job_type: JobType = JobType.CREATE_SERVER,
    status: JobStatus = JobStatus.SUCCESS,
    sub_jobs: int = 1,
    sub_statuses: Sequence[SubJobStatus] | None = None,
) -> JobDetail:
    job_id = ids.next_id()
    begin = now_ms()
    finished = status in (JobStatus.SUCCESS, JobStatus.FAILED)
    statuses = list(sub_statuses or [_SUB_STATUS[status]] * sub_jobs)
    subs = [
        SubJob(
            id=ids.next_id(),
            job_id=job_id,
            project_id=project_id,
            job_type=job_type,
            status=s,
            begin_time=begin + 1,
            end_time=begin + 5_000 if s in (SubJobStatus.SUCCESS, SubJobStatus.FAILED) else None,
            resource_id=str(uuid.uuid4()),
            resource_name=f"resource-{i}",
            error_code="WKS.00211401" if s is SubJobStatus.FAILED else "",
            error_message="The requested operation failed." if s is SubJobStatus.FAILED else "",
        )
        for i, s in enumerate(statuses)
    ]
    job = Job(
        id=job_id,
        project_id=project_id,
        job_type=job_type,
        status=status,
        begin_time=begin,
        end_time=begin + 6_000 if finished else None,
        sub_jobs_total=len(subs),
    )
    return JobDetail(job=job, sub_jobs=subs)


def write_jobs(database_url: str, jobs: Sequence[JobDetail]) -> None:
    """Insert ``jobs`` through a store of our own, as another process would."""

    async def run() -> None:
        database = database_for(database_url)
        await database.open()
        try:
            await SqlJobStore(database).insert_jobs(jobs)
        finally:
            await database.close()

    asyncio.run(run())
