"""Authentication and authorization: the one choke point in front of every API call.

``IamAccess`` resolves an AK/SK signature or an ``X-Auth-Token`` to a ``Principal`` and
decides, from the principal's policies in the path's project, whether it may run an
action. Lookups are cached per process; every identity change bumps a generation counter
in the database, which each process checks at most every ``cache_seconds``.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from imagejobs.domain.errors import AuthenticationFailed, PermissionDenied, SignatureMismatch
from imagejobs.domain.times import now_ms
from imagejobs.iam.credentials import SecretBox, digest
from imagejobs.iam.policy import (
    Decision,
    Policy,
    RequestContext,
    evaluate,
    reads_the_time,
    stored_policy,
)
from imagejobs.iam.records import AccessKey, Account, Project, Token, User
from imagejobs.iam.signing import (
    ParsedAuthorization,
    ReceivedRequest,
    SigningKey,
    authenticate_plain,
    parse_authorization,
    plain_pads,
    verify,
)
from imagejobs.services.authorization import LOCAL, Principal
from imagejobs.services.identity import IdentityService
from imagejobs.storage.iam_store import SqlIamStore, failure_subject

# The gateway's lockout (shared/spec/huaweicloud-auth.md §2.1), per (AK, source address).
MAX_SIGNATURE_FAILURES = 5
LOCKOUT_MS = 5 * 60 * 1000
_LOCKED = "AK access failed to reach the limit,forbidden."
_CACHE_LIMIT = 10_000
_authenticate_plain = authenticate_plain  # None without the C module (tests set it so)
OPERATOR_HEADER = "x-imagejobs-operator-token"


class AccessControl(Protocol):
    async def authenticate(self, request: ReceivedRequest, source: str = "") -> Principal:
        """The caller of ``request``, which came from the address ``source``."""

    async def authorize(self, principal: Principal, action: str, project_id: str) -> None:
        """Raise PermissionDenied unless ``principal`` may run ``action`` on ``project_id``."""

    async def authorize_account(self, principal: Principal, action: str) -> None:
        """Raise PermissionDenied unless ``principal``'s session policy (a temporary key's)
        allows ``action``, one that spans its account rather than naming a project; who
        may take such an action at all (the operator, a root) is the caller's rule."""


K = TypeVar("K")
V = TypeVar("V")


def _remember(cache: dict[K, V], key: K, value: V) -> None:
    """Cache ``value``; a full cache starts over, so that unknown keys (anyone can send
    them) cannot grow memory without bound."""
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


class OpenAccess:
    """No authentication (IMAGEJOBS_AUTH=none): every caller is LOCAL, on any project,
    except a browser sent there by a page of another site (see ``from_another_site``)."""

    async def authenticate(self, request: ReceivedRequest, source: str = "") -> Principal:
        if from_another_site(request.header_map):
            raise PermissionDenied(
                "IMAGEJOBS_AUTH=none answers no browser request sent by a page of another"
                " site (Origin, Sec-Fetch-Site)"
            )
        return LOCAL

    async def authorize(self, principal: Principal, action: str, project_id: str) -> None:
        return None

    async def authorize_account(self, principal: Principal, action: str) -> None:
        return None


