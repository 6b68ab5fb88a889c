"""IamAccess.authenticate's one C call (``authenticate_plain``, the usual signed request of a
permanent key) changes no answer: every scenario here runs twice, with the C call and
without it (the Python path, as with no compiled module), and both must give the same
outcome at every step, error type and message included. The C variant must also have
taken the C call where it applies, so that the scenario tests it at all.

The scenarios are those where the C must step aside: a key disabled, deleted or unknown; a
temporary key (with its security token, without it, with a wrong one, expired); wrong
signatures counted towards the lockout; a locked pair, and a valid signature during the
lock; a stale date."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from imagejobs.domain.errors import AuthenticationFailed
from imagejobs.iam.signing import ReceivedRequest
from imagejobs.services import access as access_module
from imagejobs.storage.database import Database
from tests.contract.test_access_decisions import World

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        access_module._authenticate_plain is None, reason="the C module was not compiled"
    ),
]

SOURCE = "192.0.2.1"
Scenario = Callable[["Run"], Awaitable[None]]


class Run:
    """One run of a scenario: its outcomes, in order, and how many the C call accepted."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.outcomes: list[Any] = []
        self.accepted_in_c = 0
        # Ids that differ between the two runs (names, keys) -> what outcomes show instead.
        self.aliases: dict[str, str] = {}

    async def send(self, request: ReceivedRequest, source: str = SOURCE) -> Any:
        try:
            principal = await self.world.access.authenticate(request, source)
        except AuthenticationFailed as error:
            outcome: Any = (type(error).__name__, error.message)
        else:
            outcome = ("ok", principal.name, principal.account_id, principal.project_id)
        for real, alias in self.aliases.items():
            outcome = tuple(
                part.replace(real, alias) if isinstance(part, str) else part for part in outcome
            )
        self.outcomes.append(outcome)
        return outcome


async def _run(database: Database, scenario: Scenario, *, use_c: bool) -> Run:
    world = World(database)
    await world.identity.ensure_system_policies()
    run = Run(world)
    compiled = access_module._authenticate_plain
    assert compiled is not None

    def counted(*arguments: Any) -> Any:
        answer = compiled(*arguments)
        run.accepted_in_c += answer is not None
        return answer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(access_module, "_authenticate_plain", counted if use_c else None)
        await scenario(run)
    return run


async def _same_with_and_without_c(database: Database, scenario: Scenario) -> list[Any]:
    with_c = await _run(database, scenario, use_c=True)
    # A fresh account in the same database: every name below is made per run.
    in_python = await _run(database, scenario, use_c=False)
    assert with_c.outcomes == in_python.outcomes
    assert with_c.accepted_in_c > 0, "the C call was never taken"
    assert in_python.accepted_in_c == 0
    return with_c.outcomes


def _kind(outcome: Any, *kinds: str) -> str:
    """Which of ``kinds`` the outcome is ("ok", or a part of its error message)."""
    if outcome[0] == "ok":
        return "ok"
    return next((kind for kind in kinds if kind != "ok" and kind in outcome[1]), repr(outcome))


_names = iter(range(10**6))


async def _account(run: Run) -> tuple[str, str, str, str]:
    """A new account's name, project, and its root's AK/SK."""
    name = f"acme{next(_names)}"
    account = await run.world.identity.create_account(name)
    key = await run.world.identity.create_access_key(name, name)
    run.aliases |= {
        name: "<account>",
        account.account.id: "<account id>",
        account.project.id: "<project>",
        key.key.access_key: "<ak>",
    }
    return name, account.project.id, key.key.access_key, key.secret_key


async def test_a_permanent_keys_usual_request_is_accepted_alike(database: Database) -> None:
    async def scenario(run: Run) -> None:
        _, project, ak, sk = await _account(run)
        for _ in range(3):
            await run.send(run.world.signed(project, ak, sk))

    outcomes = await _same_with_and_without_c(database, scenario)
    assert [outcome[0] for outcome in outcomes] == ["ok"] * 3


