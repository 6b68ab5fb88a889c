"""Identity administration and the IAM token flows, shared by the CLI and the /v3 API.

Every secret this service hands out (a password, an SK, a token, a security token) is
returned once and stored only as a hash or under the operator's encryption key.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from imagejobs.domain.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidParameter,
    LoginFailed,
    NotFound,
)
from imagejobs.domain.times import format_time, now_ms
from imagejobs.iam.credentials import (
    SecretBox,
    digest,
    new_access_key,
    new_id,
    new_secret_key,
    new_security_token,
    new_token,
)
from imagejobs.iam.passwords import (
    check_password_strength,
    generate_password,
    hash_password,
    verify_password,
)
from imagejobs.iam.policy import SYSTEM_POLICIES, Policy, parse_policy
from imagejobs.iam.records import (
    AccessKey,
    Account,
    Attachment,
    Grant,
    Group,
    PolicyRecord,
    Project,
    Token,
    User,
)
from imagejobs.storage.iam_store import SqlIamStore

TOKEN_LIFETIME_MS = 24 * 3600 * 1000
MIN_TEMPORARY_SECONDS = 900
MAX_TEMPORARY_SECONDS = 24 * 3600
MAX_KEYS_PER_USER = 2  # as on Huawei Cloud: two permanent access keys per user
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# Verified against when the user does not exist, so both cases cost the same time.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


class AccountNotFound(NotFound):
    """The account does not exist."""


class UserNotFound(NotFound):
    """The user does not exist."""


class ProjectNotFound(NotFound):
    """The project does not exist."""


class GroupNotFound(NotFound):
    """The group does not exist."""


class PolicyNotFound(NotFound):
    """The policy does not exist."""


class AccessKeyNotFound(NotFound):
    """The access key does not exist."""


@dataclass(frozen=True, slots=True)
class NewAccount:
    account: Account
    root: User
    password: str
    project: Project
    access_key: str
    secret_key: str


@dataclass(frozen=True, slots=True)
class NewAccessKey:
    key: AccessKey
    secret_key: str


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str  # shown once, in X-Subject-Token
    record: Token
    user: User
    account: Account
    project: Project | None


@dataclass(frozen=True, slots=True)
class TemporaryCredential:
    access: str
    secret: str
    security_token: str
    expires_at: int


def _check_name(kind: str, name: str, pattern: re.Pattern[str] = _NAME) -> None:
    if pattern.fullmatch(name) is None:
        raise InvalidParameter(
            kind, "must be 1 to 64 letters, digits, '_', '-' or '.', starting alphanumeric"
        )


class IdentityService:
    def __init__(
        self,
        store: SqlIamStore,
        box: SecretBox,
        clock_ms: Callable[[], int] = now_ms,
        password_cost: int = 15,
    ) -> None:
        self._store = store
        self._box = box
        self._now = clock_ms
        self._password_cost = password_cost  # log2 of scrypt's N (settings)

    def _hash(self, password: str) -> str:
        return hash_password(password, self._password_cost)

    # --- lookups by name (the CLI's vocabulary) -------------------------------------------

    async def account(self, name: str) -> Account:
        account = await self._store.account_by_name(name)
        if account is None:
            raise AccountNotFound(f"The account {name} does not exist.")
        return account

    async def user(self, account: Account, name: str) -> User:
        user = await self._store.user_by_name(account.id, name)
        if user is None:
            raise UserNotFound(f"The user {name} does not exist in account {account.name}.")
        return user

    async def group(self, account: Account, name: str) -> Group:
        group = await self._store.group_by_name(account.id, name)
        if group is None:
            raise GroupNotFound(f"The group {name} does not exist in account {account.name}.")
        return group

    async def project(self, account: Account, name_or_id: str) -> Project:
        for project in await self._store.projects(account.id):
            if name_or_id in (project.name, project.id):
                return project
        raise ProjectNotFound(f"The project {name_or_id} does not exist in account {account.name}.")

    async def policy(self, account: Account, name: str) -> PolicyRecord:
        policy = await self._store.policy_by_name(account.id, name)
        if policy is None:
            raise PolicyNotFound(f"The policy {name} does not exist.")
        return policy

    # --- administration -----------------------------------------------------------------

    async def ensure_system_policies(self) -> None:
        """Create the system policies (Workspace FullAccess, ReadOnlyAccess) once."""
        for name, policy in SYSTEM_POLICIES.items():
            if await self._store.policy_by_name("", name) is None:
                await self._store.create_policy(
                    PolicyRecord(
                        new_id(),
                        None,
                        name,
                        f"System policy: {name}",
                        _document_text(policy),
                        self._now(),
                    )
                )

    async def create_account(
        self,
        name: str,
        *,
        project_name: str = "cn-north-4",
        project_id: str | None = None,
        password: str | None = None,
    ) -> NewAccount:
        """An account with its root user, a first project and a first access key."""
        _check_name("account", name)
        _check_name("project", project_name, _PROJECT_NAME)
        if await self._store.account_by_name(name) is not None:
            raise Conflict(f"The account {name} already exists.")
        if project_id is not None and await self._store.project(project_id) is not None:
            raise Conflict(f"The project id {project_id} is already taken.")
        password = password or generate_password()
        now = self._now()
        account = Account(new_id(), name, True, now)
        root = User(new_id(), account.id, name, self._hash(password), True, True, 0, now)
        project = Project(project_id or new_id(), account.id, project_name, now)
        key, secret_key = self._new_key(root, account, "first key")
        await self._store.create_account(account, root, [project], key)
        return NewAccount(account, root, password, project, key.access_key, secret_key)

    async def create_project(self, account_name: str, name: str) -> Project:
        account = await self.account(account_name)
        _check_name("project", name, _PROJECT_NAME)
        if any(p.name == name for p in await self._store.projects(account.id)):
            raise Conflict(f"The project {name} already exists in account {account_name}.")
        project = Project(new_id(), account.id, name, self._now())
        await self._store.create_project(project)
        return project

    async def create_user(
        self, account_name: str, name: str, password: str | None = None
    ) -> tuple[User, str]:
        account = await self.account(account_name)
        _check_name("user", name)
        if password is not None and (reason := check_password_strength(password)):
            raise InvalidParameter("password", reason)
        if await self._store.user_by_name(account.id, name) is not None:
            raise Conflict(f"The user {name} already exists in account {account_name}.")
        password = password or generate_password()
        user = User(new_id(), account.id, name, self._hash(password), False, True, 0, self._now())
        await self._store.create_user(user)
        return user, password

    async def set_password(self, account_name: str, user_name: str, password: str) -> None:
        """Change a password; every token issued before stops working."""
        if reason := check_password_strength(password):
            raise InvalidParameter("password", reason)
        user = await self.user(await self.account(account_name), user_name)
        await self._store.set_password(user.id, self._hash(password))

    async def set_user_enabled(self, account_name: str, user_name: str, enabled: bool) -> None:
        user = await self.user(await self.account(account_name), user_name)
        await self._store.set_user_enabled(user.id, enabled)

    async def delete_user(self, account_name: str, user_name: str) -> None:
        user = await self.user(await self.account(account_name), user_name)
        if user.is_root:
            raise InvalidParameter("user", "is the account's root user and cannot be deleted")
        await self._store.delete_user(user.id)

    async def create_group(self, account_name: str, name: str) -> Group:
        account = await self.account(account_name)
        _check_name("group", name)
        if await self._store.group_by_name(account.id, name) is not None:
            raise Conflict(f"The group {name} already exists in account {account_name}.")
        group = Group(new_id(), account.id, name, self._now())
        await self._store.create_group(group)
        return group

    async def add_user_to_group(self, account_name: str, group_name: str, user_name: str) -> None:
        account = await self.account(account_name)
        group = await self.group(account, group_name)
        user = await self.user(account, user_name)
        await self._store.add_member(group.id, user.id)

    async def remove_user_from_group(
        self, account_name: str, group_name: str, user_name: str
    ) -> None:
        account = await self.account(account_name)
        group = await self.group(account, group_name)
        user = await self.user(account, user_name)
        await self._store.remove_member(group.id, user.id)

    def _new_key(self, user: User, account: Account, description: str) -> tuple[AccessKey, str]:
        access_key, secret_key = new_access_key(), new_secret_key()
        key = AccessKey(
            access_key,
            user.id,
            self._box.encrypt(secret_key, bound_to=access_key),
            "active",
            description,
            self._now(),
        )
        return key, secret_key

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

    async def create_policy(
        self, account_name: str, name: str, document: str, description: str = ""
    ) -> PolicyRecord:
        account = await self.account(account_name)
        if not 1 <= len(name) <= 128:
            raise InvalidParameter("name", "must be 1 to 128 characters")
        policy = parse_policy(document)  # raises InvalidParameter naming the bad element
        existing = await self._store.policy_by_name(account.id, name)
        if existing is not None:
            raise Conflict(f"The policy {name} already exists.")
        record = PolicyRecord(
            new_id(), account.id, name, description, _document_text(policy), self._now()
        )
        await self._store.create_policy(record)
        return record

    async def _grant(
        self,
        account_name: str,
        policy_name: str,
        user_name: str | None,
        group_name: str | None,
        project: str | None,
    ) -> Grant:
        """Resolve a grant's names: exactly one of a user or a group, one project or all."""
        account = await self.account(account_name)
        policy = await self.policy(account, policy_name)
        if (user_name is None) == (group_name is None):
            raise InvalidParameter("principal", "name exactly one of a user or a group")
        if user_name is not None:
            kind, principal_id = "user", (await self.user(account, user_name)).id
        else:
            kind, principal_id = "group", (await self.group(account, group_name or "")).id
        project_id = (
            "*" if project in (None, "*") else (await self.project(account, project or "")).id
        )
        return Grant(policy.id, kind, principal_id, project_id)

    async def attach_policy(
        self,
        account_name: str,
        policy_name: str,
        *,
        user_name: str | None = None,
        group_name: str | None = None,
        project: str | None = None,
    ) -> None:
        """Grant a policy to a user or group in one project (by name or id) or in all ("*")."""
        grant = await self._grant(account_name, policy_name, user_name, group_name, project)
        await self._store.attach(grant)

    async def detach_policy(
        self,
        account_name: str,
        policy_name: str,
        *,
        user_name: str | None = None,
        group_name: str | None = None,
        project: str | None = None,
    ) -> None:
        grant = await self._grant(account_name, policy_name, user_name, group_name, project)
        await self._store.detach(grant)

    # --- listings ---------------------------------------------------------------------------

    async def account_by_id(self, account_id: str) -> Account | None:
        return await self._store.account_by_id(account_id)

    async def projects_of(self, account_id: str) -> list[Project]:
        return await self._store.projects(account_id)

    async def accounts(self) -> list[Account]:
        return await self._store.accounts()

    async def projects(self, account_name: str) -> list[Project]:
        return await self._store.projects((await self.account(account_name)).id)

    async def users(self, account_name: str) -> list[User]:
        return await self._store.users((await self.account(account_name)).id)

    async def groups(self, account_name: str) -> list[tuple[Group, list[User]]]:
        account = await self.account(account_name)
        return [
            (g, await self._store.group_members(g.id)) for g in await self._store.groups(account.id)
        ]

    async def access_keys(self, account_name: str) -> list[tuple[AccessKey, str]]:
        """(key, owner's user name) for every permanent key of the account."""
        account = await self.account(account_name)
        names = {u.id: u.name for u in await self._store.users(account.id)}
        return [(k, names.get(k.user_id, "")) for k in await self._store.access_keys(account.id)]

    async def policies(self, account_name: str) -> list[PolicyRecord]:
        return await self._store.policies((await self.account(account_name)).id)

    async def attachments(self, account_name: str) -> list[Attachment]:
        return await self._store.attachments((await self.account(account_name)).id)

    # --- tokens -------------------------------------------------------------------------------

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

    async def create_temporary_credential(
        self, token: str, duration_seconds: int = MIN_TEMPORARY_SECONDS, policy: str | None = None
    ) -> TemporaryCredential:
        """POST /v3.0/OS-CREDENTIAL/securitytokens with the token method."""
        if not MIN_TEMPORARY_SECONDS <= duration_seconds <= MAX_TEMPORARY_SECONDS:
            raise InvalidParameter(
                "duration_seconds",
                f"must be from {MIN_TEMPORARY_SECONDS} to {MAX_TEMPORARY_SECONDS}",
            )
        issued = await self.validate_token(token)
        session_policy = None if policy is None else _document_text(parse_policy(policy))
        security_token = new_security_token()
        now = self._now()
        expires_at = min(now + duration_seconds * 1000, issued.record.expires_at)
        access_key, secret_key = new_access_key(), new_secret_key()
        await self._store.create_access_key(
            AccessKey(
                access_key,
                issued.user.id,
                self._box.encrypt(secret_key, bound_to=access_key),
                "active",
                "temporary",
                now,
                expires_at=expires_at,
                security_token_hash=digest(security_token),
                session_policy=session_policy,
            )
        )
        return TemporaryCredential(access_key, secret_key, security_token, expires_at)


def keystone_time(epoch_ms: int) -> str:
    """Keystone's time format: UTC, microseconds, ``Z`` (``2026-11-28T05:36:08.442000Z``)."""
    return format_time(epoch_ms)[:-1] + "000Z"


def _document_text(policy: Policy) -> str:
    return json.dumps(policy.to_document(), separators=(",", ":"), sort_keys=True)
