"""IAM tokens: password logins, validation and revocation (Keystone's /v3/auth/tokens)."""

from __future__ import annotations

from dataclasses import dataclass

from imagejobs.domain.errors import (
    AuthenticationFailed,
    CredentialLimitReached,
    LoginFailed,
    LoginLocked,
    Throttled,
)
from imagejobs.domain.times import format_time
from imagejobs.iam.credentials import digest, new_token
from imagejobs.iam.passwords import unmatchable_hash
from imagejobs.iam.records import Account, Project, Token, User
from imagejobs.services.accounts import Accounts
from imagejobs.storage.iam_store import failure_subject

TOKEN_LIFETIME_MS = 24 * 3600 * 1000
# Verified against when the user does not exist, so both cases cost the same time.
_DUMMY_HASH = unmatchable_hash()


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str  # shown once, in X-Subject-Token
    record: Token
    user: User
    account: Account
    project: Project | None


class Tokens(Accounts):
    async def login(
        self,
        account_name: str,
        user_name: str,
        password: str,
        *,
        project_id: str | None = None,
        project_name: str | None = None,
        domain_scope: bool = False,
        source: str | None = None,
    ) -> IssuedToken:
        """POST /v3/auth/tokens with the password method; any mismatch is one LoginFailed.

        A user (existing or not: the same answers, in the same time) is locked after
        ``login_max_failures`` failures within the window, and a source address (when
        given) is throttled after ``login_address_max_failures``; both are refused
        before any hashing. Only password logins are locked, never AK/SK or tokens.
        """
        self._hashing.refuse_when_full()
        now = self._now()
        user_subject = failure_subject("login-user", account_name, user_name)
        address_subject = None if source is None else failure_subject("login-address", source)
        counts = await self._store.failures(user_subject, address_subject or user_subject)
        self._refuse_locked(counts, user_subject, address_subject, now)
        account = await self._store.account_by_name(account_name)
        # Looked up even without the account, so that both cases cost the same queries.
        user = await self._store.user_by_name(account.id if account else "", user_name)
        stored_hash = user.password_hash if user is not None else _DUMMY_HASH
        if not await self._hashing.verify(password, stored_hash) or user is None or account is None:
            await self._count_login_failure(user_subject, address_subject, now)
            raise LoginFailed()
        if user_subject in counts:
            await self._store.clear_failures(user_subject)
        if not (user.enabled and account.enabled):
            raise LoginFailed()
        project = None
        if not domain_scope:
            projects = await self._store.projects(account.id)
            project = next(
                (p for p in projects if p.id == project_id or p.name == project_name), None
            )
            if project is None:
                raise LoginFailed("The project in the scope does not exist in this account.")
        return await self._issue(user, account, project, "password")

    def _refuse_locked(
        self,
        counts: dict[str, tuple[int, int, int | None]],
        user_subject: str,
        address_subject: str | None,
        now: int,
    ) -> None:
        limits = self._limits
        if address_subject is not None and address_subject in counts:
            until = counts[address_subject][2]
            if until is not None and until > now:
                raise Throttled(
                    "policy ip over ratelimit,limit:"
                    f"{limits.login_address_max_failures} failed logins,"
                    f"time:{limits.login_failure_window_ms // 1000} second",
                    retry_after=_seconds_until(until, now),
                )
        if user_subject in counts:
            until = counts[user_subject][2]
            if until is not None and until > now:
                raise LoginLocked(_seconds_until(until, now))

    async def _count_login_failure(
        self, user_subject: str, address_subject: str | None, now: int
    ) -> None:
        limits = self._limits
        counted = [(user_subject, limits.login_max_failures)]
        if address_subject is not None:
            counted.append((address_subject, limits.login_address_max_failures))
        for subject, limit in counted:
            await self._store.count_failure(
                subject,
                now,
                window_ms=limits.login_failure_window_ms,
                limit=limit,
                lockout_ms=limits.login_lockout_ms,
            )

    async def _issue(
        self, user: User, account: Account, project: Project | None, methods: str
    ) -> IssuedToken:
        token = new_token()
        now = self._now()
        record = Token(
            digest(token),
            user.id,
            project.id if project else None,
            methods,
            now,
            now + TOKEN_LIFETIME_MS,
            user.password_version,
            False,
        )
        if not await self._store.insert_token(record, self._limits.max_live_tokens):
            oldest = await self._store.oldest_live_expiry(user.id, now, tokens=True)
            raise limit_reached(
                f"The user already holds {self._limits.max_live_tokens} live tokens; revoke "
                "one (DELETE /v3/auth/tokens)",
                oldest,
                now,
            )
        return IssuedToken(token, record, user, account, project)

    async def validate_token(self, token: str) -> IssuedToken:
        """The token's record and owner, or AuthenticationFailed with the gateway's text."""
        record = await self._store.token(digest(token))
        if record is None or record.revoked:
            raise AuthenticationFailed("decrypt token fail")
        user = await self._store.user(record.user_id)
        account = None if user is None else await self._store.account_by_id(user.account_id)
        if user is None or account is None or not (user.enabled and account.enabled):
            raise AuthenticationFailed("decrypt token fail")
        if record.password_version != user.password_version:
            raise AuthenticationFailed("decrypt token fail")
        if record.expires_at <= self._now():
            raise AuthenticationFailed(
                f"token expires, expires_at: {keystone_time(record.expires_at)}"
            )
        project = (
            None if record.project_id is None else await self._store.project(record.project_id)
        )
        return IssuedToken(token, record, user, account, project)

    async def revoke_token(self, token: str) -> None:
        await self._store.revoke_token(digest(token))

    async def revoke_user_tokens(self, account_name: str, user_name: str) -> None:
        user = await self.user(await self.account(account_name), user_name)
        await self._store.revoke_user_tokens(user.id)


def _seconds_until(until: int, now: int) -> int:
    return max(1, -(-(until - now) // 1000))


def limit_reached(what: str, oldest: int | None, now: int) -> CredentialLimitReached:
    """The refusal of one credential too many: until when, and how to make room."""
    if oldest is None:  # expired or revoked in the meantime
        return CredentialLimitReached(f"{what}, or try again.")
    error = CredentialLimitReached(f"{what}, or wait until {keystone_time(oldest)}.")
    error.retry_after = _seconds_until(oldest, now)
    return error


def keystone_time(epoch_ms: int) -> str:
    """Keystone's time format: UTC, microseconds, ``Z`` (``2026-11-28T05:36:08.442000Z``)."""
    return format_time(epoch_ms)[:-1] + "000Z"
