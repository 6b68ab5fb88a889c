"""Operating the service: readiness, metrics, the access log, the audit trail and the
protections under load, on a real server process over HTTP."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from imagejobs import __version__
from tests.conftest import ServerProcess
from tests.engine_support import FAST, server_body
from tests.factories import OPERATOR_HEADERS, Tenant, new_tenant
from tests.integration.http import AkSkAuth, signed_client


def metric_samples(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(base_url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def jobs_path(tenant: Tenant) -> str:
    return f"/v1/{tenant.project_id}/image-server-jobs?job_type=CREATE_SERVER"


@pytest.fixture
def ops_server(database_url: str, tmp_path: Path) -> Iterator[tuple[ServerProcess, Tenant]]:
    tenant = new_tenant(database_url)
    process = ServerProcess(
        database_url, tmp_path, extra_env={**FAST, "IMAGEJOBS_LOG_LEVEL": "info"}
    )
    yield process, tenant
    process.stop()


def test_ready_reports_each_part_and_serve_logs_its_address(
    ops_server: tuple[ServerProcess, Tenant],
) -> None:
    server, _ = ops_server
    response = httpx.get(server.base_url + "/_imagejobs/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["version"] == __version__
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "schema": "ok",
        "runner": "ok",
    }
    assert response.headers["x-request-id"]
    log = server.log_path.read_text()
    assert f"imagejobs {__version__} ready on {server.base_url}" in log


def test_ready_answers_503_when_the_schema_is_behind(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'imagejobs.db'}"
    server = ServerProcess(url, tmp_path, extra_env=FAST)
    try:
        with sqlite3.connect(tmp_path / "imagejobs.db") as connection:
            connection.execute("UPDATE alembic_version SET version_num = '0001'")
        response = httpx.get(server.base_url + "/_imagejobs/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not ready"
        assert body["checks"]["schema"]["status"] == "outdated"
        assert body["checks"]["database"]["status"] == "ok"
    finally:
        server.stop()


def test_metrics_count_requests_auth_failures_and_jobs(
    ops_server: tuple[ServerProcess, Tenant],
) -> None:
    server, tenant = ops_server
    client = signed_client(server.base_url, tenant)
    created = client.post(f"/v1/{tenant.project_id}/image-servers", json=server_body())
    assert created.status_code == 200, created.text
    for _ in range(3):
        assert client.get(jobs_path(tenant)).status_code == 200
    forged = httpx.get(
        server.base_url + jobs_path(tenant), auth=AkSkAuth(tenant.access_key, "wrong-secret")
    )
    assert forged.status_code == 401
    assert httpx.get(server.base_url + jobs_path(tenant)).status_code == 401
    assert httpx.get(server.base_url + "/no/such/route").status_code == 404

    samples = metric_samples(server.base_url)
    ok = (("operation", "ListImageJobs"), ("status", "200"))
    assert samples[("imagejobs_requests_total", ok)] == 3
    assert samples[("imagejobs_requests_total", (("operation", "CreateImageServer"), *ok[1:]))]
    assert samples[("imagejobs_requests_total", (("operation", "unmatched"), ("status", "404")))]
    latency = (("operation", "ListImageJobs"),)
    assert samples[("imagejobs_request_duration_seconds_count", latency)] >= 4
    assert samples[("imagejobs_auth_failures_total", (("reason", "signature"),))] == 1
    assert samples[("imagejobs_auth_failures_total", (("reason", "missing"),))] == 1
    jobs = sum(
        value
        for (name, labels), value in samples.items()
        if name == "imagejobs_jobs" and ("job_type", "CREATE_SERVER") in labels
    )
    assert jobs == 1
    assert ("imagejobs_queue_due", ()) in samples
    assert ("imagejobs_queue_oldest_due_age_seconds", ()) in samples
    assert ("imagejobs_database_errors_total", ()) in samples
    assert ("imagejobs_lease_takeovers_total", ()) in samples
    assert ("imagejobs_sub_job_retries_total", ()) in samples


def test_access_log_has_one_json_line_per_request_and_no_secret(
    ops_server: tuple[ServerProcess, Tenant],
) -> None:
    server, tenant = ops_server
    client = signed_client(server.base_url, tenant)
    listed = client.get(jobs_path(tenant))
    assert listed.status_code == 200
    token_response = httpx.post(
        server.base_url + "/v3/auth/tokens",
        json={
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": tenant.account,
                            "password": tenant.password,
                            "domain": {"name": tenant.account},
                        }
                    },
                },
                "scope": {"project": {"id": tenant.project_id}},
            }
        },
    )
    token = token_response.headers["x-subject-token"]
    with_token = httpx.get(server.base_url + jobs_path(tenant), headers={"X-Auth-Token": token})
    assert with_token.status_code == 200
    server.stop()  # flush everything

    log = server.log_path.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    by_id = {line["request_id"]: line for line in lines}
    line = by_id[listed.headers["x-request-id"]]
    assert line["operation"] == "ListImageJobs"
    assert line["project"] == tenant.project_id
    assert line["principal"] == f"{tenant.account}/{tenant.account}"
    assert line["status"] == 200
    assert line["method"] == "GET"
    assert line["duration_ms"] >= 0
    assert by_id[with_token.headers["x-request-id"]]["principal"].endswith(tenant.account)
    for secret in (tenant.secret_key, tenant.password, token, "Signature="):
        assert secret not in log


def test_mutating_calls_are_audited_for_the_operator_and_the_cli(
    ops_server: tuple[ServerProcess, Tenant], database_url: str
) -> None:
    server, tenant = ops_server
    client = signed_client(server.base_url, tenant)
    created = client.post(f"/v1/{tenant.project_id}/image-servers", json=server_body())
    assert created.status_code == 200
    refused = client.patch(
        f"/v1/{tenant.project_id}/image-server-sub-jobs/actions/batch-delete", json={"items": []}
    )
    assert refused.status_code == 400
    assert client.get(jobs_path(tenant)).status_code == 200  # a read is not audited

    audit_url = server.base_url + "/_imagejobs/audit"
    events = httpx.get(audit_url, headers=OPERATOR_HEADERS).json()["events"]
    mine = [e for e in events if e["project_id"] == tenant.project_id]
    assert [(e["operation"], e["status"], e["error_code"]) for e in mine] == [
        ("BatchDeleteImageSubJobs", 400, "WKS.00211102"),
        ("CreateImageServer", 200, ""),
    ]
    assert mine[0]["request_id"] == refused.headers["x-request-id"]
    assert mine[1]["principal"] == f"{tenant.account}/{tenant.account}"
    # An account root reads its own account's events; no credentials, no audit.
    own = client.get("/_imagejobs/audit?limit=10").json()["events"]
    assert {e["request_id"] for e in own} >= {e["request_id"] for e in mine}
    assert httpx.get(audit_url).status_code == 401
    assert httpx.get(audit_url + "?limit=0", headers=OPERATOR_HEADERS).status_code == 400

    cli = subprocess.run(
        [sys.executable, "-m", "imagejobs", "audit", "--database-url", database_url, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    printed = [json.loads(line) for line in cli.stdout.splitlines()]
    assert refused.headers["x-request-id"] in {e["request_id"] for e in printed}


def _held_request(base_url: str, path: str) -> socket.socket:
    """A request whose body never comes: it stays in flight until the socket closes."""
    host, port = base_url.removeprefix("http://").split(":")
    held = socket.create_connection((host, int(port)))
    held.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{".encode()
    )
    return held


def test_requests_beyond_the_in_flight_bound_get_a_fast_503(
    sqlite_url: str, tmp_path: Path
) -> None:
    tenant = new_tenant(sqlite_url)
    env = {**FAST, "IMAGEJOBS_MAX_IN_FLIGHT": "1"}
    server = ServerProcess(sqlite_url, tmp_path, extra_env=env)
    try:
        client = signed_client(server.base_url, tenant)
        assert client.get(jobs_path(tenant)).status_code == 200
        held = _held_request(server.base_url, f"/v1/{tenant.project_id}/image-servers")
        try:
            for _ in range(50):  # until the server has started on the held request
                shed = client.get(jobs_path(tenant))
                if shed.status_code == 503:
                    break
            assert shed.status_code == 503
            assert shed.json() == {
                "error_code": "WKS.00050902",
                "error_msg": "The service is now unavailable to process the request.",
            }
            assert shed.headers["x-request-id"]
            # Probes still answer: a busy process is alive and ready.
            assert httpx.get(server.base_url + "/_imagejobs/ready").status_code == 200
            samples = metric_samples(server.base_url)
            assert samples[("imagejobs_requests_shed_total", (("reason", "in_flight"),))] >= 1
        finally:
            held.close()
        for _ in range(50):
            if client.get(jobs_path(tenant)).status_code == 200:
                break
        else:
            pytest.fail("the server did not recover once the held request ended")
    finally:
        server.stop()


def test_rate_limit_per_account_answers_429_with_retry_after(
    sqlite_url: str, tmp_path: Path
) -> None:
    limited, other = new_tenant(sqlite_url), new_tenant(sqlite_url)
    env = {**FAST, "IMAGEJOBS_RATE_LIMIT": "0.1", "IMAGEJOBS_RATE_LIMIT_BURST": "2"}
    server = ServerProcess(sqlite_url, tmp_path, extra_env=env)
    try:
        client = signed_client(server.base_url, limited)
        statuses = [client.get(jobs_path(limited)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        throttled = client.get(jobs_path(limited))
        assert throttled.status_code == 429
        assert throttled.json()["error_code"] == "APIG.0308"
        assert throttled.json()["error_msg"].startswith("The throttling threshold")
        assert 1 <= int(throttled.headers["retry-after"]) <= 10
        # Another account has its own allowance.
        assert signed_client(server.base_url, other).get(jobs_path(other)).status_code == 200
    finally:
        server.stop()


def test_oversized_request_heads_are_refused_in_the_documented_format(
    sqlite_url: str, tmp_path: Path
) -> None:
    server = ServerProcess(sqlite_url, tmp_path, extra_env={"IMAGEJOBS_MAX_HEADER_BYTES": "4096"})
    try:
        response = httpx.get(server.base_url + "/openapi.json", headers={"X-Big": "a" * 5000})
        assert response.status_code == 431
        assert response.json()["error_code"] == "APIGW.0201"
        assert httpx.get(server.base_url + "/openapi.json").status_code == 200
    finally:
        server.stop()
