"""Operating the service: readiness, metrics, the access log, the audit trail and the
protections under load, on a real server process over HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from imagejobs import __version__
from tests.conftest import ServerProcess
from tests.engine_support import FAST, server_body
from tests.factories import OPERATOR_HEADERS, Tenant, new_tenant
from tests.integration.http import AkSkAuth, login_body, password_token, signed_client


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


@pytest.fixture(scope="module")
def live_ops_server(
    live_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = ServerProcess(
        live_database_url,
        tmp_path_factory.mktemp("ops"),
        # Counts read on every scrape: a test compares two scrapes a moment apart.
        extra_env={
            **FAST,
            "IMAGEJOBS_LOG_LEVEL": "info",
            "IMAGEJOBS_METRICS_COUNTS_MAX_AGE_SECONDS": "0",
        },
    )
    yield process
    process.stop()


@pytest.fixture
def ops_server(
    live_ops_server: ServerProcess, live_database_url: str
) -> tuple[ServerProcess, Tenant]:
    """The module's server, and an account of this test's own."""
    return live_ops_server, new_tenant(live_database_url)


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A SQLite server with one request in flight at most and 4 KiB request heads."""
    directory = tmp_path_factory.mktemp("limited")
    env = {**FAST, "IMAGEJOBS_MAX_IN_FLIGHT": "1", "IMAGEJOBS_MAX_HEADER_BYTES": "4096"}
    process = ServerProcess(f"sqlite:///{directory / 'imagejobs.db'}", directory, extra_env=env)
    yield process
    process.stop()


BUSY_BODY = (
    b'{"error_code":"WKS.00050902",'
    b'"error_msg":"The service is now unavailable to process the request."}'
)


def json_lines(server: ServerProcess) -> list[dict[str, Any]]:
    return [json.loads(x) for x in server.log_path.read_text().splitlines() if x[:1] == "{"]


def refusal_lines(server: ServerProcess, count: int) -> list[dict[str, Any]]:
    """The refusal lines (one a second while requests are refused at the in-flight bound),
    once they count ``count`` refusals."""
    for _ in range(200):
        lines = [line for line in json_lines(server) if line.get("operation") == "refused"]
        if sum(line["count"] for line in lines) >= count:
            assert sum(line["count"] for line in lines) == count
            return lines
        time.sleep(0.05)
    raise AssertionError(f"refusal lines missing: {lines}")


def log_lines(server: ServerProcess, request_ids: set[str]) -> dict[str, dict[str, object]]:
    """The access lines of ``request_ids``, once they are all written (lines are batched)."""
    for _ in range(100):
        lines = json_lines(server)
        found = {
            line["request_id"]: line for line in lines if line.get("request_id") in request_ids
        }
        if len(found) == len(request_ids):
            return found
        time.sleep(0.05)
    raise AssertionError(f"access lines missing: {request_ids - set(found)}")


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


def test_probes_and_documents_carry_a_request_id_the_access_log_shows(
    limited_server: ServerProcess,
) -> None:
    """README: every response carries X-Request-Id, and the access line shows the one the
    client saw. The liveness probe, the OpenAPI documents, /docs, / and /console carried
    none, and the health probe's access line read `"request_id": "-"`."""
    paths = ("/_imagejobs/health", "/_imagejobs/openapi.json", "/openapi.json", "/docs", "/")
    # Static files, and a path no route knows, are answered by Starlette's own apps.
    paths += ("/console/assets/app.js", "/docs/assets/swagger-ui.css", "/no-such-page")
    ids = set()
    for path in (*paths, "/console"):
        response = httpx.get(limited_server.base_url + path)
        assert response.status_code in (200, 302, 404), path
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers.get("x-request-id", "")), path
        ids.add(response.headers["x-request-id"])
    logged = log_lines(limited_server, ids)
    assert {line["path"] for line in logged.values()} == {*paths, "/console"}


