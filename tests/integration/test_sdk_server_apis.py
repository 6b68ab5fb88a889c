"""The image-server APIs and the engine behind them, through the official SDK, against a
real server process running its embedded runner (as `imagejobs serve` does)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkworkspaceapp.v1 import (
    BatchDeleteImageServerReq,
    BatchDeleteImageServerRequest,
    CountImageSubJobsRequest,
    CreateImageServerReq,
    CreateImageServerRequest,
    CreateServerImageReq,
    ImageAccountInfo,
    ImageRef,
    ListImageJobsRequest,
    ListImageServersRequest,
    ListImageSubJobsRequest,
    RecreateServerImageRequest,
    ShowImageJobRequest,
    ShowImageServerRequest,
    UpdateImageServerReq,
    UpdateImageServerRequest,
    Volume,
    WorkspaceAppClient,
)

from imagejobs.services.identity import IdentityService
from tests.conftest import ServerProcess
from tests.engine_support import FAST, counter_mismatches, wait_until
from tests.factories import OPERATOR_HEADERS, Tenant, new_tenant, with_identity
from tests.integration.http import signed_client
from tests.integration.sdk import sdk_client

DEADLINE = 30.0  # seconds a job may take at most here (its steps take milliseconds)


@pytest.fixture(scope="module")
def engine_server(
    live_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = ServerProcess(
        live_database_url, tmp_path_factory.mktemp("engine"), extra_env=dict(FAST)
    )
    yield process
    process.stop()


@pytest.fixture
def tenant(live_database_url: str) -> Tenant:
    return new_tenant(live_database_url)


@pytest.fixture
def client(engine_server: ServerProcess, tenant: Tenant) -> WorkspaceAppClient:
    return sdk_client(engine_server.base_url, tenant)


def create_request(name: str | None = None) -> CreateImageServerRequest:
    body = CreateImageServerReq(
        name=name or f"srv-{uuid.uuid4().hex[:10]}",
        root_volume=Volume(type="SAS", size=80),
        image_ref=ImageRef(id="da02e5ca-c6ec-4685-8ecb-f116bb5bdd2c", image_type="public"),
        vpc_id="59785ba5-e5d5-4836-b9de-19f22ac15175",
        subnet_id="a5842cb4-5718-4b0a-8b27-3a3e9c74f977",
        product_id="workspace.x86.performance.xlarge4",
        authorize_accounts=[ImageAccountInfo(account="administrator", account_type="USER")],
    )
    return CreateImageServerRequest(body=body)


def wait_for_job(client: WorkspaceAppClient, job_id: str) -> Any:
    """Poll ShowImageJob as Terraform does, until the job ends."""
    deadline = time.monotonic() + DEADLINE
    while True:
        job = client.show_image_job(ShowImageJobRequest(job_id=job_id))
        if job.status in ("SUCCESS", "FAILED") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def create_server(client: WorkspaceAppClient, name: str | None = None) -> str:
    job = wait_for_job(client, client.create_image_server(create_request(name)).job_id)
    assert job.status == "SUCCESS"
    server_id: str = job.sub_jobs[0].job_resource_info.resource_id
    return server_id


def steer(server: ServerProcess, tenant: Tenant, job_type: str, rule: dict[str, Any]) -> None:
    """Set a rule for the tenant's project through the operator API (a root may)."""
    response = signed_client(server.base_url, tenant).request(
        "PUT", f"/_imagejobs/engine/rules/{tenant.project_id}/{job_type}", json=rule
    )
    assert response.status_code == 200, response.text


