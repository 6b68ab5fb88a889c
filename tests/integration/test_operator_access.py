"""What tenant credentials may do on the operator API (/_imagejobs), over HTTP: steer and
read their own projects as a root, nothing of another account's, nothing that spans
accounts; every refusal says what the caller may do instead."""

from __future__ import annotations

import contextlib
import json
import socket

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.factories import OPERATOR_HEADERS, Tenant, new_tenant
from tests.integration.http import signed_client


@pytest.fixture(scope="module")
def other(live_database_url: str) -> Tenant:
    return new_tenant(live_database_url)


def _refused(response: httpx.Response, message: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json() == {"error_code": "WKS.00081102", "error_msg": message}


def test_a_root_reads_and_steers_its_own_projects_only(
    live_server: ServerProcess, live_tenant: Tenant, other: Tenant
) -> None:
    http = signed_client(live_server.base_url, live_tenant)
    own, foreign = live_tenant.project_id, other.project_id
    assert http.get("/_imagejobs/engine/tasks", params={"project_id": own}).status_code == 200
    rule = f"/_imagejobs/engine/rules/{own}/CREATE_SERVER"
    assert http.request("PUT", rule, json={"completion": "immediate"}).status_code == 200

    denied = f"The credentials cannot be used for project {foreign}."
    _refused(http.get("/_imagejobs/engine/tasks", params={"project_id": foreign}), denied)
    rule = f"/_imagejobs/engine/rules/{foreign}/CREATE_SERVER"
    _refused(http.request("PUT", rule, json={"completion": "immediate"}), denied)
    _refused(http.get(rule), denied)
    # A repeated project_id is refused before any check, as on /v1 (the signature sorts
    # its values, so a replay could otherwise choose which one counted).
    for both in ([("project_id", own), ("project_id", foreign)], [("project_id", own)] * 2):
        answer = http.get("/_imagejobs/engine/tasks", params=both)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error_msg"] == (
            "The parameter is invalid: project_id must not be given more than once"
        )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/_imagejobs/reset", {}),
        ("POST", "/_imagejobs/tenants", {}),
        ("GET", "/_imagejobs/engine", None),
        ("DELETE", "/_imagejobs/engine/rules", None),
    ],
)
def test_what_spans_accounts_is_the_operators_alone(
    live_server: ServerProcess, live_tenant: Tenant, method: str, path: str, body: object
) -> None:
    http = signed_client(live_server.base_url, live_tenant)
    message = f"Only the operator may use {method} {path}."
    _refused(http.request(method, path, json=body), message)
    if path == "/_imagejobs/reset":
        # Naming its own project changes nothing: a reset is the operator's, like the
        # tenants and states it would clear (imagejobs.testing's cloud.reset uses the token).
        own = {"project_id": live_tenant.project_id}
        _refused(http.request(method, path, json=own), message)
    operator = httpx.request(
        method, live_server.base_url + path, json=body, headers=OPERATOR_HEADERS
    )
    assert operator.status_code == 200, operator.text


def _answer_to_a_body_never_sent(base_url: str, headers: dict[str, str]) -> int:
    """The status of a POST /_imagejobs/state announcing 200 MiB, of which only 2 MiB are
    sent: an answer now (the body still incomplete), or the body timeout's 408."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=90) as connection:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        connection.sendall(
            f"POST /_imagejobs/state HTTP/1.1\r\nHost: {host}\r\nContent-Length: {200 << 20}\r\n"
            f"Content-Type: application/json\r\n{head}\r\n".encode()
        )
        with contextlib.suppress(OSError):  # the server may close as soon as it answers
            connection.sendall(b" " * (2 << 20))
        answer = connection.recv(64).decode()
    return int(answer.split(" ", 2)[1])


def test_no_one_but_the_operator_makes_the_server_hold_a_large_body(
    live_server: ServerProcess, live_tenant: Tenant
) -> None:
    """A state may be 256 MiB, so its body was read (into memory) before the caller was
    known: four unauthenticated 200 MiB posts took one worker from 90 MB to 1 GB. Whoever
    is not the operator is refused before the body is read."""
    assert _answer_to_a_body_never_sent(live_server.base_url, {}) == 401
    wrong = {"X-Imagejobs-Operator-Token": "not-the-token"}
    assert _answer_to_a_body_never_sent(live_server.base_url, wrong) == 401
    token = {"X-Auth-Token": "a" * 40}
    assert _answer_to_a_body_never_sent(live_server.base_url, token) == 401
    # The operator still loads a state larger than the usual 1 MiB bound.
    jobs = [
        {
            "id": str(810_000_000_000_000_000 + 2 * n),
            "job_type": "CREATE_SERVER",
            "status": "SUCCESS",
            "begin_time": 1_700_000_000_000,
            "end_time": 1_700_000_000_001,
            "sub_jobs": [
                {
                    "id": str(810_000_000_000_000_001 + 2 * n),
                    "status": "SUCCESS",
                    "begin_time": 1_700_000_000_000,
                    "end_time": 1_700_000_000_001,
                    "resource_name": "x" * 200,
                }
            ],
        }
        for n in range(5_000)
    ]
    state = json.dumps({"project_id": live_tenant.project_id, "jobs": jobs})
    assert len(state) > 1 << 20
    loaded = httpx.post(
        live_server.base_url + "/_imagejobs/state",
        content=state,
        headers=OPERATOR_HEADERS,
        timeout=120,
    )
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["jobs"] == 5_000
