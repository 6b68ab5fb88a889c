"""Builders of realistic jobs for tests, and a way to write them into a database."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from imagejobs.domain.enums import JobStatus, JobType, SubJobStatus
from imagejobs.domain.ids import IdGenerator
from imagejobs.domain.records import Job, JobDetail, SubJob
from imagejobs.domain.times import now_ms
from imagejobs.iam.credentials import SecretBox
from imagejobs.services.identity import IdentityService
from imagejobs.storage.database import database_for
from imagejobs.storage.iam_store import SqlIamStore
from imagejobs.storage.job_store import SqlJobStore

T = TypeVar("T")
ids = IdGenerator()
# Test servers get this operator key (IMAGEJOBS_ENCRYPTION_KEY), so tests can create
# credentials directly in the database, as `imagejobs iam` does.
TEST_KEY = bytes(range(32))
TEST_KEY_BASE64 = base64.b64encode(TEST_KEY).decode()
# And this operator token (IMAGEJOBS_OPERATOR_TOKEN) for the operator API.
TEST_OPERATOR_TOKEN = "test-operator-token"
OPERATOR_HEADERS = {"X-Imagejobs-Operator-Token": TEST_OPERATOR_TOKEN}


@dataclass(frozen=True)
class Tenant:
    """An account with one project and the root user's credentials."""

    account: str
    project_id: str
    region: str
    password: str
    access_key: str
    secret_key: str


def with_identity(database_url: str, action: Callable[[IdentityService], Awaitable[T]]) -> T:
    """Run ``action`` with an identity service on ``database_url``, as `imagejobs iam` does."""

    async def run() -> T:
        database = database_for(database_url)
        await database.open()
        try:
            identity = IdentityService(SqlIamStore(database), SecretBox(TEST_KEY))
            await identity.ensure_system_policies()
            return await action(identity)
        finally:
            await database.close()

    return asyncio.run(run())


def new_tenant(database_url: str, region: str = "cn-north-4", account: str | None = None) -> Tenant:
    """Create an account (root user, project, AK/SK) in the database at ``database_url``."""
    name = account or f"tenant-{uuid.uuid4().hex[:12]}"

    async def create(identity: IdentityService) -> Tenant:
        created = await identity.create_account(name, project_name=region)
        return Tenant(
            name,
            created.project.id,
            region,
            created.password,
            created.access_key,
            created.secret_key,
        )

    return with_identity(database_url, create)


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