def test_ready_answers_503_when_the_schema_is_behind(limited_server: ServerProcess) -> None:
    database = limited_server.log_path.parent / "imagejobs.db"
    with sqlite3.connect(database) as connection:
        (head,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    try:
        response = httpx.get(limited_server.base_url + "/_imagejobs/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not ready"
        assert body["checks"]["schema"]["status"] == "outdated"
        assert body["checks"]["database"]["status"] == "ok"
    finally:
        with sqlite3.connect(database) as connection:
            connection.execute("UPDATE alembic_version SET version_num = ?", (head,))
    assert httpx.get(limited_server.base_url + "/_imagejobs/ready").status_code == 200


def test_metrics_count_requests_auth_failures_and_jobs(
    ops_server: tuple[ServerProcess, Tenant],
) -> None:
    server, tenant = ops_server
    before = metric_samples(server.base_url)
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

    after = metric_samples(server.base_url)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    def total(samples: dict[Any, float], name: str) -> float:
        return sum(v for (n, labels), v in samples.items() if n == name)

    assert grew("imagejobs_requests_total", operation="ListImageJobs", status="200") == 3
    assert grew("imagejobs_requests_total", operation="CreateImageServer", status="200") == 1
    assert grew("imagejobs_requests_total", operation="unmatched", status="404") == 1
    assert grew("imagejobs_request_duration_seconds_count", operation="ListImageJobs") == 5
    assert grew("imagejobs_auth_failures_total", reason="signature") == 1
    assert grew("imagejobs_auth_failures_total", reason="missing") == 1
    assert total(after, "imagejobs_jobs") - total(before, "imagejobs_jobs") == 1
    samples = after
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
    token = password_token(server.base_url, tenant)
    with_token = httpx.get(server.base_url + jobs_path(tenant), headers={"X-Auth-Token": token})
    assert with_token.status_code == 200
    by_id = log_lines(server, {listed.headers["x-request-id"], with_token.headers["x-request-id"]})
    log = server.log_path.read_text()
    line = by_id[listed.headers["x-request-id"]]
    assert line["operation"] == "ListImageJobs"
    assert line["project"] == tenant.project_id
    assert line["principal"] == f"{tenant.account}/{tenant.account}"
    assert line["status"] == 200
    assert line["method"] == "GET"
    assert isinstance(line["duration_ms"], float)
    assert str(by_id[with_token.headers["x-request-id"]]["principal"]).endswith(tenant.account)
    for secret in (tenant.secret_key, tenant.password, token, "Signature="):
        assert secret not in log


def test_mutating_calls_are_audited_for_the_operator_and_the_cli(
    ops_server: tuple[ServerProcess, Tenant], live_database_url: str
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
    for _ in range(100):  # events are stored beside the answers, a moment later
        events = httpx.get(audit_url, headers=OPERATOR_HEADERS).json()["events"]
        mine = [e for e in events if e["project_id"] == tenant.project_id]
        if len(mine) == 2:
            break
        time.sleep(0.05)
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
        [sys.executable, "-m", "imagejobs", "audit", "--database-url", live_database_url, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    printed = [json.loads(line) for line in cli.stdout.splitlines()]
    assert refused.headers["x-request-id"] in {e["request_id"] for e in printed}


def test_a_login_is_audited_under_the_user_who_logged_in(
    ops_server: tuple[ServerProcess, Tenant],
) -> None:
    server, tenant = ops_server
    login = server.base_url + "/v3/auth/tokens"
    good = httpx.post(login, json=login_body(tenant))
    assert good.status_code == 201
    wrong = httpx.post(login, json=login_body(tenant, password="not-it-0A!"))
    assert wrong.status_code == 401
    ids = {good.headers["x-request-id"]: "good", wrong.headers["x-request-id"]: "wrong"}
    audit_url = server.base_url + "/_imagejobs/audit"
    logins: dict[str, dict[str, Any]] = {}
    for _ in range(100):  # events are stored beside the answers, a moment later
        events = httpx.get(audit_url, headers=OPERATOR_HEADERS).json()["events"]
        logins = {ids[e["request_id"]]: e for e in events if e["request_id"] in ids}
        if len(logins) == 2:
            break
        time.sleep(0.05)
    # Who logged in is what an auditor asks first; a failed login names nobody, since
    # its names are whatever the sender typed.
    assert logins["good"]["principal"] == f"{tenant.account}/{tenant.account}"
    assert logins["good"]["status"] == 201
    assert logins["wrong"]["principal"] == "-"
    # The login is the account's own event: its root reads it with its own credentials.
    own = signed_client(server.base_url, tenant).get("/_imagejobs/audit?limit=50").json()
    assert good.headers["x-request-id"] in {e["request_id"] for e in own["events"]}


def _held_request(base_url: str, path: str) -> socket.socket:
    """A request whose body never comes: it stays in flight until the socket closes."""
    host, port = base_url.removeprefix("http://").split(":")
    held = socket.create_connection((host, int(port)))
    held.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{".encode()
    )
    return held


@pytest.mark.postgres
def test_requests_beyond_the_in_flight_bound_get_a_fast_503(
    postgres_url: str, tmp_path: Path
) -> None:
    # The held create must wait for the lock, not time out, however slow this machine is.
    env = {
        **FAST,
        "IMAGEJOBS_MAX_IN_FLIGHT": "1",
        "IMAGEJOBS_DATABASE_STATEMENT_TIMEOUT_SECONDS": "60",
    }
    server = ServerProcess(postgres_url, tmp_path, extra_env=env)
    tenant = new_tenant(postgres_url)
    client = signed_client(server.base_url, tenant)
    try:
        assert client.get(jobs_path(tenant)).status_code == 200
        # A request still sending its body holds no place: slow bodies cannot shed others.
        slow = _held_request(server.base_url, f"/v1/{tenant.project_id}/image-servers")
        try:
            assert client.get(jobs_path(tenant)).status_code == 200
        finally:
            slow.close()
        # Closed, the slow request has fully "arrived" and holds the one place until its
        # answer is written: wait for that (a scrape takes no place), or the create below
        # may be shed instead of waiting on the lock (seen on a loaded machine).
        for _ in range(200):
            if metric_samples(server.base_url)[("imagejobs_requests_in_flight", ())] == 0:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the closed slow request still holds its place")
        # A create that has fully arrived and waits on a locked table is in flight.
        locker = TableLock(postgres_url)
        creating = ThreadPoolExecutor(1)
        try:
            created = creating.submit(
                signed_client(server.base_url, tenant).post,
                f"/v1/{tenant.project_id}/image-servers",
                json=server_body(),
                timeout=30,
            )
            locker.wait_for_a_waiter()  # the create has arrived and waits on the lock
            # Refused before any routing: a read, and a create whose body has arrived.
            shed = [client.get(jobs_path(tenant)) for _ in range(3)]
            shed.append(client.post(f"/v1/{tenant.project_id}/image-servers", json=server_body()))
            for answer in shed:
                assert answer.status_code == 503
                assert answer.content == BUSY_BODY
                assert answer.headers["content-type"] == "application/json"
                assert answer.headers["content-length"] == str(len(BUSY_BODY))
                assert re.fullmatch("[0-9a-f]{32}", answer.headers["x-request-id"])
            assert len({answer.headers["x-request-id"] for answer in shed}) == len(shed)
            # Probes still answer: a busy process is alive and ready.
            assert httpx.get(server.base_url + "/_imagejobs/ready").status_code == 200
            samples = metric_samples(server.base_url)
            assert samples[("imagejobs_requests_shed_total", (("reason", "in_flight"),))] == 4
            # The create is refused at the edge if its body came with its head, else by its
            # route once the body has arrived (then counted under its operation).
            counted = {
                labels: n
                for (name, labels), n in samples.items()
                if name == "imagejobs_requests_total" and ("status", "503") in labels
            }
            refused = (("operation", "refused"), ("status", "503"))
            routed = (("operation", "CreateImageServer"), ("status", "503"))
            assert counted.keys() <= {refused, routed}
            assert counted[refused] >= 3
            assert sum(counted.values()) == 4
            # The held create (the scrape itself takes no place).
            assert samples[("imagejobs_requests_in_flight", ())] == 1
            # Logged together, not one access line each.
            lines = refusal_lines(server, int(counted[refused]))
            assert {
                (line["operation"], line["status"], line["error_code"], line["seconds"])
                for line in lines
            } == {("refused", 503, "WKS.00050902", 1.0)}
            assert set(lines[0]) == {
                "time",
                "operation",
                "status",
                "error_code",
                "count",
                "seconds",
            }
            logged = {line.get("request_id") for line in json_lines(server)}
            shed_ids = {answer.headers["x-request-id"] for answer in shed}
            assert len(logged & shed_ids) == counted.get(routed, 0)  # routed: an access line
        finally:
            locker.release()
            creating.shutdown(wait=True)
        assert created.result().status_code == 200  # the held create ends once unlocked
        assert client.get(jobs_path(tenant)).status_code == 200
    finally:
        server.stop()


class TableLock:
    """An ACCESS EXCLUSIVE lock on image_servers held by another session until released."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._connection = self._loop.run_until_complete(asyncpg.connect(url))
        self._loop.run_until_complete(self._connection.execute("BEGIN"))
        self._loop.run_until_complete(
            self._connection.execute("LOCK TABLE image_servers IN ACCESS EXCLUSIVE MODE")
        )

    def wait_for_a_waiter(self) -> None:
        """Return once another session waits for a lock (the held create)."""
        for _ in range(600):
            waiting = self._loop.run_until_complete(
                self._connection.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                )
            )
            if waiting:
                return
            time.sleep(0.05)
        pytest.fail("no request came to wait for the lock")

    def release(self) -> None:
        self._loop.run_until_complete(self._connection.execute("ROLLBACK"))
        self._loop.run_until_complete(self._connection.close())
        self._loop.close()


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
        assert throttled.json()["error_code"] == "APIGW.0308"
        assert throttled.json()["error_msg"].startswith("The throttling threshold")
        assert 1 <= int(throttled.headers["retry-after"]) <= 10
        # Another account has its own allowance.
        assert signed_client(server.base_url, other).get(jobs_path(other)).status_code == 200
    finally:
        server.stop()


def test_oversized_request_heads_are_refused_in_the_documented_format(
    limited_server: ServerProcess,
) -> None:
    url = limited_server.base_url + "/openapi.json"
    response = httpx.get(url, headers={"X-Big": "a" * 5000})
    assert response.status_code == 431
    assert response.json()["error_code"] == "APIGW.0201"
    assert httpx.get(url, headers={"X-Big": "a" * 3000}).status_code == 200
