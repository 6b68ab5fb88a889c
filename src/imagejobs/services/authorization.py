"""Who is calling: the ``Principal``. Authorization of API actions happens in one place,
``AccessControl.authorize`` (services/access.py)."""

from __future__ import annotations

from dataclasses import dataclass

from imagejobs.iam.policy import Policy
from imagejobs.iam.records import Account, User


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    # The only project this principal may act on (a project-scoped token); None: any
    # project of its account (AK/SK), or any project at all for LOCAL.
    project_id: str | None = None
    account_id: str | None = None
    is_root: bool = False
    # May use the operator API under /_imagejobs (engine steering, faults).
    is_operator: bool = False
    user_id: str | None = None
    account_name: str | None = None
    # A domain-scoped token: valid for IAM calls, not for a project's APIs.
    domain_scoped: bool = False
    # A temporary key's session policy, which narrows what the user's policies allow.
    session_policy: Policy | None = None

    @classmethod
    def of_user(
        cls,
        user: User,
        account: Account,
        *,
        project_id: str | None = None,
        domain_scoped: bool = False,
        session_policy: Policy | None = None,
    ) -> Principal:
        """An IAM user of ``account`` (its root or not), as its credentials scope it."""
        return cls(
            name=user.name,
            project_id=project_id,
            account_id=account.id,
            is_root=user.is_root,
            user_id=user.id,
            account_name=account.name,
            domain_scoped=domain_scoped,
            session_policy=session_policy,
        )


# Everyone, when the service runs without IAM (IMAGEJOBS_AUTH=none).
LOCAL = Principal(name="local", is_root=True, is_operator=True)
