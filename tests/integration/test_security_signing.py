"""Attacks on signatures and policies, made over HTTP against a real server (issue 8, items
1, 10 and 11): what the signature covers, what a 401 says, what a policy may grant."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from imagejobs.domain.times import now_ms
from imagejobs.iam.credentials import SecretBox, new_id
from imagejobs.iam.records import PolicyRecord
from imagejobs.iam.signing import (
    SigningAlgorithm,
    canonical_request,
    canonical_uri,
    compute_signature,
    payload_hash,
    sign_request,
    string_to_sign,
)
from imagejobs.iam.sm3 import SM3
from imagejobs.services.identity import IdentityService
from imagejobs.storage.database import database_for
from imagejobs.storage.iam_store import SqlIamStore
from imagejobs.storage.migrate import migrate
from tests.conftest import ServerProcess
from tests.factories import (
    OPERATOR_HEADERS,
    TEST_KEY,
    Tenant,
    make_job,
    new_tenant,
    write_jobs,
)
from tests.integration.http import AkSkAuth, login_body, password_token

SHA256 = SigningAlgorithm.HMAC_SHA256
SM3_SCHEME = SigningAlgorithm.HMAC_SM3
CONTENT_HEADER = {SHA256: "X-Sdk-Content-Sha256", SM3_SCHEME: "X-Sdk-Content-Sm3"}


def _hash(algorithm: SigningAlgorithm, body: bytes) -> str:
    return hashlib.sha256(body).hexdigest() if algorithm is SHA256 else SM3(body).hexdigest()


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    # What is attacked here (signatures, messages, policy rules) is the same on every database.
    url = f"sqlite:///{tmp_path_factory.mktemp('attacks') / 'imagejobs.db'}"
    asyncio.run(migrate(url))
    return url


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(database_url, tmp_path_factory.mktemp("server"))
    yield process
    process.stop()


def _signed_like_the_sdk(
    server: ServerProcess,
    tenant: Tenant,
    method: str,
    path: str,
    body: bytes,
    *,
    algorithm: SigningAlgorithm = SHA256,
    extra: dict[str, str] | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers the official SDK sends with a JSON request (all of them signed)."""
    headers = {
        "Host": server.base_url.removeprefix("http://"),
        "Content-Type": "application/json",
        "X-Project-Id": tenant.project_id,
        **(extra or {}),
    }
    return headers | sign_request(
        method,
        path,
        [],
        headers,
        body,
        ak=tenant.access_key,
        sk=tenant.secret_key,
        algorithm=algorithm,
        now=now or datetime.now(UTC),
    )


def _sub_jobs_left(server: ServerProcess, tenant: Tenant, job_id: str) -> int:
    response = httpx.get(
        f"{server.base_url}/v1/{tenant.project_id}/image-server-sub-jobs",
        params={"job_type": "CREATE_SERVER", "job_id": job_id},
        auth=AkSkAuth(tenant.access_key, tenant.secret_key),
    )
    assert response.status_code == 200, response.text
    count: int = response.json()["count"]
    return count


