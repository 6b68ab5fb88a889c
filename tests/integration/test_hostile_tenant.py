"""Attacks of a hostile tenant (and of an outsider) found by the session-7 review, played
over HTTP against `imagejobs serve`: what a temporary key's session policy bounds, and
what a worker keeps of the long strings a client sends."""

from __future__ import annotations

import httpx

from tests.conftest import ServerProcess
from tests.factories import Tenant, new_tenant
from tests.integration.http import AkSkAuth, password_token, signed_client

AUDIT = "/_imagejobs/audit"


def _temporary_key(base_url: str, tenant: Tenant, policy: dict[str, object]) -> AkSkAuth:
    """A temporary key of the root, from a project-scoped token, narrowed by ``policy``."""
    token = password_token(base_url, tenant)
    body = {"auth": {"identity": {"methods": ["token"], "token": {"id": token}, "policy": policy}}}
    response = httpx.post(base_url + "/v3.0/OS-CREDENTIAL/securitytokens", json=body)
    assert response.status_code == 201, response.text
    credential = response.json()["credential"]
    return AkSkAuth(credential["access"], credential["secret"], credential["securitytoken"])


def _allow(*actions: str) -> dict[str, object]:
    return {"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": list(actions)}]}


def test_a_temporary_keys_session_policy_bounds_its_audit_read(
    live_server: ServerProcess, live_database_url: str
) -> None:
    """A root's temporary key narrowed to reading jobs read the whole account's audit trail
    (every project's paths, users and request ids): the session policy was not asked."""
    tenant = new_tenant(live_database_url)
    base = live_server.base_url
    assert signed_client(base, tenant).get(AUDIT).status_code == 200  # the root's own key

    jobs_only = _temporary_key(base, tenant, _allow("workspace:*:list*"))
    refused = httpx.get(base + AUDIT, auth=jobs_only)
    assert refused.status_code == 403, refused.text
    assert refused.json() == {
        "error_code": "WKS.00081102",
        "error_msg": "Policy doesn't allow imagejobs:audit:listEvents to be performed.",
    }
    deny_all = {"Version": "1.1", "Statement": [{"Effect": "Deny", "Action": ["*:*:*"]}]}
    assert httpx.get(base + AUDIT, auth=_temporary_key(base, tenant, deny_all)).status_code == 403

    audit_reader = _temporary_key(base, tenant, _allow("imagejobs:audit:*"))
    assert httpx.get(base + AUDIT, auth=audit_reader).status_code == 200
    live_server.assert_quiet_log()
