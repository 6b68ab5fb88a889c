"""What any HTTP client sees at the edges: errors in the documented format, never a stack
trace, and an X-Request-Id on every response."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import httpx
import pytest

from imagejobs.storage.database import dialect_of, postgres_dsn, sqlite_path
from tests.conftest import ServerProcess
from tests.factories import Tenant, make_job, new_project, new_tenant, write_jobs
from tests.integration.http import signed_client

JOBS = "/v1/{project}/image-server-jobs"


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body: dict[str, str] = response.json()
    assert set(body) == {"error_code", "error_msg"}
    assert body["error_code"] == code
    assert len(response.headers["x-request-id"]) == 32
    return body


def test_every_response_has_a_unique_request_id(
    live_server: ServerProcess, live_tenant: Tenant
) -> None:
    client = signed_client(live_server.base_url, live_tenant)
    url = JOBS.format(project=live_tenant.project_id)
    ok = client.get(url, params={"job_type": "CREATE_SERVER"})
    bad = client.get(url)
    assert ok.status_code == 200
    assert bad.status_code == 400
    ids = {ok.headers["x-request-id"], bad.headers["x-request-id"]}
    assert len(ids) == 2


def test_wrong_method_is_405_with_a_json_body(live_server: ServerProcess) -> None:
    url = live_server.base_url + JOBS.format(project=new_project())
    response = httpx.delete(url)
    _assert_error(response, 405, "WKS.00000405")
    assert "GET" in response.headers["allow"]
    response = httpx.get(
        live_server.base_url + f"/v1/{new_project()}/image-server-sub-jobs/actions/batch-delete"
    )
    _assert_error(response, 405, "WKS.00000405")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/p/nothing-here",
        "/v2/p/image-server-jobs",
        "/v1",
        "/v1/p/image-server-jobs/1/x",
        "/v1/p/image-server-jobs/",
    ],
)
def test_unknown_routes_are_404_in_the_documented_format(
    live_server: ServerProcess, path: str
) -> None:
    _assert_error(httpx.get(live_server.base_url + path), 404, "APIGW.0101")


def test_over_long_project_id_is_400(live_server: ServerProcess, live_tenant: Tenant) -> None:
    client = signed_client(live_server.base_url, live_tenant)
    url = JOBS.format(project="p" * 129)
    body = _assert_error(client.get(url, params={"job_type": "CREATE_SERVER"}), 400, "WKS.00211102")
    assert "project_id" in body["error_msg"]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[]",
        b'{"items": "x"}',
        b'{"items": [1]}',
        b'{"items": [""]}',
        b'{"items": ["' + b"9" * 129 + b'"]}',
    ],
)
def test_bad_batch_delete_bodies_are_400(
    live_server: ServerProcess, live_tenant: Tenant, content: bytes
) -> None:
    client = signed_client(live_server.base_url, live_tenant)
    url = f"/v1/{live_tenant.project_id}/image-server-sub-jobs/actions/batch-delete"
    response = client.patch(url, content=content, headers={"content-type": "application/json"})
    _assert_error(response, 400, "WKS.00211102")


def test_oversized_body_is_refused(live_server: ServerProcess, live_tenant: Tenant) -> None:
    url = (
        live_server.base_url
        + f"/v1/{live_tenant.project_id}/image-server-sub-jobs/actions/batch-delete"
    )
    response = httpx.patch(url, content=b" " * (2 << 20))
    _assert_error(response, 413, "APIGW.0201")


def test_batch_delete_answers_an_empty_200(live_server: ServerProcess, live_tenant: Tenant) -> None:
    client = signed_client(live_server.base_url, live_tenant)
    url = f"/v1/{live_tenant.project_id}/image-server-sub-jobs/actions/batch-delete"
    response = client.patch(url, json={"items": ["702364883651395584"]})
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["x-request-id"]


def test_internal_failures_reveal_nothing(
    live_server: ServerProcess, live_database_url: str
) -> None:
    """A broken schema under a running server: 500 with the generic body, no internals."""
    tenant = new_tenant(live_database_url)
    write_jobs(live_database_url, [make_job(tenant.project_id)])
    client = signed_client(live_server.base_url, tenant)
    url = JOBS.format(project=tenant.project_id)
    _rename_table(live_database_url, "jobs", "jobs_broken")
    try:
        response = client.get(url, params={"job_type": "CREATE_SERVER"})
    finally:
        _rename_table(live_database_url, "jobs_broken", "jobs")
    body = _assert_error(response, 500, "WKS.00211401")
    assert body["error_msg"] == "The requested operation failed. Please try again later."
    assert "jobs" not in response.text
    assert response.headers["x-request-id"] in live_server.log_path.read_text()
    assert client.get(url, params={"job_type": "CREATE_SERVER"}).json()["count"] == 1


def _rename_table(url: str, old: str, new: str) -> None:
    sql = f"ALTER TABLE {old} RENAME TO {new}"
    if dialect_of(url) == "sqlite":
        connection = sqlite3.connect(sqlite_path(url))
        connection.execute(sql)
        connection.commit()
        connection.close()
        return

    async def run() -> None:
        connection = await asyncpg.connect(postgres_dsn(url))
        await connection.execute(sql)
        await connection.close()

    asyncio.run(run())


def test_a_locked_sqlite_database_is_503(sqlite_url: str, tmp_path: Path) -> None:
    """Writes that cannot get the database in time answer 503, and the server recovers."""
    server = ServerProcess(sqlite_url, tmp_path)
    tenant = new_tenant(sqlite_url)
    client = signed_client(server.base_url, tenant)
    url = f"/v1/{tenant.project_id}/image-server-sub-jobs/actions/batch-delete"
    holder = sqlite3.connect(sqlite_path(sqlite_url), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        response = client.patch(url, json={"items": ["702364883651395584"]}, timeout=30)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    try:
        body = _assert_error(response, 503, "WKS.00050902")
        assert "lock" not in body["error_msg"].lower()
        assert client.patch(url, json={"items": ["702364883651395584"]}).status_code == 200
    finally:
        server.stop()
