"""Accounts, projects, users, groups and policies: administration and lookups by name.

Shared by the CLI (`imagejobs iam`) and the /v3 identity API, through ``IdentityService``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from imagejobs.domain.errors import Conflict, InvalidParameter, NotFound
from imagejobs.domain.times import now_ms
from imagejobs.iam.credentials import SecretBox, new_access_key, new_id, new_secret_key
from imagejobs.iam.passwords import check_password_strength, generate_password
from imagejobs.iam.policy import SYSTEM_POLICIES, Policy, parse_policy
from imagejobs.iam.records import (
    AccessKey,
    Account,
    Attachment,
    Grant,
    Group,
    PolicyRecord,
    Project,
    User,
)
from imagejobs.services.password_hashing import PasswordHashing
from imagejobs.storage.iam_store import SqlIamStore

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


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


@dataclass(frozen=True, slots=True)
class NewAccount:
    account: Account
    root: User
    password: str
    project: Project
    access_key: str
    secret_key: str


def _check_name(kind: str, name: str, pattern: re.Pattern[str] = _NAME) -> None:
    if pattern.fullmatch(name) is None:
        raise InvalidParameter(
            kind, "must be 1 to 64 letters, digits, '_', '-' or '.', starting alphanumeric"
        )


@dataclass(frozen=True, slots=True)
class CredentialLimits:
    """Login lockout and credential bounds (the IMAGEJOBS_LOGIN_* and MAX_LIVE_* settings)."""

    login_max_failures: int = 5
    login_failure_window_ms: int = 900_000
    login_lockout_ms: int = 900_000
    login_address_max_failures: int = 30
    max_live_tokens: int = 100
    max_live_temporary_keys: int = 100


class Accounts:
    def __init__(
        self,
        store: SqlIamStore,
        box: SecretBox,
        clock_ms: Callable[[], int] = now_ms,
        *,
        limits: CredentialLimits | None = None,
        hashing: PasswordHashing | None = None,
    ) -> None:
        self._store = store
        self._box = box
        self._now = clock_ms
        self._limits = limits or CredentialLimits()
        self._hashing = hashing or PasswordHashing()

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
                        document_text(policy),
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
        root = User(
            new_id(), account.id, name, await self._hashing.hash(password), True, True, 0, now
        )
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
        user = User(
            new_id(),
            account.id,
            name,
            await self._hashing.hash(password),
            False,
            True,
            0,
            self._now(),
        )
        await self._store.create_user(user)
        return user, password

    async def set_password(self, account_name: str, user_name: str, password: str) -> None:
        """Change a password; every token issued before stops working."""
        if reason := check_password_strength(password):
            raise InvalidParameter("password", reason)
        user = await self.user(await self.account(account_name), user_name)
        await self._store.set_password(user.id, await self._hashing.hash(password))

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
            new_id(), account.id, name, description, document_text(policy), self._now()
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

    async def policies(self, account_name: str) -> list[PolicyRecord]:
        return await self._store.policies((await self.account(account_name)).id)

    async def attachments(self, account_name: str) -> list[Attachment]:
        return await self._store.attachments((await self.account(account_name)).id)


def document_text(policy: Policy) -> str:
    return json.dumps(policy.to_document(), separators=(",", ":"), sort_keys=True)
