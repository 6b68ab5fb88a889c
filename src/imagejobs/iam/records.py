"""Identity records: accounts (domains), projects, users, groups, keys, policies, tokens."""

from __future__ import annotations

from dataclasses import dataclass

from imagejobs.iam.policy import Policy


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    enabled: bool
    created_at: int


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    account_id: str
    name: str
    created_at: int


@dataclass(frozen=True, slots=True)
class User:
    id: str
    account_id: str
    name: str
    password_hash: str
    is_root: bool
    enabled: bool
    password_version: int
    created_at: int


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    account_id: str
    name: str
    created_at: int


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key: str
    user_id: str
    secret_ciphertext: str
    status: str  # "active" | "inactive"
    description: str
    created_at: int
    expires_at: int | None = None  # temporary keys only
    security_token_hash: str | None = None
    project_id: str | None = None
    session_policy: str | None = None
    token_hash: str | None = None  # temporary keys: the token they were made from

    @property
    def is_temporary(self) -> bool:
        return self.expires_at is not None


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    id: str
    account_id: str | None  # None: a system policy
    name: str
    description: str
    document: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Grant:
    """One policy attachment: to a user or a group, in a project or in all ("*")."""

    policy_id: str
    principal_type: str  # "user" | "group"
    principal_id: str
    project_id: str


@dataclass(frozen=True, slots=True)
class Attachment:
    policy_id: str
    policy_name: str
    principal_type: str  # "user" | "group"
    principal_id: str
    principal_name: str
    project_id: str  # a project id, or "*" for every project of the account


@dataclass(frozen=True, slots=True)
class Token:
    token_hash: str
    user_id: str
    project_id: str | None  # None: domain-scoped
    methods: str
    issued_at: int
    expires_at: int
    password_version: int
    revoked: bool


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a credential belongs to, resolved with everything authorization needs."""

    user: User
    account: Account
    # Scope: the project a token or temporary key is bound to (None: the whole account).
    project_id: str | None = None
    # A temporary key's session policy narrows what the user's policies allow.
    session_policy: Policy | None = None
