"""The identity service on both databases: expiry, revocation, conflicts, secrets at rest."""

from __future__ import annotations

import json

import pytest

from imagejobs.domain.errors import AuthenticationFailed, Conflict, InvalidParameter, LoginFailed
from imagejobs.iam.credentials import SecretBox
from imagejobs.services.identity import TOKEN_LIFETIME_MS, IdentityService
from imagejobs.storage.database import Database
from imagejobs.storage.iam_store import SqlIamStore
from tests.factories import TEST_KEY

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def identity(database: Database, clock: Clock) -> IdentityService:
    service = IdentityService(SqlIamStore(database), SecretBox(TEST_KEY), clock)
    await service.ensure_system_policies()
    return service


async def test_tokens_expire_after_24_hours(identity: IdentityService, clock: Clock) -> None:
    created = await identity.create_account("acme")
    issued = await identity.login("acme", "acme", created.password, project_name="cn-north-4")
    clock.now += TOKEN_LIFETIME_MS - 1
    assert (await identity.validate_token(issued.token)).user.name == "acme"
    clock.now += 1
    with pytest.raises(AuthenticationFailed, match="token expires, expires_at: "):
        await identity.validate_token(issued.token)


async def test_revoked_and_unknown_tokens_fail_alike(identity: IdentityService) -> None:
    created = await identity.create_account("acme")
    issued = await identity.login("acme", "acme", created.password, domain_scope=True)
    await identity.revoke_token(issued.token)
    for token in (issued.token, "MIIT-not-a-token", ""):
        with pytest.raises(AuthenticationFailed, match="decrypt token fail"):
            await identity.validate_token(token)


async def test_login_failures_say_nothing_about_which_part_was_wrong(
    identity: IdentityService,
) -> None:
    created = await identity.create_account("acme")
    attempts = [
        ("acme", "acme", "Wrong-passw0rd"),
        ("acme", "nobody", created.password),
        ("nope", "acme", created.password),
    ]
    messages = set()
    for account, user, password in attempts:
        with pytest.raises(LoginFailed) as caught:
            await identity.login(account, user, password, domain_scope=True)
        messages.add(caught.value.message)
    assert messages == {"The username or password is wrong."}


async def test_temporary_credentials_expire_and_never_outlive_the_token(
    identity: IdentityService, clock: Clock, database: Database
) -> None:
    created = await identity.create_account("acme")
    issued = await identity.login("acme", "acme", created.password, domain_scope=True)
    credential = await identity.create_temporary_credential(issued.token, 3600)
    assert credential.expires_at == clock.now + 3_600_000
    clock.now += TOKEN_LIFETIME_MS - 600_000
    late = await identity.create_temporary_credential(issued.token, 3600)
    assert late.expires_at == issued.record.expires_at
    with pytest.raises(InvalidParameter, match="duration_seconds"):
        await identity.create_temporary_credential(issued.token, 899)
    stored = await SqlIamStore(database).access_key(credential.access)
    assert stored is not None
    assert credential.secret not in stored[0].secret_ciphertext
    assert credential.security_token not in str(stored[0])


async def test_secret_keys_are_encrypted_at_rest(
    identity: IdentityService, database: Database
) -> None:
    created = await identity.create_account("acme")
    found = await SqlIamStore(database).access_key(created.access_key)
    assert found is not None
    key = found[0]
    assert created.secret_key not in key.secret_ciphertext
    box = SecretBox(TEST_KEY)
    assert box.decrypt(key.secret_ciphertext, bound_to=created.access_key) == created.secret_key
    with pytest.raises(ValueError, match="does not decrypt"):
        SecretBox(bytes(32)).decrypt(key.secret_ciphertext, bound_to=created.access_key)
    with pytest.raises(ValueError, match="does not decrypt"):
        box.decrypt(key.secret_ciphertext, bound_to="ANOTHERKEY")
    assert created.password not in found[1].password_hash


async def test_names_are_checked_and_unique(identity: IdentityService) -> None:
    await identity.create_account("acme")
    with pytest.raises(Conflict):
        await identity.create_account("acme")
    for bad in ("", "has space", "x" * 65, "-dash-first"):
        with pytest.raises(InvalidParameter):
            await identity.create_account(bad)
    await identity.create_user("acme", "bob")
    with pytest.raises(Conflict):
        await identity.create_user("acme", "bob")
    with pytest.raises(InvalidParameter, match="password"):
        await identity.create_user("acme", "carol", password="short")


async def test_at_most_two_permanent_keys_per_user(identity: IdentityService) -> None:
    await identity.create_account("acme")  # the root already has one key
    await identity.create_access_key("acme", "acme")
    with pytest.raises(Conflict, match="2 access keys"):
        await identity.create_access_key("acme", "acme")


async def test_policy_documents_are_validated(identity: IdentityService) -> None:
    await identity.create_account("acme")
    with pytest.raises(InvalidParameter):
        await identity.create_policy("acme", "broken", '{"Version": "1.1", "Statement": 3}')
    with pytest.raises(InvalidParameter):
        await identity.create_policy("acme", "broken", "not json")
    good = json.dumps(
        {"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": ["workspace:*:list*"]}]}
    )
    record = await identity.create_policy("acme", "lister", good)
    assert json.loads(record.document)["Statement"][0]["Action"] == ["workspace:*:list*"]
    names = {p.name for p in await identity.policies("acme")}
    assert {"Workspace FullAccess", "Workspace ReadOnlyAccess", "lister"} <= names


async def test_the_root_user_cannot_be_deleted(identity: IdentityService) -> None:
    await identity.create_account("acme")
    with pytest.raises(InvalidParameter):
        await identity.delete_user("acme", "acme")


async def test_expired_tokens_and_temporary_keys_are_purged(
    identity: IdentityService, clock: Clock, database: Database
) -> None:
    created = await identity.create_account("acme")
    store = SqlIamStore(database)
    old = await identity.login("acme", "acme", created.password, domain_scope=True)
    short = await identity.create_temporary_credential(old.token, 900)
    clock.now += 1_000_000  # the temporary key has expired, its token has not
    await identity.purge_expired()
    assert await store.access_key(short.access) is None
    assert await store.token(old.record.token_hash) is not None

    clock.now += TOKEN_LIFETIME_MS  # now the token too
    fresh = await identity.login("acme", "acme", created.password, domain_scope=True)
    await identity.purge_expired()
    assert await store.token(old.record.token_hash) is None
    assert await store.token(fresh.record.token_hash) is not None
    assert await store.access_key(created.access_key) is not None  # permanent keys stay


async def test_failures_lock_a_subject_at_the_limit_within_the_window(
    database: Database,
) -> None:
    store = SqlIamStore(database)
    window = {"window_ms": 1000, "limit": 3, "lockout_ms": 5000}
    # Two failures, then the window passes: counting starts over.
    for now in (0, 10):
        assert await store.count_failure("s", now, **window) is None
    assert await store.count_failure("s", 2000, **window) is None
    assert await store.count_failure("s", 2001, **window) is None
    assert await store.count_failure("s", 2002, **window) is None  # the 3rd locks...
    assert await store.count_failure("s", 2003, **window) == 7002  # ...the next sees it
    assert (await store.failures("s", "other"))["s"][2] == 7002
    await store.clear_failures("s")
    assert await store.failures("s", "other") == {}