def test_create_runs_to_success_and_names_the_server_as_terraform_reads_it(
    client: WorkspaceAppClient,
) -> None:
    created = client.create_image_server(create_request("terraform-1"))
    assert len(created.job_id) == 18

    job = wait_for_job(client, created.job_id)

    assert (job.job_type, job.status, job.sub_jobs_total) == ("CREATE_SERVER", "SUCCESS", 1)
    assert job.end_time is not None
    [sub_job] = job.sub_jobs
    assert sub_job.status == "SUCCESS"
    assert sub_job.job_execute_info.error_code == ""
    server_id = sub_job.job_resource_info.resource_id
    assert sub_job.job_resource_info.resource_name == "terraform-1"
    # Terraform's read: ListImageServers?server_id=..., then items[0].
    listed = client.list_image_servers(ListImageServersRequest(server_id=server_id))
    assert listed.count == 1
    server = listed.items[0]
    assert (server.id, server.name, server.status) == (server_id, "terraform-1", "ACTIVE")
    assert server.server_id.startswith("wksapp-")
    assert server.instance_id
    assert server.server_group_id
    assert (server.app_group_id, server.image_id, server.enterprise_project_id) == ("", "", "0")
    assert server.image_ref.image_type == "public"
    assert server.authorize_accounts[0].account == "administrator"
    assert server.create_time <= server.update_time
    shown = client.show_image_server(ShowImageServerRequest(server_id=server_id))
    fields = ("id", "name", "status", "server_id", "instance_id", "create_time", "update_time")
    assert [getattr(shown, f) for f in fields] == [getattr(server, f) for f in fields]


def test_recreate_image_then_batch_delete(client: WorkspaceAppClient) -> None:
    server_id = create_server(client)

    started = client.recreate_server_image(
        RecreateServerImageRequest(
            server_id=server_id, body=CreateServerImageReq(name="image 0508", description="d")
        )
    )
    job = wait_for_job(client, started.job_id)

    assert (job.job_type, job.status) == ("CREATE_SERVER_IMAGE", "SUCCESS")
    image_id = job.sub_jobs[0].job_resource_info.resource_id
    assert str(uuid.UUID(image_id)) == image_id
    assert job.sub_jobs[0].job_resource_info.resource_name == "image 0508"
    server = client.show_image_server(ShowImageServerRequest(server_id=server_id))
    assert (server.status, server.image_id) == ("BUILT", image_id)

    deleted = client.batch_delete_image_server(
        BatchDeleteImageServerRequest(
            body=BatchDeleteImageServerReq(items=[server_id, "702364883651395584"])
        )
    )
    job = wait_for_job(client, deleted.job_id)
    assert (job.job_type, job.status, job.sub_jobs_total) == ("DELETE_SERVER", "SUCCESS", 1)
    assert job.sub_jobs[0].job_resource_info.resource_id == server_id
    with pytest.raises(ClientRequestException) as caught:
        client.show_image_server(ShowImageServerRequest(server_id=server_id))
    assert (caught.value.status_code, caught.value.error_code) == (404, "WKS.00211902")
    # Deleting what is gone still answers a job, which succeeds (Terraform relies on it).
    again = client.batch_delete_image_server(
        BatchDeleteImageServerRequest(body=BatchDeleteImageServerReq(items=[server_id]))
    )
    assert wait_for_job(client, again.job_id).status == "SUCCESS"


def test_injected_failures_surface_with_their_code_and_message(
    engine_server: ServerProcess, tenant: Tenant, client: WorkspaceAppClient
) -> None:
    fault = {"error_code": "WKS.00219999", "error_message": "Quota of servers exceeded."}
    steer(engine_server, tenant, "CREATE_SERVER", {"faults": [fault]})

    job = wait_for_job(client, client.create_image_server(create_request()).job_id)

    assert job.status == "FAILED"
    [sub_job] = job.sub_jobs
    assert sub_job.status == "FAILED"
    assert sub_job.job_execute_info.error_code == "WKS.00219999"
    assert sub_job.job_execute_info.error_message == "Quota of servers exceeded."
    server = client.show_image_server(
        ShowImageServerRequest(server_id=sub_job.job_resource_info.resource_id)
    )
    assert server.status == "ERROR"
    failed = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER", status="FAILED"))
    assert failed.count == 1


