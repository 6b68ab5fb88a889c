"""Access keys: permanent AK/SK pairs and temporary ones made from a token."""

from __future__ import annotations

from dataclasses import dataclass

from imagejobs.domain.errors import Conflict, InvalidIamRequest, InvalidParameter, NotFound
from imagejobs.iam.credentials import digest, new_access_key, new_secret_key, new_security_token
from imagejobs.iam.policy import parse_policy
from imagejobs.iam.records import AccessKey
from imagejobs.services.accounts import document_text
from imagejobs.services.tokens import Tokens, limit_reached

MIN_TEMPORARY_SECONDS = 900
MAX_TEMPORARY_SECONDS = 24 * 3600
# A session policy is the caller's own text, evaluated on every request the key makes, on
# the event loop every tenant shares: unbounded, 400 statements of long patterns cost
# 25 ms a request. Within these bounds it costs well under a millisecond.
MAX_SESSION_POLICY_STATEMENTS = 8
MAX_SESSION_POLICY_CHARACTERS = 6144
MAX_KEYS_PER_USER = 2  # as on Huawei Cloud: two permanent access keys per user


class AccessKeyNotFound(NotFound):
    """The access key does not exist."""


@dataclass(frozen=True, slots=True)
class NewAccessKey:
    key: AccessKey
    secret_key: str


@dataclass(frozen=True, slots=True)
class TemporaryCredential:
    access: str
    secret: str
    security_token: str
    expires_at: int


class Credentials(Tokens):
    async def create_access_key(
        self, account_name: str, user_name: str, description: str = ""
    ) -> NewAccessKey:
        account = await self.account(account_name)
        user = await self.user(account, user_name)
        owned = [k for k in await self._store.access_keys(account.id) if k.user_id == user.id]
        if len(owned) >= MAX_KEYS_PER_USER:
            raise Conflict(
                f"The user {user_name} already has {MAX_KEYS_PER_USER} access keys; "
                "delete one first."
            )
        if len(description) > 255:
            raise InvalidParameter("description", "must be at most 255 characters")
        key, secret_key = self._new_key(user, account, description)
        await self._store.create_access_key(key)
        return NewAccessKey(key, secret_key)

    async def _own_key(self, account_name: str, access_key: str) -> AccessKey:
        account = await self.account(account_name)
        for key in await self._store.access_keys(account.id):
            if key.access_key == access_key:
                return key
        raise AccessKeyNotFound(f"The access key {access_key} does not exist in {account_name}.")

    async def set_access_key_enabled(
        self, account_name: str, access_key: str, enabled: bool
    ) -> None:
        await self._own_key(account_name, access_key)
        await self._store.set_access_key_status(access_key, "active" if enabled else "inactive")

    async def delete_access_key(self, account_name: str, access_key: str) -> None:
        await self._own_key(account_name, access_key)
        await self._store.delete_access_key(access_key)

    async def access_keys(self, account_name: str) -> list[tuple[AccessKey, str]]:
        """(key, owner's user name) for every permanent key of the account."""
        account = await self.account(account_name)
        names = {u.id: u.name for u in await self._store.users(account.id)}
        return [(k, names.get(k.user_id, "")) for k in await self._store.access_keys(account.id)]

    async def create_temporary_credential(
        self, token: str, duration_seconds: int = MIN_TEMPORARY_SECONDS, policy: str | None = None
    ) -> TemporaryCredential:
        """POST /v3.0/OS-CREDENTIAL/securitytokens with the token method.

        The key carries its token's scope (one project, or the domain: no project API) and
        is bound to the token: it stops working when the token is revoked or expires, or
        when the user's password changes (services/access.py).
        """
        if not MIN_TEMPORARY_SECONDS <= duration_seconds <= MAX_TEMPORARY_SECONDS:
            # The IAM API's own code, as for the rest of this body: not WorkspaceApp's.
            raise InvalidIamRequest(
                "duration_seconds",
                f"must be from {MIN_TEMPORARY_SECONDS} to {MAX_TEMPORARY_SECONDS}",
            )
        issued = await self.validate_token(token)
        session_policy = None if policy is None else _session_policy(policy)
        security_token = new_security_token()
        now = self._now()
        expires_at = min(now + duration_seconds * 1000, issued.record.expires_at)
        access_key, secret_key = new_access_key(), new_secret_key()
        key = AccessKey(
            access_key,
            issued.user.id,
            self._box.encrypt(secret_key, bound_to=access_key),
            "active",
            "temporary",
            now,
            expires_at=expires_at,
            security_token_hash=digest(security_token),
            project_id=issued.record.project_id,
            session_policy=session_policy,
            token_hash=issued.record.token_hash,
        )
        limit = self._limits.max_live_temporary_keys
        if not await self._store.create_temporary_key(key, limit):
            oldest = await self._store.oldest_live_expiry(issued.user.id, now, tokens=False)
            raise limit_reached(f"The user already holds {limit} live temporary keys", oldest, now)
        return TemporaryCredential(access_key, secret_key, security_token, expires_at)

    async def purge_expired(self) -> None:
        """Delete what can never authenticate again: expired or revoked tokens, temporary
        keys that expired or lost their token, failure counts past their window."""
        await self._store.purge_expired(self._now(), self._limits.login_failure_window_ms)


def _session_policy(policy: str) -> str:
    """The stored text of a temporary key's session policy, checked and bounded."""
    if len(policy) > MAX_SESSION_POLICY_CHARACTERS:
        raise InvalidIamRequest(
            "policy", f"must be at most {MAX_SESSION_POLICY_CHARACTERS} characters of JSON"
        )
    parsed = parse_policy(policy)
    if len(parsed.statements) > MAX_SESSION_POLICY_STATEMENTS:
        raise InvalidIamRequest(
            "policy.Statement", f"must hold at most {MAX_SESSION_POLICY_STATEMENTS} statements"
        )
    return document_text(parsed)
