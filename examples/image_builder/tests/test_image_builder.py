"""The application's tests: imagejobs stands in for WorkspaceApp, through the pytest
plugin's fixtures and the in-process mock. No cloud account, no glue code."""

from __future__ import annotations

import pytest
from huaweicloudsdkworkspaceapp.v1 import WorkspaceAppClient

import imagejobs.testing
from image_builder import BuildFailed, build_server, make_client, recent_builds


def test_build_returns_the_new_server(workspaceapp_client: WorkspaceAppClient) -> None:
    server_id = build_server(workspaceapp_client, "golden-image")
    assert server_id
    [(job_id, status)] = recent_builds(workspaceapp_client)
    assert status == "SUCCESS"


@pytest.mark.imagejobs(fail_at=1, code="WKS.00211401", message="Insufficient quota.")
def test_a_failed_build_reports_the_clouds_error(workspaceapp_client: WorkspaceAppClient) -> None:
    with pytest.raises(BuildFailed) as caught:
        build_server(workspaceapp_client, "golden-image")
    assert (caught.value.code, caught.value.message) == ("WKS.00211401", "Insufficient quota.")


@pytest.mark.imagejobs(completion="reads", reads=3)
def test_the_build_polls_until_the_job_ends(workspaceapp_client: WorkspaceAppClient) -> None:
    # The third ShowImageJob is the first to see the job done: two pauses, every time.
    build_server(workspaceapp_client, "golden-image", poll_seconds=0.01)
    assert recent_builds(workspaceapp_client)[0][1] == "SUCCESS"


def test_builds_are_listed_newest_first(workspaceapp_client: WorkspaceAppClient) -> None:
    build_server(workspaceapp_client, "first")
    build_server(workspaceapp_client, "second")
    assert [status for _, status in recent_builds(workspaceapp_client)] == ["SUCCESS"] * 2


@imagejobs.testing.mock_workspaceapp()
def test_in_process_with_the_clients_own_configuration() -> None:
    tenant = imagejobs.testing.active_cloud().tenant()
    # The client exactly as production builds it: the real endpoint, routed in-process.
    client = make_client(tenant.access_key, tenant.secret_key, tenant.project_id)
    assert build_server(client, "golden-image")
