"""Attacks on credentials over HTTP, as an attacker would send them (raw httpx, several
source addresses on the loopback network), on SQLite and PostgreSQL: login floods and
guessing, AK lockout by strangers, minting without bound, temporary keys outliving or
outgrowing their token (docs/security.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from imagejobs.storage.database import Statement, database_for
from tests.conftest import ServerProcess
from tests.factories import Tenant, new_tenant, with_identity
from tests.integration.http import AkSkAuth

LIMITS = {
    "IMAGEJOBS_PASSWORD_HASH_THREADS": "1",
    "IMAGEJOBS_PASSWORD_HASH_QUEUE": "1",
    "IMAGEJOBS_LOGIN_ADDRESS_MAX_FAILURES": "6",
    "IMAGEJOBS_MAX_LIVE_TOKENS_PER_USER": "3",
    "IMAGEJOBS_MAX_LIVE_TEMPORARY_KEYS_PER_USER": "3",
    "IMAGEJOBS_CREDENTIAL_PURGE_SECONDS": "0.2",
}


@pytest.fixture(scope="module")
def guarded_server(
    live_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = ServerProcess(live_database_url, tmp_path_factory.mktemp("guarded"), extra_env=LIMITS)
    yield process
    process.stop()


def _from(address: str, **kwargs: Any) -> httpx.Client:
    """A client whose connections come from ``address`` (any 127.x.y.z reaches the server)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), **kwargs)


def _login_body(tenant: Tenant, user: str, password: str, project: str | None = None) -> Any:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "password": password, "domain": {"name": tenant.account}}
                },
            },
            "scope": {"project": {"id": project or tenant.project_id}},
        }
    }


def _login(
    server: ServerProcess,
    tenant: Tenant,
    *,
    user: str | None = None,
    password: str | None = None,
    project: str | None = None,
    domain: bool = False,
    address: str = "127.0.0.1",
) -> httpx.Response:
    body = _login_body(tenant, user or tenant.account, password or tenant.password, project)
    if domain:
        body["auth"]["scope"] = {"domain": {"name": tenant.account}}
    with _from(address) as client:
        return client.post(server.base_url + "/v3/auth/tokens", json=body)


def _token(server: ServerProcess, tenant: Tenant, **kwargs: Any) -> str:
    response = _login(server, tenant, **kwargs)
    assert response.status_code == 201, response.text
    return response.headers["x-subject-token"]


def _temporary_key(server: ServerProcess, token: str) -> httpx.Response:
    body = {"auth": {"identity": {"methods": ["token"], "token": {"duration_seconds": 900}}}}
    return httpx.post(
        server.base_url + "/v3.0/OS-CREDENTIAL/securitytokens",
        json=body,
        headers={"X-Auth-Token": token},
    )


def _revoke(server: ServerProcess, token: str) -> None:
    both = {"X-Auth-Token": token, "X-Subject-Token": token}
    assert httpx.delete(server.base_url + "/v3/auth/tokens", headers=both).status_code == 204


def _list_jobs(
    server: ServerProcess, project_id: str, auth: httpx.Auth, address: str = "127.0.0.1"
) -> httpx.Response:
    with _from(address) as client:
        return client.get(
            f"{server.base_url}/v1/{project_id}/image-server-jobs",
            params={"job_type": "CREATE_SERVER"},
            auth=auth,
        )


def _temporary_auth(credential: dict[str, str]) -> AkSkAuth:
    return AkSkAuth(credential["access"], credential["secret"], credential["securitytoken"])


# --- 2. password logins: no stall, no unlimited guessing ----------------------------------


