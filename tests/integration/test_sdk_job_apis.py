"""The five job APIs through the official SDK, against a real server process."""

from __future__ import annotations

import datetime as dt

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkworkspaceapp.v1 import (
    BatchDeleteImageSubJobsRequest,
    BatchDeleteSubJobsReq,
    CountImageSubJobsRequest,
    ListImageJobsRequest,
    ListImageSubJobsRequest,
    ShowImageJobRequest,
)

from imagejobs.domain.enums import JobStatus, JobType, SubJobStatus
from imagejobs.domain.times import format_time
from tests.conftest import ServerProcess
from tests.factories import Tenant, make_job, new_project, new_tenant, write_jobs
from tests.integration.sdk import sdk_client


def _utc(epoch_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.UTC)


def test_list_image_jobs(live_server: ServerProcess, live_database_url: str) -> None:
    tenant = new_tenant(live_database_url)
    project = tenant.project_id
    jobs = [make_job(project, status=s) for s in (JobStatus.SUCCESS, JobStatus.RUNNING)] * 1
    jobs += [make_job(project, JobType.DELETE_SERVER) for _ in range(12)]
    write_jobs(live_database_url, jobs)
    client = sdk_client(live_server.base_url, tenant)

    response = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))

    assert response.count == 2
    newest = response.items[0]
    expected = jobs[1].job
    assert newest.id == str(expected.id)
    assert newest.job_type == "CREATE_SERVER"
    assert newest.status == "RUNNING"
    assert newest.begin_time == _utc(expected.begin_time)
    assert newest.end_time is None
    assert newest.sub_jobs_total == 1
    assert response.items[1].end_time == _utc(jobs[0].job.end_time or 0)

    page = client.list_image_jobs(
        ListImageJobsRequest(job_type="DELETE_SERVER", status="SUCCESS", offset=10, limit=5)
    )
    assert page.count == 12
    assert [i.id for i in page.items] == [str(j.job.id) for j in jobs[2:4]][::-1]


def test_show_image_job_with_sub_jobs(live_server: ServerProcess, live_database_url: str) -> None:
    tenant = new_tenant(live_database_url)
    project = tenant.project_id
    detail = make_job(
        project,
        JobType.CREATE_SERVER_IMAGE,
        JobStatus.FAILED,
        sub_statuses=[SubJobStatus.SUCCESS, SubJobStatus.FAILED],
    )
    write_jobs(live_database_url, [detail])
    client = sdk_client(live_server.base_url, tenant)

    job = client.show_image_job(ShowImageJobRequest(job_id=str(detail.job.id)))

    assert (job.id, job.job_type, job.status, job.sub_jobs_total) == (
        str(detail.job.id),
        "CREATE_SERVER_IMAGE",
        "FAILED",
        2,
    )
    assert [s.id for s in job.sub_jobs] == [str(s.id) for s in detail.sub_jobs]
    failed = job.sub_jobs[1]
    assert failed.status == "FAILED"
    assert failed.job_id == str(detail.job.id)
    assert failed.project_id == project
    assert failed.job_execute_info.error_code == "WKS.00211401"
    assert failed.job_resource_info.resource_id == detail.sub_jobs[1].resource_id
    assert job.sub_jobs[0].job_execute_info.error_code == ""
    assert job.sub_jobs[0].end_time == _utc(detail.sub_jobs[0].end_time or 0)


def test_show_unknown_job_is_404_with_request_id(
    live_server: ServerProcess, live_tenant: Tenant
) -> None:
    client = sdk_client(live_server.base_url, live_tenant)
    for job_id in ("702364883651395584", "not-a-job"):
        with pytest.raises(ClientRequestException) as caught:
            client.show_image_job(ShowImageJobRequest(job_id=job_id))
        assert caught.value.status_code == 404
        assert caught.value.error_code == "WKS.00211902"
        assert caught.value.request_id


def test_another_projects_job_is_not_found(
    live_server: ServerProcess, live_database_url: str
) -> None:
    theirs = make_job(new_project())
    write_jobs(live_database_url, [theirs])
    client = sdk_client(live_server.base_url, new_tenant(live_database_url))

    with pytest.raises(ClientRequestException) as caught:
        client.show_image_job(ShowImageJobRequest(job_id=str(theirs.job.id)))
    assert caught.value.status_code == 404
    listed = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
    assert (listed.count, listed.items) == (0, [])