def test_transient_failures_are_retried_until_the_attempts_run_out(
    engine_server: ServerProcess, tenant: Tenant, client: WorkspaceAppClient
) -> None:
    fault = {"transient": True, "error_code": "WKS.00050902", "error_message": "Try later."}
    steer(engine_server, tenant, "CREATE_SERVER", {"faults": [fault]})
    job_id = client.create_image_server(create_request()).job_id
    operator = signed_client(engine_server.base_url, tenant)
    retries: set[tuple[int, str]] = set()

    def failed() -> bool:
        tasks = operator.get("/_imagejobs/engine/tasks", params={"project_id": tenant.project_id})
        retries.update((t["attempts"], t["error_code"]) for t in tasks.json()["tasks"])
        return bool(client.show_image_job(ShowImageJobRequest(job_id=job_id)).status == "FAILED")

    assert wait_until(failed, DEADLINE, interval=0.02)
    # Seen waiting for a retry, with the error so far (backoff 0.1 s, 0.2 s, 0.4 s...).
    assert (2, "WKS.00050902") in retries or (3, "WKS.00050902") in retries
    job = client.show_image_job(ShowImageJobRequest(job_id=job_id))
    assert job.sub_jobs[0].job_execute_info.error_code == "WKS.00050902"


def test_a_fault_at_one_sub_job_fails_the_job_after_the_others_finish(
    engine_server: ServerProcess, tenant: Tenant, client: WorkspaceAppClient
) -> None:
    servers = [create_server(client) for _ in range(3)]
    fault = {"sub_job_index": 1, "error_code": "WKS.00210001", "error_message": "Busy."}
    steer(engine_server, tenant, "DELETE_SERVER", {"faults": [fault]})

    deleted = client.batch_delete_image_server(
        BatchDeleteImageServerRequest(body=BatchDeleteImageServerReq(items=servers))
    )
    job = wait_for_job(client, deleted.job_id)

    assert job.status == "FAILED"
    statuses = sorted((s.status, s.job_execute_info.error_code) for s in job.sub_jobs)
    assert statuses == [("FAILED", "WKS.00210001"), ("SUCCESS", ""), ("SUCCESS", "")]
    remaining = client.list_image_servers(ListImageServersRequest())
    assert [s.status for s in remaining.items] == ["ERROR"]


def test_completion_after_n_reads_of_the_job(
    engine_server: ServerProcess, tenant: Tenant, client: WorkspaceAppClient
) -> None:
    steer(engine_server, tenant, "*", {"completion": "reads", "reads": 4})
    job_id = client.create_image_server(create_request()).job_id
    statuses = [client.show_image_job(ShowImageJobRequest(job_id=job_id)).status]
    statuses += [client.show_image_job(ShowImageJobRequest(job_id=job_id)).status]
    listed = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
    assert listed.items[0].status in ("WAITING", "RUNNING")  # the third read
    assert "SUCCESS" not in statuses
    # The fourth read is the first to see the job done, however fast the reads come.
    job = client.show_image_job(ShowImageJobRequest(job_id=job_id))
    assert job.status == "SUCCESS"


