"""Identity administration and the IAM token flows, shared by the CLI and the /v3 API.

Every secret this service hands out (a password, an SK, a token, a security token) is
returned once and stored only as a hash or under the operator's encryption key. The
service is put together from one module per noun: ``accounts`` (accounts, projects,
users, groups, policies), ``tokens`` and ``credentials`` (access keys).
"""

from __future__ import annotations

from imagejobs.services.accounts import (
    AccountNotFound,
    GroupNotFound,
    NewAccount,
    PolicyNotFound,
    ProjectNotFound,
    UserNotFound,
)
from imagejobs.services.credentials import (
    MAX_KEYS_PER_USER,
    MAX_TEMPORARY_SECONDS,
    MIN_TEMPORARY_SECONDS,
    AccessKeyNotFound,
    Credentials,
    NewAccessKey,
    TemporaryCredential,
)
from imagejobs.services.tokens import TOKEN_LIFETIME_MS, IssuedToken, keystone_time

__all__ = [
    "MAX_KEYS_PER_USER",
    "MAX_TEMPORARY_SECONDS",
    "MIN_TEMPORARY_SECONDS",
    "TOKEN_LIFETIME_MS",
    "AccessKeyNotFound",
    "AccountNotFound",
    "GroupNotFound",
    "IdentityService",
    "IssuedToken",
    "NewAccessKey",
    "NewAccount",
    "PolicyNotFound",
    "ProjectNotFound",
    "TemporaryCredential",
    "UserNotFound",
    "keystone_time",
]


class IdentityService(Credentials):
    """Accounts, tokens and access keys over one identity store."""