def test_a_login_flood_is_refused_at_once_while_aksk_requests_are_served(
    guarded_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    victim = new_tenant(live_database_url)

    def wrong_login(i: int) -> httpx.Response:
        # Many names, from an address of its own: the hashing queue is what gives way.
        return _login(
            guarded_server, victim, user=f"guess-{i}", password=f"Wrong-{i}", address="127.0.0.2"
        )

    with ThreadPoolExecutor(12) as pool:
        flood = [pool.submit(wrong_login, i) for i in range(36)]
        during = _list_jobs(
            guarded_server, tenant.project_id, AkSkAuth(tenant.access_key, tenant.secret_key)
        )
        answers = [f.result() for f in flood]

    assert during.status_code == 200
    statuses = {r.status_code for r in answers}
    assert statuses <= {401, 429}, [r.text for r in answers if r.status_code not in (401, 429)]
    throttled = [r for r in answers if r.status_code == 429]
    assert throttled, "a flood beyond the hashing queue is answered 429"
    for response in throttled:
        assert response.json()["error_code"] == "APIGW.0308"
        assert response.json()["error_msg"].startswith("The throttling threshold has been reached")
        assert int(response.headers["retry-after"]) >= 1
    # At its 6th failure the flood's address is throttled, even with the right password;
    # other addresses still log in.
    guesses = [wrong_login(i) for i in range(6)]
    assert guesses[-1].status_code == 429
    assert _login(guarded_server, victim, address="127.0.0.2").status_code == 429
    assert _login(guarded_server, victim, address="127.0.0.1").status_code == 201


def test_five_wrong_passwords_lock_password_logins_only(
    guarded_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    token = _token(guarded_server, tenant)
    for _ in range(5):
        wrong = _login(guarded_server, tenant, password="Wrong-passw0rd", address="127.0.0.3")
        assert wrong.json()["error"]["message"] == "The username or password is wrong."
    # Now even the right password is refused, from any address, without a hash...
    for address in ("127.0.0.3", "127.0.0.4"):
        locked = _login(guarded_server, tenant, address=address)
        assert locked.status_code == 401
        assert "locked" in locked.json()["error"]["message"]
        assert 0 < int(locked.headers["retry-after"]) <= 900
    # ...while the user's AK/SK and tokens keep working.
    auth = AkSkAuth(tenant.access_key, tenant.secret_key)
    assert _list_jobs(guarded_server, tenant.project_id, auth).status_code == 200
    url = f"{guarded_server.base_url}/v1/{tenant.project_id}/image-server-jobs"
    listed = httpx.get(url, params={"job_type": "CREATE_SERVER"}, headers={"X-Auth-Token": token})
    assert listed.status_code == 200


def test_a_name_that_does_not_exist_answers_exactly_as_a_real_one(
    guarded_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    for user, address in ((tenant.account, "127.0.0.5"), ("no-such-user", "127.0.0.6")):
        answers = [
            _login(guarded_server, tenant, user=user, password="Wrong-passw0rd", address=address)
            for _ in range(6)
        ]
        assert [r.status_code for r in answers] == [401] * 6
        assert [r.json()["error"]["message"] for r in answers[:5]] == [
            "The username or password is wrong."
        ] * 5
        assert "locked" in answers[5].json()["error"]["message"]


# --- 4. a stranger who knows the AK cannot lock its owner out ------------------------------


def test_bad_signatures_from_one_address_never_refuse_the_owners_signature(
    guarded_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    forged = AkSkAuth(tenant.access_key, "x" * 40)
    answers = [_list_jobs(guarded_server, tenant.project_id, forged, "127.0.1.1") for _ in range(8)]
    assert [r.status_code for r in answers] == [401] * 8
    assert "signature fail" in answers[5].json()["error_msg"]
    assert answers[7].json()["error_msg"].endswith("AK access failed to reach the limit,forbidden.")
    # Another address is not locked: its failures are its own.
    other = _list_jobs(guarded_server, tenant.project_id, forged, "127.0.1.2")
    assert "signature fail" in other.json()["error_msg"]
    # The owner's valid signature passes from its own address and from the attacker's.
    owner = AkSkAuth(tenant.access_key, tenant.secret_key)
    for address in ("127.0.0.1", "127.0.1.1"):
        assert _list_jobs(guarded_server, tenant.project_id, owner, address).status_code == 200


# --- 6. credentials are bounded per user, and dead ones are purged ------------------------


def test_tokens_and_temporary_keys_are_bounded_per_user(
    guarded_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    tokens = [_token(guarded_server, tenant, address="127.0.2.1") for _ in range(3)]
    refused = _login(guarded_server, tenant, address="127.0.2.1")
    assert refused.status_code == 409
    assert refused.json()["error_code"] == "WKS.00211103"
    assert "already holds 3 live tokens" in refused.json()["error_msg"]
    assert int(refused.headers["retry-after"]) > 0
    # Revoking one makes room.
    _revoke(guarded_server, tokens[0])
    tokens[0] = _token(guarded_server, tenant, address="127.0.2.1")

    for _ in range(3):
        assert _temporary_key(guarded_server, tokens[1]).status_code == 201
    refused = _temporary_key(guarded_server, tokens[2])
    assert refused.status_code == 409
    assert "already holds 3 live temporary keys" in refused.json()["error_msg"]
    # Keys die with their token, and stop counting at once.
    _revoke(guarded_server, tokens[1])
    assert _temporary_key(guarded_server, tokens[2]).status_code == 201

    # A new password ends the old tokens, which stop counting: the user can log in again.
    tokens[1] = _token(guarded_server, tenant, address="127.0.2.1")
    assert _login(guarded_server, tenant, address="127.0.2.1").status_code == 409
    with_identity(
        live_database_url,
        lambda i: i.set_password(tenant.account, tenant.account, "An0ther-password"),
    )
    assert _login(guarded_server, tenant, password="An0ther-password").status_code == 201


def _rows(database_url: str, sql: str) -> int:
    async def count() -> int:
        database = database_for(database_url)
        await database.open()
        try:
            return int((await database.fetch(Statement(sql), {}))[0][0])
        finally:
            await database.close()

    return asyncio.run(count())


def test_revoked_tokens_and_their_temporary_keys_are_purged(
    guarded_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    token = _token(guarded_server, tenant, address="127.0.2.2")
    credential = _temporary_key(guarded_server, token).json()["credential"]
    user = f"(SELECT id FROM iam_users WHERE name = '{tenant.account}')"
    tokens_sql = f"SELECT COUNT(*) FROM iam_tokens WHERE user_id = {user}"
    keys_sql = f"SELECT COUNT(*) FROM iam_access_keys WHERE user_id = {user} AND expires_at > 0"
    assert (_rows(live_database_url, tokens_sql), _rows(live_database_url, keys_sql)) == (1, 1)

    _revoke(guarded_server, token)
    for _ in range(100):
        if (_rows(live_database_url, tokens_sql), _rows(live_database_url, keys_sql)) == (0, 0):
            break
        asyncio.run(asyncio.sleep(0.1))
    assert (_rows(live_database_url, tokens_sql), _rows(live_database_url, keys_sql)) == (0, 0)
    assert (
        _list_jobs(guarded_server, tenant.project_id, _temporary_auth(credential)).status_code
        == 401
    )


# --- 9. a temporary key is no wider than its token, and dies with it ----------------------


def test_a_temporary_key_carries_its_tokens_scope(
    guarded_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    other = with_identity(
        live_database_url, lambda i: i.create_project(tenant.account, "ap-southeast-1")
    )
    scoped = _temporary_key(guarded_server, _token(guarded_server, tenant, address="127.0.3.1"))
    auth = _temporary_auth(scoped.json()["credential"])
    assert _list_jobs(guarded_server, tenant.project_id, auth).status_code == 200
    refused = _list_jobs(guarded_server, other.id, auth)
    assert (refused.status_code, refused.json()["error_code"]) == (403, "WKS.00081102")

    domain_token = _token(guarded_server, tenant, domain=True, address="127.0.3.1")
    domain_key = _temporary_auth(_temporary_key(guarded_server, domain_token).json()["credential"])
    for project in (tenant.project_id, other.id):
        assert _list_jobs(guarded_server, project, domain_key).status_code == 403


def test_a_temporary_key_dies_with_its_token_and_the_password(
    guarded_server: ServerProcess, live_database_url: str
) -> None:
    tenant = new_tenant(live_database_url)
    first, second = (_token(guarded_server, tenant, address="127.0.3.2") for _ in range(2))
    keys = [
        _temporary_auth(_temporary_key(guarded_server, t).json()["credential"])
        for t in (first, second)
    ]
    for key in keys:
        assert _list_jobs(guarded_server, tenant.project_id, key).status_code == 200

    _revoke(guarded_server, first)
    assert _list_jobs(guarded_server, tenant.project_id, keys[0]).status_code == 401
    assert _list_jobs(guarded_server, tenant.project_id, keys[1]).status_code == 200

    with_identity(
        live_database_url,
        lambda i: i.set_password(tenant.account, tenant.account, "An0ther-password"),
    )
    assert _list_jobs(guarded_server, tenant.project_id, keys[1]).status_code == 401
    # The permanent AK/SK is not a token's child: it keeps working.
    auth = AkSkAuth(tenant.access_key, tenant.secret_key)
    assert _list_jobs(guarded_server, tenant.project_id, auth).status_code == 200


def test_a_revoked_token_is_refused_at_once_by_the_process_that_revoked_it() -> None:
    """Other processes see a revocation within IMAGEJOBS_IAM_CACHE_SECONDS; the process
    that revoked the token knows at once (it went on accepting it for up to that long: a
    leaked token, revoked by its owner, still worked)."""
    import imagejobs.testing
    from tests.integration.http import password_token

    with imagejobs.testing.serve(iam_cache_seconds=60) as cloud:
        made = cloud.tenant()
        tenant = Tenant(
            made.account,
            made.project_id,
            made.region,
            made.password,
            made.access_key,
            made.secret_key,
        )
        token = password_token(cloud.endpoint, tenant)
        jobs = f"{cloud.endpoint}/v1/{tenant.project_id}/image-server-jobs"
        headers = {"X-Auth-Token": token}
        params = {"job_type": "CREATE_SERVER"}
        assert httpx.get(jobs, params=params, headers=headers).status_code == 200  # cached
        revoked = httpx.delete(
            f"{cloud.endpoint}/v3/auth/tokens", headers={**headers, "X-Subject-Token": token}
        )
        assert revoked.status_code == 204
        assert httpx.get(jobs, params=params, headers=headers).status_code == 401
