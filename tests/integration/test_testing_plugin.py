"""The pytest plugin and the in-process mock, used as a user's tests use them."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials, Credentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException, SdkException
from huaweicloudsdkworkspaceapp.v1 import (
    ListImageJobsRequest,
    ListImageServersRequest,
    ShowImageJobRequest,
    ShowImageServerRequest,
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


def test_the_mock_sends_text_and_queries_as_the_network_does() -> None:
    # The mock prepares the SDK's requests itself: a body beyond ASCII and a query that
    # needs quoting arrive, and verify, as they do over HTTP.
    with imagejobs.testing.mock_workspaceapp() as cloud:
        client = cloud.client()
        request = create_server_request("金色镜像-golden")
        request.body.description = "镜像 für Tests"
        job_id = client.create_image_server(request).job_id
        job = client.show_image_job(ShowImageJobRequest(job_id=job_id))
        server_id = job.sub_jobs[0].job_resource_info.resource_id
        shown = client.show_image_server(ShowImageServerRequest(server_id=server_id))
        assert shown.description == "镜像 für Tests"
        listed = client.list_image_servers(ListImageServersRequest(server_name="金色镜像-golden"))
        assert [item.id for item in listed.items] == [server_id]


@imagejobs.testing.mock_workspaceapp()
def test_the_decorator_gives_each_call_a_fresh_store() -> None:
    cloud = imagejobs.testing.active_cloud()
    client = cloud.client()
    listed = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
    assert listed.count == 0
    client.create_image_server(create_server_request())


def test_the_mock_signs_on_the_calling_thread_and_gives_the_sdk_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The SDK signs on its thread pool; under the mock, with its own code, on the caller's
    # thread (no round trip between threads), and a signing error still reaches the caller.
    original = Credentials.process_auth_request
    signed_on: list[threading.Thread] = []
    sign = BasicCredentials.sign_request

    def recording(credentials: BasicCredentials, request: Any) -> Any:
        signed_on.append(threading.current_thread())
        if request.resource_path.endswith("/image-servers"):
            raise SdkException("signing failed")
        return sign(credentials, request)

    monkeypatch.setattr(BasicCredentials, "sign_request", recording)
    with imagejobs.testing.mock_workspaceapp() as cloud:
        client = cloud.client()
        assert client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER")).count == 0
        with pytest.raises(SdkException, match="signing failed"):
            client.list_image_servers(ListImageServersRequest())
    assert signed_on == [threading.current_thread()] * 2
    assert Credentials.process_auth_request is original


MARKED_BADLY = """
import pytest

@pytest.mark.imagejobs(completion="soon")
def test_completion(workspaceapp_client):
    pass

@pytest.mark.imagejobs(fail_at=0, code="WKS.0099")
def test_fail_at(workspaceapp_client):
    pass

@pytest.mark.imagejobs(retries=3)
def test_unknown(workspaceapp_client):
    pass
"""


def test_a_bad_marker_value_names_the_parameter_and_what_it_allows(tmp_path: Path) -> None:
    (tmp_path / "test_marked.py").write_text(MARKED_BADLY)
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_marked.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 1, ran.stdout + ran.stderr
    out = ran.stdout
    assert "3 errors" in out or "3 failed" in out, out
    assert (
        "@pytest.mark.imagejobs: completion must be one of 'immediate', 'duration', "
        "'reads' (or None), not 'soon'" in out
    ), out
    assert "@pytest.mark.imagejobs: fail_at must be an integer from 1 to 20, not 0" in out
    assert "@pytest.mark.imagejobs: unknown steering parameter retries: allowed are" in out
    assert "OperatorError" not in out  # refused before any request, in the marker's terms


def test_steer_refuses_a_bad_value_by_name() -> None:
    with imagejobs.testing.serve() as cloud:
        tenant = cloud.tenant()
        with pytest.raises(ValueError, match=r"reads must be an integer from 1 to 10000, not 0"):
            cloud.steer(tenant, completion="reads", reads=0)
        with pytest.raises(ValueError, match=r"probability must be a number from 0 to 1, not 2"):
            cloud.steer(tenant, code="WKS.0099", probability=2)
        with pytest.raises(ValueError, match=r"job_type must be one of 'CREATE_SERVER', "):
            cloud.steer(tenant, "CREATE")