def _refused_401(response: httpx.Response, text: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error_code"] == "APIGW.0301"
    assert text in response.json()["error_msg"]


# --- item 1: a captured signed write replayed with another body ----------------------------


@pytest.mark.parametrize("algorithm", [SHA256, SM3_SCHEME])
@pytest.mark.parametrize("content_hash_signed", [False, True], ids=["unsigned", "signed"])
def test_a_captured_write_cannot_be_replayed_with_another_body(
    server: ServerProcess,
    database_url: str,
    algorithm: SigningAlgorithm,
    content_hash_signed: bool,
) -> None:
    tenant = new_tenant(database_url)
    job = make_job(tenant.project_id, sub_jobs=3)
    write_jobs(database_url, [job])
    path = f"/v1/{tenant.project_id}/image-server-sub-jobs/actions/batch-delete"
    url = server.base_url + path
    original = json.dumps({"items": ["1"]}).encode()
    header = CONTENT_HEADER[algorithm]
    # Some clients (the Go SDK's users) send and sign the body's hash themselves.
    extra = {header: _hash(algorithm, original)} if content_hash_signed else {}
    captured = _signed_like_the_sdk(
        server, tenant, "PATCH", path, original, algorithm=algorithm, extra=extra
    )
    assert httpx.patch(url, content=original, headers=captured).status_code == 200

    # The attacker replays it with a body naming every sub-job, and the original body's
    # hash in the content-hash header (added unsigned, when the client did not sign one).
    forged = json.dumps({"items": [str(sub.id) for sub in job.sub_jobs]}).encode()
    replay = captured | {header: _hash(algorithm, original)}
    response = httpx.patch(url, content=forged, headers=replay)
    expected = (
        f"{header} must be UNSIGNED-PAYLOAD or the "
        f"{'SHA-256' if algorithm is SHA256 else 'SM3'} of the body received"
        if content_hash_signed
        else "verify aksk signature fail"
    )
    _refused_401(response, expected)
    assert _sub_jobs_left(server, tenant, job.job.id) == 3


def test_a_signature_that_leaves_host_out_is_refused(
    server: ServerProcess, database_url: str
) -> None:
    # Unsigned, Host would let a request captured for one endpoint be replayed at another
    # that trusts the same keys.
    tenant = new_tenant(database_url)
    path = f"/v1/{tenant.project_id}/image-server-jobs"
    date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {"x-sdk-date": date}
    canonical = canonical_request(
        "GET",
        canonical_uri(path),
        "job_type=CREATE_SERVER",
        headers=headers,
        signed_headers=["x-sdk-date"],
        hashed_payload=payload_hash(SHA256, b"", None),
    )
    signature = compute_signature(
        SHA256, tenant.secret_key, string_to_sign(SHA256, date, canonical)
    )
    headers["Authorization"] = (
        f"{SHA256} Access={tenant.access_key}, SignedHeaders=x-sdk-date, Signature={signature}"
    )
    response = httpx.get(f"{server.base_url}{path}?job_type=CREATE_SERVER", headers=headers)
    _refused_401(response, "host must be listed in SignedHeaders")


def _signed_get(server: ServerProcess, tenant: Tenant, path: str, signed_query: str) -> bytes:
    """The head of a GET the SDK signed for ``signed_query`` (its canonical query), without
    the request line: a replay may put any query on the wire."""
    host = server.base_url.removeprefix("http://")
    headers = {"Host": host}
    pairs = [tuple(part.split("=", 1)) for part in signed_query.split("&")]
    headers |= sign_request(
        "GET",
        path,
        [(unquote(k), unquote(v)) for k, v in pairs],
        headers,
        b"",
        ak=tenant.access_key,
        sk=tenant.secret_key,
        algorithm=SHA256,
        now=datetime.now(UTC),
    )
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode()


def _get_raw(server: ServerProcess, target: bytes, head: bytes) -> tuple[int, Any]:
    request = b"GET " + target + b" HTTP/1.1\r\n" + head + b"Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def test_a_signed_query_means_one_thing_however_it_is_put_on_the_wire(
    server: ServerProcess, database_url: str
) -> None:
    # The signature sorts a query's pairs and decodes each once ("+" stays a plus sign), so
    # the wire forms below all verify as the request signed. The answer must then be the
    # one the signer asked for, or a 400: never another (a replay could pick the last of
    # repeated keys, or turn percent-escapes into raw bytes the app once read as Latin-1).
    tenant = new_tenant(database_url)
    auth = AkSkAuth(tenant.access_key, tenant.secret_key)
    servers_path = f"/v1/{tenant.project_id}/image-servers"
    body = {
        "name": "镜像",
        "root_volume": {"type": "SAS", "size": 80},
        "image_ref": {"id": "img-1", "image_type": "public"},
        "vpc_id": "vpc-1",
        "subnet_id": "subnet-1",
        "product_id": "workspace.x86.a.b",
        "authorize_accounts": [{"account": "alice", "account_type": "USER"}],
    }
    created = httpx.post(server.base_url + servers_path, json=body, auth=auth)
    assert created.status_code == 200, created.text

    signed_query = "server_name=%E9%95%9C%E5%83%8F"  # as the SDK sends "镜像"
    head = _signed_get(server, tenant, servers_path, signed_query)
    for wire_query in (signed_query, "server_name=镜像"):
        target = f"{servers_path}?{wire_query}".encode()
        status, answer = _get_raw(server, target, head)
        assert (status, answer["count"]) == (200, 1), (wire_query, answer)

    jobs_path = f"/v1/{tenant.project_id}/image-server-jobs"
    signed_query = "job_type=CREATE_SERVER&job_type=DELETE_SERVER"
    head = _signed_get(server, tenant, jobs_path, signed_query)
    for wire_query in (signed_query, "job_type=DELETE_SERVER&job_type=CREATE_SERVER"):
        status, answer = _get_raw(server, f"{jobs_path}?{wire_query}".encode(), head)
        assert status == 400, answer
        assert answer == {
            "error_code": "WKS.00211102",
            "error_msg": "The parameter is invalid: job_type must not be given more than once",
        }

    # Not UTF-8 once decoded: refused by name, never guessed at.
    token = password_token(server.base_url, tenant)
    head = f"Host: x\r\nX-Auth-Token: {token}\r\n".encode()
    status, answer = _get_raw(server, f"{servers_path}?server_name=%FF".encode(), head)
    assert (status, answer["error_code"]) == (400, "WKS.00211102"), answer
    assert "query must be UTF-8" in answer["error_msg"]


