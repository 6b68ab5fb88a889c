"""IAM over HTTP with the official SDK: each credential failure gets its exact status and
code, and policies decide what an IAM user may do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.region.region import Region
from huaweicloudsdkworkspaceapp.v1 import (
    BatchDeleteImageSubJobsRequest,
    BatchDeleteSubJobsReq,
    ListImageJobsRequest,
    WorkspaceAppClient,
)

from imagejobs.iam.signing import SigningAlgorithm, sign_request
from imagejobs.services.identity import IdentityService
from tests.conftest import ServerProcess
from tests.factories import (
    TEST_KEY_BASE64,
    Tenant,
    make_job,
    new_tenant,
    with_identity,
    write_jobs,
)
from tests.integration.http import login_body, password_token, signed_client
from tests.integration.sdk import sdk_client

LIST = ListImageJobsRequest(job_type="CREATE_SERVER")


def _refused(call: Any, status: int, code: str, text: str = "") -> ClientRequestException:
    with pytest.raises(ClientRequestException) as caught:
        call()
    error = caught.value
    assert (error.status_code, error.error_code) == (status, code), error.error_msg
    assert text in error.error_msg
    assert error.request_id
    return error


def _user_with_key(database_url: str, tenant: Tenant, name: str, *policies: str) -> Tenant:
    """An IAM user of ``tenant``'s account with an AK/SK and the given policies attached."""

    async def create(identity: IdentityService) -> Tenant:
        _, password = await identity.create_user(tenant.account, name)
        for policy in policies:
            await identity.attach_policy(tenant.account, policy, user_name=name)
        key = await identity.create_access_key(tenant.account, name)
        return Tenant(
            tenant.account,
            tenant.project_id,
            tenant.region,
            password,
            key.key.access_key,
            key.secret_key,
        )

    return with_identity(database_url, create)


def _signed_get(
    base_url: str, tenant: Tenant, query: str, now: datetime, sent_query: str | None = None
) -> httpx.Response:
    path = f"/v1/{tenant.project_id}/image-server-jobs"
    host = base_url.removeprefix("http://")
    headers = {"Host": host, "Content-Type": "application/json", "X-Project-Id": tenant.project_id}
    pairs = [tuple(p.split("=", 1)) for p in query.split("&")]
    headers |= sign_request(
        "GET",
        path,
        pairs,
        headers,
        b"",
        ak=tenant.access_key,
        sk=tenant.secret_key,
        algorithm=SigningAlgorithm.HMAC_SHA256,
        now=now,
    )
    return httpx.get(f"{base_url}{path}?{sent_query or query}", headers=headers)


def test_no_credentials_is_401(live_server: ServerProcess, live_tenant: Tenant) -> None:
    response = httpx.get(
        f"{live_server.base_url}/v1/{live_tenant.project_id}/image-server-jobs",
        params={"job_type": "CREATE_SERVER"},
    )
    assert response.status_code == 401
    assert response.json() == {
        "error_code": "APIGW.0301",
        "error_msg": "Incorrect IAM authentication information: x-auth-token not found",
    }


def test_wrong_secret_key_is_401(live_server: ServerProcess, live_tenant: Tenant) -> None:
    client = sdk_client(live_server.base_url, live_tenant, secret_key="x" * 40)
    error = _refused(
        lambda: client.list_image_jobs(LIST),
        401,
        "APIGW.0301",
        "verify aksk signature fail, canonicalRequest:GET|/v1/",
    )
    assert live_tenant.secret_key not in error.error_msg


def test_unknown_access_key_is_401(live_server: ServerProcess, live_tenant: Tenant) -> None:
    client = sdk_client(live_server.base_url, live_tenant, access_key="NOSUCHKEY00000000000")
    _refused(
        lambda: client.list_image_jobs(LIST), 401, "APIGW.0301", "ak NOSUCHKEY00000000000 not exist"
    )


