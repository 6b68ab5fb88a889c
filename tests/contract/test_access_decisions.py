"""IamAccess remembers a policy decision per (policies, principal, project, action): each
request here is authenticated and authorized as the API does it, and every change that
must alter the answer (a policy detached or attached, the time a condition tests, a
temporary key's session policy, a token revoked) alters it at once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from imagejobs.domain.errors import AuthenticationFailed, PermissionDenied
from imagejobs.iam.credentials import SecretBox
from imagejobs.iam.signing import ReceivedRequest, SigningAlgorithm, sign_request
from imagejobs.services.access import IamAccess
from imagejobs.services.identity import IdentityService
from imagejobs.storage.database import Database
from imagejobs.storage.iam_store import SqlIamStore
from tests.factories import TEST_KEY

pytestmark = pytest.mark.anyio

LIST = "workspace:images:listImageJobs"
DELETE = "workspace:imageServer:batchDeleteImageSubJobs"
HOST = "127.0.0.1:8080"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        return self.now


class World:
    def __init__(self, database: Database) -> None:
        self.clock = Clock()
        store = SqlIamStore(database)
        box = SecretBox(TEST_KEY)
        self.identity = IdentityService(store, box, self.clock)
        # Identity changes checked on every request, as if cache_seconds had passed.
        self.access = IamAccess(store, self.identity, box, cache_seconds=0, clock_ms=self.clock)

    def signed(
        self, project_id: str, ak: str, sk: str, security_token: str | None = None
    ) -> ReceivedRequest:
        path = f"/v1/{project_id}/image-server-jobs"
        headers = {"Host": HOST}
        if security_token is not None:
            headers["X-Security-Token"] = security_token
        headers |= sign_request(
            "GET",
            path,
            [],
            headers,
            b"",
            ak=ak,
            sk=sk,
            algorithm=SigningAlgorithm.HMAC_SHA256,
            now=datetime.fromtimestamp(self.clock.now / 1000, UTC),
        )
        raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        return ReceivedRequest.from_raw("GET", path.encode(), b"", raw, b"")

    def with_token(self, project_id: str, token: str) -> ReceivedRequest:
        path = f"/v1/{project_id}/image-server-jobs"
        raw = [(b"host", HOST.encode()), (b"x-auth-token", token.encode())]
        return ReceivedRequest.from_raw("GET", path.encode(), b"", raw, b"")

    async def allows(self, request: ReceivedRequest, project_id: str, action: str) -> bool:
        principal = await self.access.authenticate(request, "192.0.2.1")
        try:
            await self.access.authorize(principal, action, project_id)
        except PermissionDenied:
            return False
        return True


@pytest.fixture
async def world(database: Database) -> World:
    made = World(database)
    await made.identity.ensure_system_policies()
    return made


async def test_detaching_and_attaching_a_policy_changes_the_next_answer(world: World) -> None:
    acme = await world.identity.create_account("acme")
    await world.identity.create_user("acme", "alice")
    await world.identity.attach_policy("acme", "Workspace FullAccess", user_name="alice")
    key = await world.identity.create_access_key("acme", "alice")
    project = acme.project.id

    def request() -> ReceivedRequest:
        return world.signed(project, key.key.access_key, key.secret_key)

    assert await world.allows(request(), project, DELETE)
    assert await world.allows(request(), project, DELETE)  # the remembered answer
    await world.identity.detach_policy("acme", "Workspace FullAccess", user_name="alice")
    await world.identity.attach_policy("acme", "Workspace ReadOnlyAccess", user_name="alice")
    assert not await world.allows(request(), project, DELETE)
    assert await world.allows(request(), project, LIST)
    await world.identity.detach_policy("acme", "Workspace ReadOnlyAccess", user_name="alice")
    assert not await world.allows(request(), project, LIST)
    await world.identity.attach_policy("acme", "Workspace FullAccess", user_name="alice")
    assert await world.allows(request(), project, DELETE)


async def test_a_condition_on_the_time_is_evaluated_on_every_request(world: World) -> None:
    acme = await world.identity.create_account("acme")
    await world.identity.create_user("acme", "bob")
    until = datetime.fromtimestamp((world.clock.now + 60_000) / 1000, UTC)
    document = {
        "Version": "1.1",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["workspace:*:*"],
                "Condition": {"DateLessThan": {"g:CurrentTime": [until.isoformat()]}},
            }
        ],
    }
    await world.identity.create_policy("acme", "until-noon", json.dumps(document))
    await world.identity.attach_policy("acme", "until-noon", user_name="bob")
    key = await world.identity.create_access_key("acme", "bob")
    project = acme.project.id

    def request() -> ReceivedRequest:
        return world.signed(project, key.key.access_key, key.secret_key)

    assert await world.allows(request(), project, LIST)
    world.clock.now += 59_000
    assert await world.allows(request(), project, LIST)
    world.clock.now += 1_000  # no identity changed: only the time did
    assert not await world.allows(request(), project, LIST)


async def test_a_session_policy_narrows_its_key_not_the_users_other_keys(world: World) -> None:
    acme = await world.identity.create_account("acme")
    _, password = await world.identity.create_user("acme", "carol")
    await world.identity.attach_policy("acme", "Workspace FullAccess", user_name="carol")
    key = await world.identity.create_access_key("acme", "carol")
    project = acme.project.id
    issued = await world.identity.login("acme", "carol", password, project_id=project)
    list_only = {
        "Version": "1.1",
        "Statement": [{"Effect": "Allow", "Action": ["workspace:images:list*"]}],
    }
    temporary = await world.identity.create_temporary_credential(
        issued.token, 900, json.dumps(list_only)
    )

    def permanent() -> ReceivedRequest:
        return world.signed(project, key.key.access_key, key.secret_key)

    def narrowed() -> ReceivedRequest:
        return world.signed(project, temporary.access, temporary.secret, temporary.security_token)

    token = world.with_token(project, issued.token)
    for _ in range(2):  # the second time from what was remembered
        assert await world.allows(permanent(), project, DELETE)
        assert await world.allows(token, project, DELETE)
        assert not await world.allows(narrowed(), project, DELETE)
        assert await world.allows(narrowed(), project, LIST)
    await world.identity.revoke_token(issued.token)
    with pytest.raises(AuthenticationFailed):
        await world.allows(token, project, LIST)
    with pytest.raises(AuthenticationFailed):  # the temporary key died with its token
        await world.allows(narrowed(), project, LIST)
    assert await world.allows(permanent(), project, DELETE)