# --- item 10: no error message contains a credential ---------------------------------------


def _temporary_credential(server: ServerProcess, token: str, policy: Any = None) -> httpx.Response:
    identity: dict[str, Any] = {"methods": ["token"], "token": {"duration_seconds": 900}}
    if policy is not None:
        identity["policy"] = policy
    return httpx.post(
        server.base_url + "/v3.0/OS-CREDENTIAL/securitytokens",
        json={"auth": {"identity": identity}},
        headers={"X-Auth-Token": token},
    )


class _SendUnsigned(httpx.Auth):
    """Signs with ``inner``, then adds headers outside the signature."""

    def __init__(self, inner: httpx.Auth, **headers: str) -> None:
        self._inner = inner
        self._headers = headers

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        flow = self._inner.sync_auth_flow(request)
        signed = next(flow)
        signed.headers.update(self._headers)
        yield signed


def test_no_auth_error_echoes_a_credential(server: ServerProcess, database_url: str) -> None:
    tenant = new_tenant(database_url)
    base = server.base_url
    jobs = f"{base}/v1/{tenant.project_id}/image-server-jobs?job_type=CREATE_SERVER"
    token = password_token(base, tenant)
    other_token = password_token(base, tenant)
    credential = _temporary_credential(server, token).json()["credential"]
    access, secret, security_token = (
        credential["access"],
        credential["secret"],
        credential["securitytoken"],
    )
    revoked = password_token(base, tenant)
    httpx.delete(
        base + "/v3/auth/tokens", headers={"X-Auth-Token": revoked, "X-Subject-Token": revoked}
    )
    secrets = {
        "the password": tenant.password,
        "the secret key": tenant.secret_key,
        "the temporary secret key": secret,
        "the security token": security_token,
        "a token": token,
        "another token": other_token,
        "a revoked token": revoked,
        "the operator token": OPERATOR_HEADERS["X-Imagejobs-Operator-Token"],
    }

    def attempts() -> Iterator[tuple[str, httpx.Response]]:
        # AK/SK: a temporary key with a wrong SK (the canonical request holds its token)...
        yield "wrong temporary SK", httpx.get(jobs, auth=AkSkAuth(access, "x" * 40, security_token))
        # ...with the wrong security token, and with one sent outside the signature.
        yield "wrong security token", httpx.get(jobs, auth=AkSkAuth(access, secret, token))
        unsigned_token = _SendUnsigned(
            AkSkAuth(access, secret), **{"X-Security-Token": security_token}
        )
        yield "unsigned security token", httpx.get(jobs, auth=unsigned_token)
        # A permanent key with a wrong SK, a token and a cookie signed along (the SDK signs
        # every header the caller sets).
        with_token = httpx.get(
            jobs,
            auth=AkSkAuth(tenant.access_key, "y" * 40),
            headers={"X-Auth-Token": other_token, "Cookie": f"session={token}"},
        )
        yield "signed X-Auth-Token", with_token
        yield (
            "tampered signature",
            httpx.get(
                jobs,
                auth=_SendUnsigned(
                    AkSkAuth(tenant.access_key, tenant.secret_key),
                    Authorization=f"{SHA256} Access={tenant.access_key}, "
                    f"SignedHeaders=host;x-sdk-date, Signature={secret}",
                ),
            ),
        )
        # Tokens: unknown, revoked, as the subject of a check, in a securitytokens body.
        yield "unknown token", httpx.get(jobs, headers={"X-Auth-Token": token + "x"})
        yield "revoked token", httpx.get(jobs, headers={"X-Auth-Token": revoked})
        yield (
            "check of a revoked token",
            httpx.get(
                base + "/v3/auth/tokens",
                headers={"X-Auth-Token": token, "X-Subject-Token": revoked},
            ),
        )
        yield (
            "securitytokens with a revoked token",
            httpx.post(
                base + "/v3.0/OS-CREDENTIAL/securitytokens",
                json={"auth": {"identity": {"methods": ["token"], "token": {"id": revoked}}}},
            ),
        )
        # Passwords: a wrong one, and the real one where an object belongs.
        wrong_password = login_body(tenant, password=tenant.password + "!")
        yield "wrong password", httpx.post(base + "/v3/auth/tokens", json=wrong_password)
        malformed = login_body(tenant)
        malformed["auth"]["identity"]["password"]["user"]["domain"] = tenant.password
        yield "malformed login", httpx.post(base + "/v3/auth/tokens", json=malformed)
        # The operator token, wrong.
        yield (
            "wrong operator token",
            httpx.get(jobs, headers={"X-Imagejobs-Operator-Token": token}),
        )
        # Signatures refused before any HMAC: an unknown AK, a stale date, a malformed
        # header (a secret where the signature belongs), another project in X-Project-Id.
        yield "unknown AK", httpx.get(jobs, auth=AkSkAuth("NOSUCHKEY000000000000", secret))
        list_path = f"/v1/{tenant.project_id}/image-server-jobs"
        stale = _signed_like_the_sdk(
            server,
            tenant,
            "GET",
            list_path,
            b"",
            extra={"X-Security-Token": security_token},
            now=datetime.now(UTC) - timedelta(hours=1),
        )
        yield "stale signature", httpx.get(base + list_path, headers=stale)
        malformed_signature = (
            f"{SHA256} Access={access}, SignedHeaders=host;x-sdk-date, Signature={secret}"
        )
        yield (
            "malformed Authorization",
            httpx.get(jobs, headers={"Authorization": malformed_signature}),
        )
        yield (
            "another project in X-Project-Id",
            httpx.get(jobs, headers={"X-Auth-Token": token, "X-Project-Id": "p" + token}),
        )

    for attempt, response in attempts():
        assert 400 <= response.status_code < 500, (attempt, response.text)
        for name, secret_value in secrets.items():
            assert secret_value not in response.text, f"{attempt}: the answer holds {name}"
            assert secret_value not in str(response.headers), f"{attempt}: a header has {name}"
    log = server.log_path.read_text()
    for name, secret_value in secrets.items():
        assert secret_value not in log, f"the server log holds {name}"


