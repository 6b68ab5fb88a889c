"""What tenant credentials may do on the operator API (/_imagejobs), over HTTP: steer and
read their own projects as a root, nothing of another account's, nothing that spans
accounts; every refusal says what the caller may do instead."""

from __future__ import annotations

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
    assert http.get("/_imagejobs/state", params={"project_id": own}).status_code == 200
    assert http.get("/_imagejobs/engine/tasks", params={"project_id": own}).status_code == 200
    rule = f"/_imagejobs/engine/rules/{own}/CREATE_SERVER"
    assert http.request("PUT", rule, json={"completion": "immediate"}).status_code == 200

    denied = f"The credentials cannot be used for project {foreign}."
    _refused(http.get("/_imagejobs/state", params={"project_id": foreign}), denied)
    _refused(http.get("/_imagejobs/engine/tasks", params={"project_id": foreign}), denied)
    rule = f"/_imagejobs/engine/rules/{foreign}/CREATE_SERVER"
    _refused(http.request("PUT", rule, json={"completion": "immediate"}), denied)
    _refused(http.get(rule), denied)
    # The last of a repeated project_id is the one both checked and used.
    both = http.get("/_imagejobs/state", params=[("project_id", own), ("project_id", foreign)])
    _refused(both, denied)


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
