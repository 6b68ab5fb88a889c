"""IAM tokens: password logins, validation and revocation (Keystone's /v3/auth/tokens)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from imagejobs.domain.errors import AuthenticationFailed, LoginFailed
from imagejobs.domain.times import format_time
from imagejobs.iam.credentials import digest, new_token
from imagejobs.iam.passwords import hash_password, verify_password
from imagejobs.iam.records import Account, Project, Token, User
from imagejobs.services.accounts import Accounts

TOKEN_LIFETIME_MS = 24 * 3600 * 1000
# Verified against when the user does not exist, so both cases cost the same time.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


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
    ) -> IssuedToken:
        """POST /v3/auth/tokens with the password method; any mismatch is one LoginFailed."""
        account = await self._store.account_by_name(account_name)
        user = None if account is None else await self._store.user_by_name(account.id, user_name)
        stored_hash = user.password_hash if user is not None else _DUMMY_HASH
        if not verify_password(password, stored_hash) or user is None or account is None:
            raise LoginFailed()
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
        await self._store.insert_token(record)
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


def keystone_time(epoch_ms: int) -> str:
    """Keystone's time format: UTC, microseconds, ``Z`` (``2026-11-28T05:36:08.442000Z``)."""
    return format_time(epoch_ms)[:-1] + "000Z"