async def test_wrong_signatures_count_lock_and_a_good_one_still_passes(database: Database) -> None:
    async def scenario(run: Run) -> None:
        _, project, ak, sk = await _account(run)
        await run.send(run.world.signed(project, ak, sk))  # C, nothing failing yet
        for _ in range(7):  # counted; the 7th answered with the lockout
            await run.send(run.world.signed(project, ak, "wrong" + sk))
        await run.send(run.world.signed(project, ak, sk), "192.0.2.2")  # another address
        await run.send(run.world.signed(project, ak, sk))  # the locked pair's own: passes
        await run.send(run.world.signed(project, ak, sk))  # nothing failing: C again
        await run.send(run.world.signed(project, ak, "wrong" + sk))  # counted from one

    outcomes = await _same_with_and_without_c(database, scenario)
    mismatch, locked = "verify aksk signature fail", "AK access failed to reach the limit"
    kinds = [_kind(outcome, "ok", mismatch, locked) for outcome in outcomes]
    assert kinds == ["ok", *[mismatch] * 6, locked, "ok", "ok", "ok", mismatch]


async def test_a_disabled_deleted_or_unknown_key_is_refused_alike(database: Database) -> None:
    async def scenario(run: Run) -> None:
        name, project, ak, sk = await _account(run)
        identity = run.world.identity
        # Each change empties the caches (the C's keys too), so each is sent twice: the
        # second time from what the first one cached.
        for _ in range(2):
            await run.send(run.world.signed(project, ak, sk))
        await identity.set_access_key_enabled(name, ak, False)
        for _ in range(2):
            await run.send(run.world.signed(project, ak, sk))
        await identity.set_access_key_enabled(name, ak, True)
        for _ in range(2):
            await run.send(run.world.signed(project, ak, sk))
        await identity.delete_access_key(name, ak)
        for _ in range(2):
            await run.send(run.world.signed(project, ak, sk))
        await run.send(run.world.signed(project, "AKNOSUCHKEY0000000000", sk))

    outcomes = await _same_with_and_without_c(database, scenario)
    kinds = [_kind(outcome, "ok", "not exist") for outcome in outcomes]
    assert kinds == ["ok", "ok", *["not exist"] * 2, "ok", "ok", *["not exist"] * 3]


async def test_a_temporary_key_is_the_pythons_to_check(database: Database) -> None:
    async def scenario(run: Run) -> None:
        name, project, ak, sk = await _account(run)
        world = run.world
        _, password = await world.identity.create_user(name, "dave")
        issued = await world.identity.login(name, "dave", password, project_id=project)
        temporary = await world.identity.create_temporary_credential(issued.token, 900)
        run.aliases[temporary.access] = "<temporary ak>"
        await run.send(world.signed(project, ak, sk))  # the permanent key: C
        good = world.signed(project, temporary.access, temporary.secret, temporary.security_token)
        await run.send(good)
        await run.send(world.signed(project, temporary.access, temporary.secret))  # no token
        await run.send(world.signed(project, temporary.access, temporary.secret, "wrong"))
        await run.send(world.signed(project, temporary.access, temporary.secret, "wrong"))
        await run.send(good)  # after failures of its pair
        world.clock.now = temporary.expires_at
        await run.send(
            world.signed(project, temporary.access, temporary.secret, temporary.security_token)
        )
        await run.send(world.signed(project, ak, sk))  # the permanent key, at that time: C

    outcomes = await _same_with_and_without_c(database, scenario)
    kinds = [_kind(outcome, "ok", "invalid security token", "not exist") for outcome in outcomes]
    assert kinds == ["ok", "ok", *["invalid security token"] * 3, "ok", "not exist", "ok"]


async def test_a_stale_or_future_date_is_refused_alike(database: Database) -> None:
    async def scenario(run: Run) -> None:
        _, project, ak, sk = await _account(run)
        world = run.world
        signed_now = world.signed(project, ak, sk)
        await run.send(signed_now)
        world.clock.now += 15 * 60 * 1000  # the window's edge: still accepted
        await run.send(signed_now)
        world.clock.now += 1000
        await run.send(signed_now)
        world.clock.now -= 2 * (15 * 60 * 1000 + 1000)  # as far before the date
        await run.send(signed_now)

    outcomes = await _same_with_and_without_c(database, scenario)
    kinds = [_kind(outcome, "ok", "signature expired") for outcome in outcomes]
    assert kinds == ["ok", "ok", "signature expired", "signature expired"]