def test_bad_requests_get_documented_errors(client: WorkspaceAppClient) -> None:
    bad_name = create_request("has space")
    with pytest.raises(ClientRequestException) as caught:
        client.create_image_server(bad_name)
    assert (caught.value.status_code, caught.value.error_code) == (400, "WKS.00211102")
    assert "name" in caught.value.error_msg

    bad_volume = create_request()
    bad_volume.body.root_volume.size = 65
    with pytest.raises(ClientRequestException) as caught:
        client.create_image_server(bad_volume)
    assert "root_volume.size" in caught.value.error_msg

    server_id = create_server(client, "taken")
    with pytest.raises(ClientRequestException) as caught:
        client.create_image_server(create_request("taken"))
    assert (caught.value.status_code, caught.value.error_code) == (409, "WKS.00211103")

    for unknown in ("702364883651395584", "not-an-id"):
        with pytest.raises(ClientRequestException) as caught:
            client.show_image_server(ShowImageServerRequest(server_id=unknown))
        assert caught.value.status_code == 404

    # The limits of the batch, in the API's words (not the validation library's
    # "Expected `array` of length <= 20").
    for items, message in (
        ([], "items must hold at least 1 item"),
        ([server_id] * 21, "items must hold at most 20 items"),
        (["x" * 129], "items[0] must be at most 128 characters long"),
    ):
        with pytest.raises(ClientRequestException) as caught:
            client.batch_delete_image_server(
                BatchDeleteImageServerRequest(body=BatchDeleteImageServerReq(items=items))
            )
        assert (caught.value.status_code, caught.value.error_code) == (400, "WKS.00211102")
        assert caught.value.error_msg == f"The parameter is invalid: {message}"
    assert server_id


def test_state_rules_over_the_sdk(
    engine_server: ServerProcess, tenant: Tenant, client: WorkspaceAppClient
) -> None:
    steer(
        engine_server, tenant, "CREATE_SERVER", {"completion": "duration", "duration_seconds": 30}
    )
    job_id = client.create_image_server(create_request()).job_id
    assert wait_until(
        lambda: client.show_image_job(ShowImageJobRequest(job_id=job_id)).status == "RUNNING",
        DEADLINE,
    )
    server_id = client.show_image_job(ShowImageJobRequest(job_id=job_id)).sub_jobs[0]
    server_id = server_id.job_resource_info.resource_id
    server = client.show_image_server(ShowImageServerRequest(server_id=server_id))
    assert (server.status, server.server_id, server.instance_id) == ("CREATING", "", "")

    with pytest.raises(ClientRequestException) as caught:  # creating: no image yet
        client.recreate_server_image(
            RecreateServerImageRequest(server_id=server_id, body=CreateServerImageReq(name="i"))
        )
    assert (caught.value.status_code, caught.value.error_code) == (409, "WKS.00211103")
    assert "CREATING" in caught.value.error_msg
    with pytest.raises(ClientRequestException) as caught:  # creating: not deletable
        client.batch_delete_image_server(
            BatchDeleteImageServerRequest(body=BatchDeleteImageServerReq(items=[server_id]))
        )
    assert caught.value.status_code == 400
    assert server_id in caught.value.error_msg


def test_list_filters_paging_and_update(client: WorkspaceAppClient) -> None:
    names = ["alpha-1", "alpha-2", "beta"]
    ids = [create_server(client, name) for name in names]

    everything = client.list_image_servers(ListImageServersRequest())
    assert everything.count == 3
    assert [s.name for s in everything.items] == names[::-1]  # newest first
    alphas = client.list_image_servers(ListImageServersRequest(server_name="alpha"))
    assert sorted(s.name for s in alphas.items) == ["alpha-1", "alpha-2"]
    assert client.list_image_servers(ListImageServersRequest(server_name="ALPHA")).count == 0
    page = client.list_image_servers(ListImageServersRequest(offset=1, limit=1))
    assert (page.count, [s.name for s in page.items]) == (3, ["alpha-2"])
    assert client.list_image_servers(ListImageServersRequest(server_id="nope")).count == 0
    default_project = ListImageServersRequest(enterprise_project_id="0")
    assert client.list_image_servers(default_project).count == 3

    updated = client.update_image_server(
        UpdateImageServerRequest(
            server_id=ids[2], body=UpdateImageServerReq(name="gamma", description="新的描述")
        )
    )
    assert updated.raw_content in (b"", None)
    server = client.show_image_server(ShowImageServerRequest(server_id=ids[2]))
    assert (server.name, server.description) == ("gamma", "新的描述")
    with pytest.raises(ClientRequestException) as caught:
        client.update_image_server(
            UpdateImageServerRequest(server_id=ids[2], body=UpdateImageServerReq(name="alpha-1"))
        )
    assert caught.value.status_code == 409


