"""The pytest plugin and the in-process mock, used as a user's tests use them."""

from __future__ import annotations

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkworkspaceapp.v1 import (
    ListImageJobsRequest,
    ShowImageJobRequest,
    WorkspaceAppClient,
)

import imagejobs.testing
from imagejobs.testing import Tenant
from tests.integration.sdk import create_server_request


@pytest.mark.imagejobs(fail_at=1, code="WKS.0099", message="quota exceeded")
def test_the_marker_steers_the_tests_own_project(workspaceapp_client: WorkspaceAppClient) -> None:
    job_id = workspaceapp_client.create_image_server(create_server_request()).job_id
    job = workspaceapp_client.show_image_job(ShowImageJobRequest(job_id=job_id))
    assert job.status == "FAILED"
    assert job.sub_jobs[0].job_execute_info.error_code == "WKS.0099"


def test_each_test_gets_a_fresh_project(
    workspaceapp_client: WorkspaceAppClient, imagejobs_tenant: Tenant
) -> None:
    listed = workspaceapp_client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
    assert listed.count == 0


def production_client(access_key: str, secret_key: str, project_id: str) -> WorkspaceAppClient:
    """How application code builds its client: the real endpoint of its region."""
    credentials = BasicCredentials(access_key, secret_key, project_id)
    return (
        WorkspaceAppClient.new_builder()
        .with_credentials(credentials)
        .with_endpoints(["https://workspaceapp.cn-north-4.myhuaweicloud.com"])
        .build()
    )


def test_the_mock_serves_clients_made_before_and_inside_it_and_checks_signatures() -> None:
    early = production_client("AK" * 10, "SK" * 20, "0" * 32)
    with imagejobs.testing.mock_workspaceapp() as cloud:
        tenant = cloud.tenant()
        client = production_client(tenant.access_key, tenant.secret_key, tenant.project_id)
        job_id = client.create_image_server(create_server_request()).job_id
        assert client.show_image_job(ShowImageJobRequest(job_id=job_id)).status == "SUCCESS"
        wrong = production_client(tenant.access_key, "x" * 40, tenant.project_id)
        with pytest.raises(ClientRequestException) as caught:
            wrong.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
        assert (caught.value.status_code, caught.value.error_code) == (401, "APIGW.0301")
        with pytest.raises(ClientRequestException) as unknown:  # made before the mock
            early.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
        assert unknown.value.status_code == 401


@imagejobs.testing.mock_workspaceapp()
def test_the_decorator_gives_each_call_a_fresh_store() -> None:
    cloud = imagejobs.testing.active_cloud()
    client = cloud.client()
    listed = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
    assert listed.count == 0
    client.create_image_server(create_server_request())