def test_list_and_count_sub_jobs(live_server: ServerProcess, live_database_url: str) -> None:
    tenant = new_tenant(live_database_url)
    project = tenant.project_id
    first = make_job(project, sub_statuses=[SubJobStatus.SUCCESS, SubJobStatus.ROLLBACK])
    second = make_job(project, JobType.DELETE_SERVER, JobStatus.WAITING, sub_jobs=3)
    write_jobs(live_database_url, [first, second])
    client = sdk_client(live_server.base_url, tenant)

    listed = client.list_image_sub_jobs(
        ListImageSubJobsRequest(job_type="CREATE_SERVER", job_id=str(first.job.id))
    )
    assert listed.count == 2
    assert [s.status for s in listed.items] == ["ROLLBACK", "SUCCESS"]
    rollback = client.list_image_sub_jobs(
        ListImageSubJobsRequest(job_type="CREATE_SERVER", status="ROLLBACK")
    )
    assert [s.id for s in rollback.items] == [str(first.sub_jobs[1].id)]

    def count(**kwargs: str) -> int:
        result: int = client.count_image_sub_jobs(CountImageSubJobsRequest(**kwargs)).count
        return result

    assert count() == 5
    assert count(job_type="DELETE_SERVER") == 3
    assert count(job_type="CREATE_SERVER,DELETE_SERVER", status="WAITING") == 3
    assert count(job_id=str(first.job.id)) == 2
    assert count(job_type="CREATE_SERVER_IMAGE") == 0


def test_batch_delete_sub_jobs_keeps_counts_consistent(
    live_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    project = tenant.project_id
    statuses = [SubJobStatus.SUCCESS, SubJobStatus.FAILED, SubJobStatus.RUNNING]
    detail = make_job(project, status=JobStatus.RUNNING, sub_statuses=statuses)
    write_jobs(live_database_url, [detail])
    client = sdk_client(live_server.base_url, tenant)
    ids = [str(s.id) for s in detail.sub_jobs] + ["702364883651395584", "unknown"]

    client.batch_delete_image_sub_jobs(
        BatchDeleteImageSubJobsRequest(body=BatchDeleteSubJobsReq(items=ids))
    )

    job = client.show_image_job(ShowImageJobRequest(job_id=str(detail.job.id)))
    assert [s.status for s in job.sub_jobs] == ["RUNNING"]
    assert job.sub_jobs_total == 1
    assert client.count_image_sub_jobs(CountImageSubJobsRequest()).count == 1
    listed = client.list_image_sub_jobs(ListImageSubJobsRequest(job_type="CREATE_SERVER"))
    assert listed.count == 1


@pytest.mark.parametrize(
    ("request_kwargs", "parameter"),
    [
        ({}, "job_type"),
        ({"job_type": "BUILD_IMAGE"}, "job_type"),
        ({"job_type": "createServer"}, "job_type"),
        ({"job_type": "CREATE_SERVER", "limit": 0}, "limit"),
        ({"job_type": "CREATE_SERVER", "limit": 101}, "limit"),
        ({"job_type": "CREATE_SERVER", "limit": -1}, "limit"),
        ({"job_type": "CREATE_SERVER", "limit": "abc"}, "limit"),
        ({"job_type": "CREATE_SERVER", "limit": 1.5}, "limit"),
        ({"job_type": "CREATE_SERVER", "offset": -1}, "offset"),
        ({"job_type": "CREATE_SERVER", "status": "DONE"}, "status"),
    ],
)
def test_invalid_list_parameters_are_400(
    live_server: ServerProcess,
    live_tenant: Tenant,
    request_kwargs: dict[str, object],
    parameter: str,
) -> None:
    client = sdk_client(live_server.base_url, live_tenant)
    with pytest.raises(ClientRequestException) as caught:
        client.list_image_jobs(ListImageJobsRequest(**request_kwargs))
    assert caught.value.status_code == 400
    assert caught.value.error_code == "WKS.00211102"
    assert parameter in caught.value.error_msg
    assert caught.value.request_id


def test_invalid_sub_job_requests_are_400(live_server: ServerProcess, live_tenant: Tenant) -> None:
    client = sdk_client(live_server.base_url, live_tenant)
    calls = [
        lambda: client.list_image_sub_jobs(
            ListImageSubJobsRequest(job_type="CREATE_SERVER", status="PAUSED")
        ),
        lambda: client.count_image_sub_jobs(CountImageSubJobsRequest(job_type="CREATE_SERVER,X")),
        lambda: client.batch_delete_image_sub_jobs(
            BatchDeleteImageSubJobsRequest(body=BatchDeleteSubJobsReq(items=[]))
        ),
        lambda: client.batch_delete_image_sub_jobs(
            BatchDeleteImageSubJobsRequest(body=BatchDeleteSubJobsReq(items=["1"] * 21))
        ),
        lambda: client.batch_delete_image_sub_jobs(
            BatchDeleteImageSubJobsRequest(body=BatchDeleteSubJobsReq())
        ),
    ]
    for call in calls:
        with pytest.raises(ClientRequestException) as caught:
            call()
        assert caught.value.status_code == 400
        assert caught.value.error_code == "WKS.00211102"


def test_times_are_utc_milliseconds_with_z(
    live_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    project = tenant.project_id
    detail = make_job(project)
    write_jobs(live_database_url, [detail])
    client = sdk_client(live_server.base_url, tenant)

    response = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))

    raw = response.raw_content.decode()
    assert f'"begin_time":"{format_time(detail.job.begin_time)}"' in raw
