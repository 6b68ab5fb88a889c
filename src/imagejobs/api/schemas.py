"""Wire bodies as msgspec structs: they encode responses, decode request bodies, and are
the source of the OpenAPI schemas. Field names and enum spellings follow spec §3."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from imagejobs.domain.enums import JobStatus, JobType, SubJobStatus
from imagejobs.domain.records import Job, JobDetail, SubJob
from imagejobs.domain.times import format_optional_time, format_time

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


def sub_job_info(sub_job: SubJob) -> ImageJobDetailInfo:
    return ImageJobDetailInfo(
        id=str(sub_job.id),
        job_type=sub_job.job_type,
        job_resource_info=ImageJobResourceInfo(sub_job.resource_id, sub_job.resource_name),
        begin_time=format_time(sub_job.begin_time),
        end_time=format_optional_time(sub_job.end_time),
        status=sub_job.status,
        job_execute_info=ImageJobExecuteInfo(sub_job.error_code, sub_job.error_message),
        project_id=sub_job.project_id,
        job_id=str(sub_job.job_id),
    )


def job_detail(detail: JobDetail) -> ShowImageJobResponse:
    job = detail.job
    return ShowImageJobResponse(
        id=str(job.id),
        job_type=job.job_type,
        begin_time=format_time(job.begin_time),
        end_time=format_optional_time(job.end_time),
        status=job.status,
        sub_jobs_total=job.sub_jobs_total,
        sub_jobs=[sub_job_info(s) for s in detail.sub_jobs],
    )


encoder = msgspec.json.Encoder()