def test_tampered_query_is_401(live_server: ServerProcess, live_tenant: Tenant) -> None:
    now = datetime.now(UTC)
    ok = _signed_get(live_server.base_url, live_tenant, "job_type=CREATE_SERVER&limit=1", now)
    assert ok.status_code == 200
    tampered = _signed_get(
        live_server.base_url,
        live_tenant,
        "job_type=CREATE_SERVER&limit=1",
        now,
        sent_query="job_type=CREATE_SERVER&limit=100",
    )
    assert tampered.status_code == 401
    assert "verify aksk signature fail" in tampered.json()["error_msg"]


def test_a_request_replayed_after_16_minutes_is_401(
    live_server: ServerProcess, live_tenant: Tenant
) -> None:
    then = datetime.now(UTC) - timedelta(minutes=16)
    response = _signed_get(live_server.base_url, live_tenant, "job_type=CREATE_SERVER", then)
    assert response.status_code == 401
    assert response.json()["error_code"] == "APIGW.0301"
    assert "signature expired" in response.json()["error_msg"]


def test_a_disabled_key_is_401_until_enabled(
    live_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    client = sdk_client(live_server.base_url, tenant)
    assert client.list_image_jobs(LIST).count == 0
    with_identity(
        live_database_url,
        lambda i: i.set_access_key_enabled(tenant.account, tenant.access_key, False),
    )
    _refused(lambda: client.list_image_jobs(LIST), 401, "APIGW.0301", "not exist")
    with_identity(
        live_database_url,
        lambda i: i.set_access_key_enabled(tenant.account, tenant.access_key, True),
    )
    assert client.list_image_jobs(LIST).count == 0


def test_a_deleted_key_is_401_on_its_next_request(
    live_server: ServerProcess, live_database_url: str
) -> None:
    # The server had the key cached (the C check's copy too): deleting it must empty both.
    tenant = new_tenant(live_database_url)
    client = sdk_client(live_server.base_url, tenant)
    for _ in range(3):
        assert client.list_image_jobs(LIST).count == 0
    with_identity(
        live_database_url, lambda i: i.delete_access_key(tenant.account, tenant.access_key)
    )
    for _ in range(2):
        _refused(
            lambda: client.list_image_jobs(LIST),
            401,
            "APIGW.0301",
            f"ak {tenant.access_key} not exist",
        )


def test_another_accounts_key_is_403(live_server: ServerProcess, live_database_url: str) -> None:
    mine, theirs = new_tenant(live_database_url), new_tenant(live_database_url)
    write_jobs(live_database_url, [make_job(mine.project_id)])
    client = sdk_client(live_server.base_url, theirs, project_id=mine.project_id)
    _refused(lambda: client.list_image_jobs(LIST), 403, "WKS.00081102")


def test_x_project_id_must_match_the_path(live_server: ServerProcess, live_tenant: Tenant) -> None:
    path = f"/v1/{live_tenant.project_id}/image-server-jobs"
    headers = {"Host": live_server.base_url.removeprefix("http://"), "X-Project-Id": "other"}
    headers |= sign_request(
        "GET",
        path,
        [("job_type", "CREATE_SERVER")],
        headers,
        b"",
        ak=live_tenant.access_key,
        sk=live_tenant.secret_key,
        algorithm=SigningAlgorithm.HMAC_SHA256,
        now=datetime.now(UTC),
    )
    response = httpx.get(f"{live_server.base_url}{path}?job_type=CREATE_SERVER", headers=headers)
    assert response.status_code == 401
    assert "X-Project-Id" in response.json()["error_msg"]


def test_more_than_five_bad_signatures_lock_the_key_for_that_address(
    live_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    bad = sdk_client(live_server.base_url, tenant, secret_key="y" * 40)
    for _ in range(6):
        _refused(lambda: bad.list_image_jobs(LIST), 401, "APIGW.0301", "signature fail")
    _refused(
        lambda: bad.list_image_jobs(LIST),
        401,
        "APIGW.0301",
        "AK access failed to reach the limit,forbidden.",
    )
    # A valid signature is never refused (tests/integration/test_credential_attacks.py).
    good = sdk_client(live_server.base_url, tenant)
    assert good.list_image_jobs(LIST).count == 0


def test_a_good_signature_resets_the_failure_count(
    live_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    bad = sdk_client(live_server.base_url, tenant, secret_key="y" * 40)
    good = sdk_client(live_server.base_url, tenant)
    for _ in range(2):
        for _ in range(5):
            _refused(lambda: bad.list_image_jobs(LIST), 401, "APIGW.0301", "signature fail")
        assert good.list_image_jobs(LIST).count == 0


def test_policies_decide_what_an_iam_user_may_do(
    live_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    write_jobs(live_database_url, [make_job(tenant.project_id)])
    delete = BatchDeleteImageSubJobsRequest(body=BatchDeleteSubJobsReq(items=["1"]))

    nobody = sdk_client(live_server.base_url, _user_with_key(live_database_url, tenant, "nobody"))
    error = _refused(lambda: nobody.list_image_jobs(LIST), 403, "WKS.00081102")
    assert "workspace:images:listImageJobs" in error.error_msg

    reader = sdk_client(
        live_server.base_url,
        _user_with_key(live_database_url, tenant, "reader", "Workspace ReadOnlyAccess"),
    )
    assert reader.list_image_jobs(LIST).count == 1
    _refused(lambda: reader.batch_delete_image_sub_jobs(delete), 403, "WKS.00081102")

    admin = sdk_client(
        live_server.base_url,
        _user_with_key(live_database_url, tenant, "admin", "Workspace FullAccess"),
    )
    admin.batch_delete_image_sub_jobs(delete)

    deny_lists = json.dumps(
        {"Version": "1.1", "Statement": [{"Effect": "Deny", "Action": ["workspace:images:list*"]}]}
    )

    async def add_deny(identity: IdentityService) -> None:
        await identity.create_policy(tenant.account, "no-listing", deny_lists)
        await identity.attach_policy(tenant.account, "no-listing", user_name="admin")

    with_identity(live_database_url, add_deny)
    _refused(lambda: admin.list_image_jobs(LIST), 403, "WKS.00081102")
    admin.batch_delete_image_sub_jobs(delete)  # the Deny names listing only


def test_groups_and_conditions(live_server: ServerProcess, live_database_url: str) -> None:
    tenant = new_tenant(live_database_url)
    in_region = json.dumps(
        {
            "Version": "1.1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["workspace:images:*"],
                    "Condition": {
                        "StringEquals": {"g:ProjectName": [tenant.region]},
                        "StringLike": {"g:UserName": ["ops-*"]},
                    },
                }
            ],
        }
    )

    async def setup(identity: IdentityService) -> None:
        await identity.create_policy(tenant.account, "ops-in-region", in_region)
        await identity.create_group(tenant.account, "ops")
        await identity.attach_policy(tenant.account, "ops-in-region", group_name="ops")

    with_identity(live_database_url, setup)
    ops = _user_with_key(live_database_url, tenant, "ops-anna")
    dev = _user_with_key(live_database_url, tenant, "dev-bob")
    for user in ("ops-anna", "dev-bob"):
        with_identity(
            live_database_url, lambda i, u=user: i.add_user_to_group(tenant.account, "ops", u)
        )
    assert sdk_client(live_server.base_url, ops).list_image_jobs(LIST).count == 0
    _refused(
        lambda: sdk_client(live_server.base_url, dev).list_image_jobs(LIST), 403, "WKS.00081102"
    )


def test_tokens_issue_validate_and_revoke(
    live_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    base = live_server.base_url
    write_jobs(live_database_url, [make_job(tenant.project_id)])
    token = password_token(base, tenant)
    jobs_url = f"{base}/v1/{tenant.project_id}/image-server-jobs?job_type=CREATE_SERVER"

    listed = httpx.get(jobs_url, headers={"X-Auth-Token": token})
    assert listed.status_code == 200
    assert listed.json()["count"] == 1

    both = {"X-Auth-Token": token, "X-Subject-Token": token}
    checked = httpx.get(base + "/v3/auth/tokens", headers=both)
    assert checked.status_code == 200
    body = checked.json()["token"]
    assert body["user"]["name"] == tenant.account
    assert body["project"]["id"] == tenant.project_id
    assert body["methods"] == ["password"]
    assert body["expires_at"].endswith("Z")
    assert checked.headers["x-subject-token"] == token
    head = httpx.head(base + "/v3/auth/tokens", headers=both)
    assert (head.status_code, head.content) == (200, b"")

    assert httpx.delete(base + "/v3/auth/tokens", headers=both).status_code == 204
    revoked = httpx.get(jobs_url, headers={"X-Auth-Token": token})
    assert revoked.status_code == 401
    assert revoked.json()["error_msg"].endswith("decrypt token fail")


def test_a_token_of_another_project_is_403(
    live_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    other = with_identity(
        live_database_url, lambda i: i.create_project(tenant.account, "ap-southeast-1")
    )
    token = password_token(live_server.base_url, tenant, project=other.id)
    url = f"{live_server.base_url}/v1/{tenant.project_id}/image-server-jobs"
    response = httpx.get(url, params={"job_type": "CREATE_SERVER"}, headers={"X-Auth-Token": token})
    assert response.status_code == 403
    assert response.json()["error_code"] == "WKS.00081102"
    other_url = f"{live_server.base_url}/v1/{other.id}/image-server-jobs"
    assert (
        httpx.get(
            other_url, params={"job_type": "CREATE_SERVER"}, headers={"X-Auth-Token": token}
        ).status_code
        == 200
    )


def test_wrong_password_gets_the_keystone_error(
    live_server: ServerProcess, live_tenant: Tenant
) -> None:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": live_tenant.account,
                        "password": "wrong-Passw0rd",
                        "domain": {"name": live_tenant.account},
                    }
                },
            },
            "scope": {"project": {"name": live_tenant.region}},
        }
    }
    response = httpx.post(live_server.base_url + "/v3/auth/tokens", json=body)
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": 401,
            "title": "Unauthorized",
            "message": "The username or password is wrong.",
        }
    }
    body["auth"]["identity"]["password"]["user"]["name"] = "nobody"  # type: ignore[index]
    assert httpx.post(live_server.base_url + "/v3/auth/tokens", json=body).json() == response.json()