def test_counts_match_the_rows_while_the_engine_runs(
    engine_server: ServerProcess,
    tenant: Tenant,
    client: WorkspaceAppClient,
    live_database_url: str,
) -> None:
    steer(engine_server, tenant, "*", {"completion": "duration", "duration_seconds": 0.4})
    http = signed_client(engine_server.base_url, tenant)
    servers = f"/v1/{tenant.project_id}/image-servers"
    job_ids = []
    for i in range(12):
        created = http.post(servers, json=_body(f"load-{i}"))
        assert created.status_code == 200, created.text
        job_ids.append(created.json()["job_id"])
        assert counter_mismatches(live_database_url) == []

    def all_done() -> bool:
        assert counter_mismatches(live_database_url) == []
        count = client.count_image_sub_jobs(CountImageSubJobsRequest()).count
        listed = client.list_image_sub_jobs(ListImageSubJobsRequest(job_type="CREATE_SERVER"))
        assert count == listed.count == len(job_ids)
        done = client.count_image_sub_jobs(CountImageSubJobsRequest(status="SUCCESS")).count
        return bool(done == len(job_ids))

    assert wait_until(all_done, DEADLINE, interval=0.05)
    jobs = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER", limit=100))
    assert jobs.count == 12
    assert {j.status for j in jobs.items} == {"SUCCESS"}


def _body(name: str) -> dict[str, Any]:
    from tests.engine_support import server_body

    return server_body(name)


def _reader_of(database_url: str, tenant: Tenant) -> Tenant:
    """An IAM user with Workspace FullAccess, which does not include steering."""

    async def create(identity: IdentityService) -> Tenant:
        await identity.create_user(tenant.account, "full")
        await identity.attach_policy(tenant.account, "Workspace FullAccess", user_name="full")
        key = await identity.create_access_key(tenant.account, "full")
        return Tenant(
            tenant.account, tenant.project_id, tenant.region, "", key.key.access_key, key.secret_key
        )

    return with_identity(database_url, create)


def test_the_operator_api_needs_an_operator(
    engine_server: ServerProcess, tenant: Tenant, live_database_url: str
) -> None:
    url = engine_server.base_url + "/_imagejobs/engine/rules"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"X-Imagejobs-Operator-Token": "guess"}).status_code == 401
    assert httpx.get(url, headers=OPERATOR_HEADERS).status_code == 200
    root = signed_client(engine_server.base_url, tenant)
    # A root steers its own projects only; what spans every project is the operator's.
    for path in (
        "/_imagejobs/engine/rules",
        "/_imagejobs/engine",
        "/_imagejobs/engine/tasks",
        "/_imagejobs/engine/rules/*/*",
    ):
        assert root.get(path).status_code == 403, path
    own = f"/_imagejobs/engine/behaviour/{tenant.project_id}/CREATE_SERVER"
    assert root.get(own).status_code == 200
    other = new_tenant(live_database_url)
    theirs = f"/_imagejobs/engine/rules/{other.project_id}/CREATE_SERVER"
    refused = root.request("PUT", theirs, json={"queue_seconds": 0})
    assert (refused.status_code, refused.json()["error_code"]) == (403, "WKS.00081102")
    reader = _reader_of(live_database_url, tenant)
    assert signed_client(engine_server.base_url, reader).get(own).status_code == 403
    bad = root.request("PUT", f"/_imagejobs/engine/rules/{tenant.project_id}/BUILD_IMAGE", json={})
    assert (bad.status_code, bad.json()["error_code"]) == (400, "WKS.00211102")
    typo = root.request(
        "PUT", f"/_imagejobs/engine/rules/{tenant.project_id}/*", json={"queue_secs": 1}
    )
    assert typo.status_code == 400
    assert "queue_secs" in typo.json()["error_msg"]
