"""The route table: each public operation with its path, IAM action, parameters, body,
response and handler. The app, the authorization check and the OpenAPI document are all
built from this one table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from msgspec import Struct

from imagejobs.api.schemas import (
    CountImageSubJobsResponse,
    ListImageJobsResponse,
    ListImageSubJobsResponse,
    ShowImageJobResponse,
    StringSet,
    job_detail,
    job_page_json,
    sub_job_page_json,
)
from imagejobs.domain import params as p
from imagejobs.domain.enums import JobType, SubJobStatus
from imagejobs.domain.records import PageRequest
from imagejobs.services import Services
from imagejobs.services.authorization import Principal


class Call(NamedTuple):
    """One authorized, validated call of an operation (a NamedTuple: built on every
    request, where a frozen dataclass costs several times more)."""

    services: Services
    principal: Principal
    project_id: str  # the path's, as the API shows it
    params: Mapping[str, Any]
    body: Any
    # What the stores are given for the project: its storage key now (services/project_keys.py)
    key: str


# A handler answers with a wire struct, JSON bytes it encoded itself, or nothing.
Handler = Callable[[Call], Awaitable[Struct | bytes | None]]


@dataclass(frozen=True, slots=True)
class Operation:
    operation_id: str
    method: str
    path: str
    action: str
    summary: str
    tag: str
    handler: Handler
    params: tuple[p.Param, ...] = ()
    body: type[Struct] | None = None
    response: type[Struct] | None = None
    errors: tuple[int, ...] = (400, 401, 403, 404, 405, 500, 503)
    # A call that reads rows in proportion to the project's size whatever its offset (a
    # filter no index serves), by its validated parameters: read as a deep page is
    # (services.deep_reads). A page at a deep offset is one for every operation.
    scans: Callable[[Mapping[str, Any]], bool] | None = None


# A list also answers 429: one account's deep pages take turns (services.deep_reads).
LIST_ERRORS = (400, 401, 403, 404, 405, 429, 500, 503)


def _page(call: Call) -> PageRequest:
    return PageRequest(offset=call.params["offset"], limit=call.params["limit"])


async def _list_image_jobs(call: Call) -> bytes:
    params = call.params
    page = await call.services.jobs.list_job_rows(
        call.key, params["job_type"], params["status"], params["offset"], params["limit"]
    )
    return job_page_json(page.count, page.items)


async def _show_image_job(call: Call) -> Struct:
    return job_detail(
        await call.services.jobs.show_job(call.key, call.params["job_id"]), call.project_id
    )


async def _list_image_sub_jobs(call: Call) -> bytes:
    status = call.params["status"]
    page = await call.services.jobs.list_sub_job_rows(
        call.key,
        JobType(call.params["job_type"]),
        None if status is None else SubJobStatus(status),
        call.params["job_id"],
        _page(call),
    )
    return sub_job_page_json(page.count, page.items, call.project_id)


async def _count_image_sub_jobs(call: Call) -> Struct:
    status = call.params["status"]
    count = await call.services.jobs.count_sub_jobs(
        call.key,
        [JobType(t) for t in call.params["job_type"]],
        None if status is None else SubJobStatus(status),
        call.params["job_id"],
    )
    return CountImageSubJobsResponse(count=count)


async def _batch_delete_image_sub_jobs(call: Call) -> None:
    body: StringSet = call.body
    await call.services.jobs.delete_sub_jobs(call.key, body.items)


_V1 = "/v1/{project_id}"
JOBS_TAG = "Image jobs"

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        operation_id="ListImageJobs",
        method="GET",
        path=f"{_V1}/image-server-jobs",
        action="workspace:images:listImageJobs",
        summary="Query the image jobs of a tenant, newest first.",
        tag=JOBS_TAG,
        handler=_list_image_jobs,
        params=(p.JOB_STATUS, p.JOB_TYPE, p.OFFSET, p.LIMIT),
        response=ListImageJobsResponse,
        errors=LIST_ERRORS,
    ),
    Operation(
        operation_id="ShowImageJob",
        method="GET",
        path=f"{_V1}/image-server-jobs/{{job_id}}",
        action="workspace:images:getImageJob",
        summary="Show one image job with its sub-jobs.",
        tag=JOBS_TAG,
        handler=_show_image_job,
        params=(p.JOB_ID_PATH,),
        response=ShowImageJobResponse,
    ),
    Operation(
        operation_id="ListImageSubJobs",
        method="GET",
        path=f"{_V1}/image-server-sub-jobs",
        action="workspace:imageServer:listImageSubJobs",
        summary="Query image sub-jobs, newest first.",
        tag=JOBS_TAG,
        handler=_list_image_sub_jobs,
        params=(p.SUB_JOB_STATUS, p.JOB_TYPE, p.OFFSET, p.LIMIT, p.SUB_JOB_JOB_ID),
        response=ListImageSubJobsResponse,
        errors=LIST_ERRORS,
    ),
    Operation(
        operation_id="CountImageSubJobs",
        method="GET",
        path=f"{_V1}/image-server-sub-jobs/actions/count",
        action="workspace:imageServer:countImageSubJobs",
        summary="Count image sub-jobs.",
        tag=JOBS_TAG,
        handler=_count_image_sub_jobs,
        params=(p.SUB_JOB_STATUS, p.JOB_TYPE_LIST, p.SUB_JOB_JOB_ID),
        response=CountImageSubJobsResponse,
    ),
    Operation(
        operation_id="BatchDeleteImageSubJobs",
        method="PATCH",
        path=f"{_V1}/image-server-sub-jobs/actions/batch-delete",
        # No action is published for this API (spec §7.1); chosen in the same family.
        action="workspace:imageServer:batchDeleteImageSubJobs",
        summary="Delete finished (SUCCESS or FAILED) image sub-jobs; unknown ids are ignored.",
        tag=JOBS_TAG,
        handler=_batch_delete_image_sub_jobs,
        body=StringSet,
    ),
)