@pytest.mark.parametrize("content", [b"", b"{", b'{"auth": {}}', b'{"auth": {"identity": 1}}'])
def test_malformed_token_requests_are_400(live_server: ServerProcess, content: bytes) -> None:
    response = httpx.post(live_server.base_url + "/v3/auth/tokens", content=content)
    assert response.status_code == 400
    assert response.json()["error_code"] == "IAM.0011"


def test_password_change_and_disabling_end_tokens(
    live_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    user = _user_with_key(live_database_url, tenant, "carol", "Workspace FullAccess")
    url = f"{live_server.base_url}/v1/{tenant.project_id}/image-server-jobs?job_type=DELETE_SERVER"

    token = password_token(live_server.base_url, tenant, user="carol", password=user.password)
    assert httpx.get(url, headers={"X-Auth-Token": token}).status_code == 200
    with_identity(
        live_database_url,
        lambda i: i.set_password(tenant.account, "carol", "N3w-password-for-carol"),
    )
    assert httpx.get(url, headers={"X-Auth-Token": token}).status_code == 401

    token = password_token(
        live_server.base_url, tenant, user="carol", password="N3w-password-for-carol"
    )
    with_identity(live_database_url, lambda i: i.set_user_enabled(tenant.account, "carol", False))
    assert httpx.get(url, headers={"X-Auth-Token": token}).status_code == 401
    client = sdk_client(live_server.base_url, user)
    _refused(lambda: client.list_image_jobs(LIST), 401, "APIGW.0301")


def test_temporary_keys_from_a_token_work_with_the_sdk(
    live_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    token = password_token(live_server.base_url, tenant)
    body = {"auth": {"identity": {"methods": ["token"], "token": {"duration_seconds": 900}}}}
    response = httpx.post(
        live_server.base_url + "/v3.0/OS-CREDENTIAL/securitytokens",
        json=body,
        headers={"X-Auth-Token": token},
    )
    assert response.status_code == 201
    credential = response.json()["credential"]
    datetime.strptime(credential["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ")  # the SDK's format

    temporary = BasicCredentials(credential["access"], credential["secret"], tenant.project_id)
    client = (
        WorkspaceAppClient.new_builder()
        .with_credentials(temporary.with_security_token(credential["securitytoken"]))
        .with_endpoints([live_server.base_url])
        .build()
    )
    assert client.list_image_jobs(LIST).count == 0

    without_token = sdk_client(
        live_server.base_url,
        tenant,
        access_key=credential["access"],
        secret_key=credential["secret"],
    )
    _refused(lambda: without_token.list_image_jobs(LIST), 401, "APIGW.0301")


def test_temporary_keys_are_narrowed_by_their_policy(
    live_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    token = password_token(live_server.base_url, tenant)
    only_count = {
        "Version": "1.1",
        "Statement": [{"Effect": "Allow", "Action": ["workspace:imageServer:countImageSubJobs"]}],
    }
    body = {
        "auth": {"identity": {"methods": ["token"], "token": {"id": token}, "policy": only_count}}
    }
    response = httpx.post(live_server.base_url + "/v3.0/OS-CREDENTIAL/securitytokens", json=body)
    credential = response.json()["credential"]
    temporary = BasicCredentials(credential["access"], credential["secret"], tenant.project_id)
    client = (
        WorkspaceAppClient.new_builder()
        .with_credentials(temporary.with_security_token(credential["securitytoken"]))
        .with_endpoints([live_server.base_url])
        .build()
    )
    _refused(lambda: client.list_image_jobs(LIST), 403, "WKS.00081102")


def test_a_session_policy_is_bounded(live_server: ServerProcess, live_database_url: str) -> None:
    # The caller's own text, evaluated on every request its key makes on the event loop
    # every tenant shares: 400 statements of long patterns cost 25 ms a request.
    tenant = new_tenant(live_database_url)
    token = password_token(live_server.base_url, tenant)
    url = live_server.base_url + "/v3.0/OS-CREDENTIAL/securitytokens"

    def request(statements: list[dict[str, Any]]) -> httpx.Response:
        policy = {"Version": "1.1", "Statement": statements}
        identity = {"methods": ["token"], "token": {"id": token}, "policy": policy}
        return httpx.post(url, json={"auth": {"identity": identity}})

    allow = {"Effect": "Allow", "Action": ["workspace:*:list*"]}
    assert request([allow] * 8).status_code == 201
    too_many = request([allow] * 9)
    assert too_many.status_code == 400, too_many.text
    assert too_many.json() == {
        "error_code": "IAM.0011",  # the IAM API's code, as for the rest of its body
        "error_msg": "The parameter is invalid: policy.Statement must hold at most 8 statements",
    }
    short = {"methods": ["token"], "token": {"id": token, "duration_seconds": 60}}
    too_short = httpx.post(url, json={"auth": {"identity": short}})
    assert too_short.status_code == 400, too_short.text
    assert too_short.json() == {
        "error_code": "IAM.0011",
        "error_msg": "The parameter is invalid: duration_seconds must be from 900 to 86400",
    }
    long_patterns = {"Effect": "Allow", "Action": [f"workspace:*:list{i:04}*" for i in range(400)]}
    too_long = request([long_patterns])
    assert too_long.status_code == 400, too_long.text
    assert too_long.json()["error_msg"] == (
        "The parameter is invalid: policy must be at most 6144 characters of JSON"
    )


def _iam_refusal(name: str, reason: str) -> dict[str, str]:
    return {"error_code": "IAM.0011", "error_msg": f"The parameter is invalid: {name} {reason}"}


def test_v3_queries_are_read_as_the_signature_covers_them(
    live_server: ServerProcess, live_database_url: str
) -> None:
    """The /v3 routes read their query with the /v1 parser: a repeated key (whose values a
    signature sorts, so a replay could choose one) or a key that is not UTF-8 is a 400 in
    IAM's shape, where Starlette's reading took the last value."""
    tenant = new_tenant(live_database_url)
    base = live_server.base_url
    login = login_body(tenant)
    login["auth"]["scope"] = {"project": {"id": tenant.project_id}}
    twice = "nocatalog=&nocatalog=true"
    refused = httpx.post(f"{base}/v3/auth/tokens?{twice}", json=login)
    assert (refused.status_code, refused.json()) == (
        400,
        _iam_refusal("nocatalog", "must not be given more than once"),
    )
    assert refused.headers["x-request-id"]
    not_utf8 = httpx.post(f"{base}/v3/auth/tokens?nocatalog=%FF", json=login)
    assert (not_utf8.status_code, not_utf8.json()) == (
        400,
        _iam_refusal("query", "must be UTF-8 once percent-decoded"),
    )
    # A NUL is refused before routing, by the edge guard: in IAM's shape here too (it
    # answered WorkspaceApp's WKS.00211102 while the route's own refusals said IAM.0011).
    with_nul = httpx.post(f"{base}/v3/auth/tokens?nocatalog=%00", json=login)
    assert (with_nul.status_code, with_nul.json()) == (
        400,
        _iam_refusal("query", "must not contain NUL characters"),
    )
    # The flag itself: any non-empty value leaves the catalog out; "+" is a value too.
    with_catalog = httpx.post(f"{base}/v3/auth/tokens?nocatalog=", json=login)
    assert with_catalog.status_code == 201
    assert with_catalog.json()["token"]["catalog"][0]["type"] == "workspace"
    token = with_catalog.headers["x-subject-token"]
    without = httpx.post(f"{base}/v3/auth/tokens?nocatalog=+", json=login)
    assert (without.status_code, "catalog" in without.json()["token"]) == (201, False)

    both = {"X-Auth-Token": token, "X-Subject-Token": token}
    checked = httpx.get(f"{base}/v3/auth/tokens?{twice}", headers=both)
    assert (checked.status_code, checked.json()["error_code"]) == (400, "IAM.0011")
    checked = httpx.get(f"{base}/v3/auth/tokens?nocatalog=1", headers=both)
    assert (checked.status_code, "catalog" in checked.json()["token"]) == (200, False)

    http = signed_client(base, tenant)
    for path in ("/v3/projects", "/v3/auth/domains"):
        repeated = http.get(path, params=[("name", tenant.region), ("name", "x")])
        assert (repeated.status_code, repeated.json()) == (
            400,
            _iam_refusal("name", "must not be given more than once"),
        ), path
    temporary = httpx.post(
        f"{base}/v3.0/OS-CREDENTIAL/securitytokens?a=1&a=2",
        json={"auth": {"identity": {"methods": ["token"], "token": {"id": token}}}},
    )
    assert (temporary.status_code, temporary.json()) == (
        400,
        _iam_refusal("a", "must not be given more than once"),
    )
    live_server.assert_quiet_log()


def test_v3_projects_answers_keystones_filters_and_pages(
    live_server: ServerProcess, live_database_url: str
) -> None:
    """IAM's project list takes domain_id, parent_id, enabled, is_domain, page and
    per_page besides name (IAMSDK KeystoneListProjectsRequest); they were ignored, so
    ``enabled=false`` listed enabled projects. Each is answered now, and a bad value is a
    400 in IAM's shape."""
    tenant = new_tenant(live_database_url)
    base = live_server.base_url
    second = with_identity(
        live_database_url, lambda i: i.create_project(tenant.account, "zz-second-1")
    )
    http = signed_client(base, tenant)

    def names(**query: str) -> list[str]:
        listed = http.get("/v3/projects", params=query)
        assert listed.status_code == 200, listed.text
        return [p["name"] for p in listed.json()["projects"]]

    both = [tenant.region, second.name]
    account = http.get("/v3/auth/domains").json()["domains"][0]["id"]
    assert names() == both
    assert names(name=second.name) == [second.name]
    assert names(domain_id=account, parent_id=account, enabled="true", is_domain="false") == both
    assert names(domain_id="another") == names(enabled="false") == names(is_domain="true") == []

    first_page = http.get("/v3/projects", params={"per_page": "1"}).json()
    assert [p["name"] for p in first_page["projects"]] == [tenant.region]
    links = first_page["links"]
    assert links["previous"] is None
    assert links["next"] == f"{base}/v3/projects?page=2&per_page=1"
    following = http.get(links["next"].removeprefix(base)).json()
    assert [p["name"] for p in following["projects"]] == [second.name]
    assert following["links"]["next"] is None
    assert following["links"]["previous"] == f"{base}/v3/projects?page=1&per_page=1"

    for query, name, reason in [
        ({"per_page": "0"}, "per_page", "must be an integer from 1 to 5000"),
        ({"page": "x"}, "page", "must be an integer from 1 to 2147483647"),
        ({"enabled": "yes"}, "enabled", "must be one of true, false"),
    ]:
        refused = http.get("/v3/projects", params=query)
        assert (refused.status_code, refused.json()) == (400, _iam_refusal(name, reason))
    live_server.assert_quiet_log()


def test_the_sdk_discovers_its_project_through_v3_projects(
    live_server: ServerProcess, live_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = new_tenant(live_database_url, region="ap-southeast-3")
    write_jobs(live_database_url, [make_job(tenant.project_id)])
    monkeypatch.setenv("HUAWEICLOUD_SDK_IAM_ENDPOINT", live_server.base_url)
    client = (
        WorkspaceAppClient.new_builder()
        .with_credentials(BasicCredentials(tenant.access_key, tenant.secret_key))
        .with_region(Region("ap-southeast-3", live_server.base_url))
        .build()
    )
    assert client.list_image_jobs(LIST).count == 1


def _cli(database_url: str, *args: str) -> Any:
    env = {**os.environ, "IMAGEJOBS_ENCRYPTION_KEY": TEST_KEY_BASE64}
    done = subprocess.run(
        [sys.executable, "-m", "imagejobs", "iam", *args, "--database-url", database_url, "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_the_iam_cli_creates_working_credentials(
    live_server: ServerProcess, live_database_url: str
) -> None:
    created = _cli(live_database_url, "create-account", "cli-made")
    tenant = Tenant(
        "cli-made",
        created["project_id"],
        created["project_name"],
        created["password"],
        created["access_key"],
        created["secret_key"],
    )
    assert sdk_client(live_server.base_url, tenant).list_image_jobs(LIST).count == 0

    _cli(live_database_url, "create-user", "--account", "cli-made", "viewer")
    _cli(
        live_database_url,
        "attach-policy",
        "--account",
        "cli-made",
        "--policy",
        "Workspace ReadOnlyAccess",
        "--user",
        "viewer",
        "--project",
        created["project_name"],
    )
    key = _cli(live_database_url, "create-access-key", "--account", "cli-made", "--user", "viewer")
    viewer = sdk_client(
        live_server.base_url, tenant, access_key=key["access_key"], secret_key=key["secret_key"]
    )
    assert viewer.list_image_jobs(LIST).count == 0
    delete = BatchDeleteImageSubJobsRequest(body=BatchDeleteSubJobsReq(items=["1"]))
    _refused(lambda: viewer.batch_delete_image_sub_jobs(delete), 403, "WKS.00081102")

    keys = _cli(live_database_url, "list-access-keys", "--account", "cli-made")
    assert {k["user"] for k in keys} == {"cli-made", "viewer"}
    assert all("secret" not in json.dumps(k) for k in keys)
    _cli(live_database_url, "disable-access-key", "--account", "cli-made", key["access_key"])
    _refused(lambda: viewer.list_image_jobs(LIST), 401, "APIGW.0301")


def test_nothing_secret_reaches_the_server_log(
    live_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    token = password_token(live_server.base_url, tenant)
    credential = httpx.post(
        live_server.base_url + "/v3.0/OS-CREDENTIAL/securitytokens",
        headers={"X-Auth-Token": token},
        json={"auth": {"identity": {"methods": ["token"]}}},
    ).json()
    bad = sdk_client(live_server.base_url, tenant, secret_key="z" * 40)
    _refused(lambda: bad.list_image_jobs(LIST), 401, "APIGW.0301")
    assert sdk_client(live_server.base_url, tenant).list_image_jobs(LIST).count == 0
    log = live_server.log_path.read_text()
    secrets = [
        tenant.secret_key,
        tenant.password,
        token,
        credential["credential"]["secret"],
        credential["credential"]["securitytoken"],
    ]
    assert not [s for s in secrets if s in log]
