"""A small application that uses WorkspaceApp through the official SDK: build an image
server and wait for its job, the way Terraform or a deployment script does."""

from __future__ import annotations

import time

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkworkspaceapp.v1 import (
    CreateImageServerReq,
    CreateImageServerRequest,
    ImageAccountInfo,
    ImageRef,
    ListImageJobsRequest,
    ShowImageJobRequest,
    Volume,
    WorkspaceAppClient,
)

# Where production reaches WorkspaceApp; in tests, imagejobs answers in its place.
ENDPOINT = "https://workspaceapp.cn-north-4.myhuaweicloud.com"


def make_client(
    access_key: str, secret_key: str, project_id: str, endpoint: str = ENDPOINT
) -> WorkspaceAppClient:
    """The SDK client, built as production builds it."""
    credentials = BasicCredentials(access_key, secret_key, project_id)
    return (
        WorkspaceAppClient.new_builder()
        .with_credentials(credentials)
        .with_endpoints([endpoint])
        .build()
    )


class BuildFailed(Exception):
    def __init__(self, job_id: str, code: str, message: str) -> None:
        super().__init__(f"job {job_id} failed: {code} {message}")
        self.code = code
        self.message = message


def build_server(
    client: WorkspaceAppClient, name: str, *, poll_seconds: float = 0.5, timeout: float = 600
) -> str:
    """Create an image server, wait for its job, and return the server's id."""
    body = CreateImageServerReq(
        name=name,
        root_volume=Volume(type="SAS", size=80),
        image_ref=ImageRef(id="da02e5ca-c6ec-4685-8ecb-f116bb5bdd2c", image_type="public"),
        vpc_id="59785ba5-e5d5-4836-b9de-19f22ac15175",
        subnet_id="a5842cb4-5718-4b0a-8b27-3a3e9c74f977",
        product_id="workspace.x86.performance.xlarge4",
        authorize_accounts=[ImageAccountInfo(account="administrator", account_type="USER")],
    )
    job_id = client.create_image_server(CreateImageServerRequest(body=body)).job_id
    deadline = time.monotonic() + timeout
    while True:
        job = client.show_image_job(ShowImageJobRequest(job_id=job_id))
        if job.status == "SUCCESS":
            return str(job.sub_jobs[0].job_resource_info.resource_id)
        if job.status == "FAILED":
            info = next(s.job_execute_info for s in job.sub_jobs if s.status == "FAILED")
            raise BuildFailed(job_id, info.error_code, info.error_message)
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} is still {job.status}")
        time.sleep(poll_seconds)


def recent_builds(client: WorkspaceAppClient, limit: int = 10) -> list[tuple[str, str]]:
    """(job id, status) of the latest server builds, newest first."""
    page = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER", limit=limit))
    return [(job.id, job.status) for job in page.items]