def from_another_site(headers: Mapping[str, str]) -> bool:
    """Whether a browser sent this request for a page of another origin. Without
    credentials to check, any page could otherwise make its visitor's browser reset or
    change a local service: a POST with a text/plain body needs no CORS preflight.
    Browsers name the page's site (``Sec-Fetch-Site``) and, on every POST and cross-origin
    request, its origin; other clients (the SDK, curl) send neither."""
    if headers.get("sec-fetch-site", "") in ("cross-site", "same-site"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    # "null": a sandboxed frame or a file:// page, whatever the host it talks to.
    return origin == "null" or origin.partition("://")[2] != headers.get("host", "")


@dataclass(frozen=True, slots=True)
class _KeyEntry:
    key: AccessKey
    signing_key: SigningKey
    principal: Principal  # who the key's signed requests run as
    temporary: bool  # key.is_temporary, read on every request without a property call
    # Epoch ms until which the key may sign (-inf: disabled, or its user or account is,
    # or, for a temporary key, its token was revoked or the password changed).
    usable_until: float

    @classmethod
    def of(
        cls, key: AccessKey, user: User, account: Account, token: Token | None, secret: str
    ) -> _KeyEntry:
        enabled = key.status == "active" and user.enabled and account.enabled
        project_id, domain_scoped = None, False
        if key.is_temporary:
            # A temporary key lives and dies with the token it was made from, and is
            # scoped as that token was: one project, or the domain (no project API).
            enabled = enabled and (
                token is not None
                and not token.revoked
                and token.password_version == user.password_version
            )
            project_id = None if token is None else token.project_id
            domain_scoped = project_id is None
        principal = Principal.of_user(
            user,
            account,
            project_id=project_id,
            domain_scoped=domain_scoped,
            session_policy=None
            if key.session_policy is None
            else stored_policy(key.session_policy),
        )
        return cls(
            key,
            SigningKey(secret),
            principal,
            key.is_temporary,
            usable_until=(math.inf if key.expires_at is None else key.expires_at)
            if enabled
            else -math.inf,
        )


class IamAccess:
    def __init__(
        self,
        store: SqlIamStore,
        identity: IdentityService,
        box: SecretBox,
        *,
        cache_seconds: float = 1.0,
        operator_token: str | None = None,
        clock_ms: Callable[[], int] = now_ms,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_change``: called when this process notices that identities changed (a
        reset changes them too), for caches kept elsewhere (services/project_keys.py)."""
        self._on_change = on_change
        self._store = store
        self._identity = identity
        self._box = box
        self._cache_seconds = cache_seconds
        self._operator_token = operator_token
        self._now = clock_ms
        self._generation = -1
        self._checked_at = float("-inf")
        self._keys: dict[str, _KeyEntry | None] = {}
        # The permanent keys of _keys as authenticate_plain reads them: AK -> (HMAC pads,
        # usable_until, principal). Empty without the C module.
        self._plain_keys: dict[str, tuple[bytes, float, Principal]] = {}
        # Token -> (principal, expiry in epoch ms), for tokens validated in full (see _token).
        self._tokens: dict[str, tuple[Principal, int]] = {}
        # (AK, source address) whose signatures failed lately in this process -> the end
        # of its lock (0: failing, not locked).
        self._failing: dict[tuple[str, str], int] = {}
        self._projects: dict[str, Project | None] = {}
        self._policies: dict[tuple[str, str], tuple[Policy, ...]] = {}
        # (ids of the policies, the principal and the project, action) -> (those three
        # objects, allowed): see _allowed. The objects are kept so that no id is reused.
        self._decisions: dict[
            tuple[int, int, int, str], tuple[tuple[Policy, ...] | Policy, Principal, Project, bool]
        ] = {}

    async def _refresh(self) -> None:
        """Drop every cached answer when another process (or this one) changed identities.
        Called by ``authenticate`` once ``cache_seconds`` have passed since the last check."""
        moment = time.monotonic()
        generation = await self._store.generation()
        self._checked_at = moment
        if generation != self._generation:
            self._generation = generation
            for cache in (
                self._keys,
                self._plain_keys,
                self._tokens,
                self._projects,
                self._policies,
                self._decisions,
            ):
                cache.clear()
            self._on_change()

    def invalidate(self) -> None:
        self._checked_at = float("-inf")

    # --- authentication -------------------------------------------------------------------

    async def authenticate(self, request: ReceivedRequest, source: str = "") -> Principal:
        if time.monotonic() - self._checked_at >= self._cache_seconds:
            await self._refresh()
        operator = request.header_map.get(OPERATOR_HEADER)
        if operator is not None:
            return self._operator(operator)
        authorization = request.header_map.get("authorization")
        if authorization is not None:
            # Special on purpose: the usual signed request (a permanent key's) accepted in
            # one C call, the lookups and checks below included (their Python was ~7k
            # instructions and ~10 µs of a served request's CPU, bench/README.md). It
            # accepts only what the Python below accepts; anything else is None and the
            # Python decides, words, counts and locks it. Not while signatures fail lately:
            # a valid one must then end its pair's run (_signature_passed).
            if _authenticate_plain is not None and not self._failing:
                principal = _authenticate_plain(
                    self._plain_keys,
                    authorization,
                    request.method,
                    request.raw_path,
                    request.raw_query,
                    request.header_map,
                    request.body,
                    self._now(),
                )
                if principal is not None:
                    return principal
            # The signed path, inline: no coroutine of its own on every signed request.
            parsed = parse_authorization(authorization)
            try:
                entry = self._keys[parsed.access_key]
            except KeyError:
                entry = await self._key(parsed.access_key)
            checked = self._check_signature(request, parsed, entry)
            if isinstance(checked, SignatureMismatch):
                raise await self._signature_failed(parsed.access_key, source, checked)
            if self._failing:  # empty unless signatures failed lately: the hot path skips it
                await self._signature_passed(parsed.access_key, source)
            return checked
        token = request.header_map.get("x-auth-token")
        if token:
            return await self._token(token)
        raise AuthenticationFailed("x-auth-token not found")

    def _operator(self, presented: str) -> Principal:
        expected = self._operator_token
        if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
            raise AuthenticationFailed("invalid operator token")
        return Principal(name="operator", is_operator=True)

    async def _key(self, access_key: str) -> _KeyEntry | None:
        if access_key in self._keys:
            return self._keys[access_key]
        found = await self._store.access_key(access_key)
        entry = None
        if found is not None:
            key, user, account, token = found
            secret = self._box.decrypt(key.secret_ciphertext, bound_to=key.access_key)
            entry = _KeyEntry.of(key, user, account, token, secret)
            pads = None if entry.temporary else plain_pads(entry.signing_key)
            if pads is not None:
                _remember(self._plain_keys, access_key, (pads, entry.usable_until, entry.principal))
        _remember(self._keys, access_key, entry)
        return entry

    def _check_signature(
        self, request: ReceivedRequest, parsed: ParsedAuthorization, entry: _KeyEntry | None
    ) -> Principal | SignatureMismatch:
        """The key's principal if ``entry``'s usable key signed ``request``; the failure to
        count against (AK, source address) if its signature or security token is wrong.
        Raises AuthenticationFailed, uncounted, for an unknown or unusable key or a
        malformed or expired request."""
        now = self._now()
        if entry is None or now >= entry.usable_until:
            raise AuthenticationFailed(f"ak {parsed.access_key} not exist")
        token = None
        if entry.temporary:
            token = request.header_map.get("x-security-token")
            if token is None or not hmac.compare_digest(
                digest(token), entry.key.security_token_hash or ""
            ):
                return SignatureMismatch("invalid security token")
        try:
            verify(
                request, entry.signing_key, now / 1000, authorization=parsed, security_token=token
            )
        except SignatureMismatch as exc:
            return exc
        return entry.principal

    async def _signature_failed(
        self, access_key: str, source: str, error: AuthenticationFailed
    ) -> AuthenticationFailed:
        """Count a failure of this (access key, source address). More than
        MAX_SIGNATURE_FAILURES in a row lock the pair for LOCKOUT_MS: its failures are then
        answered with the gateway's lockout message, without a database write. A valid
        signature is never refused, whoever failed before (docs/security.md)."""
        pair = (access_key, source)
        now = self._now()
        if self._failing.get(pair, 0) > now:
            return AuthenticationFailed(_LOCKED)
        locked_until = await self._store.count_failure(
            failure_subject("signature", access_key, source),
            now,
            window_ms=LOCKOUT_MS,
            limit=MAX_SIGNATURE_FAILURES + 1,
            lockout_ms=LOCKOUT_MS,
        )
        _remember(self._failing, pair, locked_until or 0)
        return error if locked_until is None else AuthenticationFailed(_LOCKED)

    async def _signature_passed(self, access_key: str, source: str) -> None:
        """A valid signature ends its pair's run of failures."""
        if self._failing.pop((access_key, source), None) is not None:
            await self._store.clear_failures(failure_subject("signature", access_key, source))

    async def _token(self, token: str) -> Principal:
        # Keyed by the token as sent, not by its SHA-256 (the stored form): the digest was
        # half of what a token request cost here beyond no auth (an OpenSSL call per
        # request). Only tokens validated in full are keys, so the cache's bound holds;
        # they stay in this process's memory as long as a request's headers would.
        cached = self._tokens.get(token)
        if cached is not None and cached[1] > self._now():
            return cached[0]
        issued = await self._identity.validate_token(token)
        principal = Principal.of_user(
            issued.user,
            issued.account,
            project_id=issued.record.project_id,
            domain_scoped=issued.record.project_id is None,
        )
        _remember(self._tokens, token, (principal, issued.record.expires_at))
        return principal

    # --- authorization --------------------------------------------------------------------

    async def _project(self, project_id: str) -> Project | None:
        if project_id not in self._projects:
            _remember(self._projects, project_id, await self._store.project(project_id))
        return self._projects[project_id]

    async def _policies_for(self, user_id: str, project_id: str) -> tuple[Policy, ...]:
        cache_key = (user_id, project_id)
        if cache_key not in self._policies:
            documents = await self._store.policy_documents_for(user_id, project_id)
            _remember(self._policies, cache_key, tuple(stored_policy(d) for _, d in documents))
        return self._policies[cache_key]

    async def authorize(self, principal: Principal, action: str, project_id: str) -> None:
        if principal is LOCAL:
            return
        # A cached project without a coroutine (every request of a known project).
        try:
            project = self._projects[project_id]
        except KeyError:
            project = await self._project(project_id)
        # Unknown project, another account's project, another project's token: all look alike.
        if (
            project is None
            or project.account_id != principal.account_id
            or principal.domain_scoped
            or (principal.project_id is not None and principal.project_id != project_id)
        ):
            raise PermissionDenied(f"The credentials cannot be used for project {project_id}.")
        if principal.is_root and principal.session_policy is None:
            return
        allowed = principal.is_root
        if not allowed and principal.user_id is not None:
            try:  # a user's cached policies without a coroutine, as the project above
                policies = self._policies[(principal.user_id, project_id)]
            except KeyError:
                policies = await self._policies_for(principal.user_id, project_id)
            allowed = self._allowed(policies, principal, action, project)
        if allowed and principal.session_policy is not None:
            allowed = self._allowed(principal.session_policy, principal, action, project)
        if not allowed:
            raise PermissionDenied(f"Policy doesn't allow {action} to be performed.")

    def _allowed(
        self,
        policies: tuple[Policy, ...] | Policy,
        principal: Principal,
        action: str,
        project: Project,
    ) -> bool:
        """Whether ``policies`` (a user's in ``project``, or a temporary key's session
        policy) allow ``principal`` to run ``action`` in ``project``.

        Evaluating them cost an IAM user's request ~55k instructions (callgrind), about
        what an AK/SK signature's whole check costs, for an answer that depends only on
        these three objects, the action and, if a condition tests g:CurrentTime, the time.
        So it is remembered per (policies, principal, project, action), by identity,
        unless a condition reads the time. The three are the ones cached above; a change
        to any of them (a policy, an attachment, the user, the key, the project) bumps the
        identity generation, which empties these caches and this one together, so an
        answer is never older than the policies it would be evaluated with."""
        key = (id(policies), id(principal), id(project), action)
        remembered = self._decisions.get(key)
        if (
            remembered is not None
            and remembered[0] is policies
            and remembered[1] is principal
            and remembered[2] is project
        ):
            return remembered[3]
        evaluated = policies if isinstance(policies, tuple) else (policies,)
        context = self._context(principal, action, project.id, project.name)
        allowed = evaluate(evaluated, context) is Decision.ALLOW
        if not reads_the_time(evaluated):
            _remember(self._decisions, key, (policies, principal, project, allowed))
        return allowed

    async def authorize_account(self, principal: Principal, action: str) -> None:
        # A root's temporary key is no wider than its session policy: one that allows only,
        # say, reading jobs must not act on (or read) everything its account holds.
        policy = principal.session_policy
        if policy is None:
            return
        context = self._context(principal, action, principal.project_id)
        if evaluate((policy,), context) is not Decision.ALLOW:
            raise PermissionDenied(f"Policy doesn't allow {action} to be performed.")

    def _context(
        self,
        principal: Principal,
        action: str,
        project_id: str | None,
        project_name: str | None = None,
    ) -> RequestContext:
        return RequestContext(
            action=action,
            current_time=datetime.fromtimestamp(self._now() / 1000, tz=UTC),
            user_id=principal.user_id,
            user_name=principal.name,
            domain_id=principal.account_id,
            domain_name=principal.account_name,
            project_id=project_id,
            project_name=project_name,
        )