# --- item 11: policies that look restrictive but are not -----------------------------------

ALLOW_ONE_SERVER = {
    "Effect": "Allow",
    "Action": ["workspace:*:*"],
    "Resource": ["workspace:*:*:imageServer:srv-1"],
}
DENY_OUTSIDE_THE_OFFICE = {
    "Effect": "Deny",
    "Action": ["workspace:*:*"],
    "Condition": {"StringNotEquals": {"g:SourceIp": ["10.1.2.3"]}},
}


@pytest.mark.parametrize(
    ("statements", "named"),
    [
        ([ALLOW_ONE_SERVER], "policy.Statement[0].Resource[0] is not supported"),
        (
            [{"Effect": "Allow", "Action": ["workspace:*:*"]}, DENY_OUTSIDE_THE_OFFICE],
            "policy.Statement[1].Condition.StringNotEquals.g:SourceIp condition key "
            "'g:SourceIp' is not supported",
        ),
    ],
    ids=["resource", "unknown-condition-key"],
)
def test_a_policy_the_service_cannot_enforce_is_refused_at_creation(
    server: ServerProcess, database_url: str, statements: list[Any], named: str
) -> None:
    # A temporary key meant to reach one server, or only from the office, would reach
    # everything from everywhere: refused with a 400 naming the element instead.
    tenant = new_tenant(database_url)
    token = password_token(server.base_url, tenant)
    response = _temporary_credential(
        server, token, policy={"Version": "1.1", "Statement": statements}
    )
    assert response.status_code == 400, response.text
    assert named in response.text


def test_stored_policies_the_service_cannot_enforce_fail_closed(
    server: ServerProcess, database_url: str
) -> None:
    """Policies stored by an earlier version (Resource accepted but ignored) deny."""
    tenant = new_tenant(database_url)
    write_jobs(database_url, [make_job(tenant.project_id)])
    documents = {
        "one-server": [ALLOW_ONE_SERVER],
        "all-but-outside-office": [
            {"Effect": "Allow", "Action": ["workspace:*:*"]},
            DENY_OUTSIDE_THE_OFFICE,
        ],
    }

    async def store_and_attach() -> dict[str, tuple[str, str]]:
        database = database_for(database_url)
        await database.open()
        try:
            store = SqlIamStore(database)
            identity = IdentityService(store, SecretBox(TEST_KEY))
            account = await identity.account(tenant.account)
            keys = {}
            for name, statements in documents.items():
                document = json.dumps({"Version": "1.1", "Statement": statements})
                # Written as an earlier version did, without today's validation.
                await store.create_policy(
                    PolicyRecord(new_id(), account.id, name, "", document, now_ms())
                )
                await identity.create_user(tenant.account, name)
                await identity.attach_policy(tenant.account, name, user_name=name)
                key = await identity.create_access_key(tenant.account, name)
                keys[name] = (key.key.access_key, key.secret_key)
            return keys
        finally:
            await database.close()

    keys = asyncio.run(store_and_attach())
    jobs = f"{server.base_url}/v1/{tenant.project_id}/image-server-jobs"
    for name, (access_key, secret_key) in keys.items():
        response = httpx.get(
            jobs, params={"job_type": "CREATE_SERVER"}, auth=AkSkAuth(access_key, secret_key)
        )
        assert response.status_code == 403, (name, response.text)
        assert response.json()["error_code"] == "WKS.00081102"
