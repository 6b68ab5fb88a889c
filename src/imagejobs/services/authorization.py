"""The one choke point where a principal is allowed, or not, to run an action on a project.

Until IAM is configured every request runs as the ``LOCAL`` principal, which may act on
any project; the IAM layer replaces the authenticator and fills in policies.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagejobs.domain.errors import PermissionDenied


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    # The only project this principal may act on; None means any project.
    project_id: str | None = None
    account_id: str | None = None
    is_root: bool = False
    # May use the operator API under /_imagejobs (engine steering, faults).
    is_operator: bool = False


LOCAL = Principal(name="local", is_root=True, is_operator=True)


def authorize(principal: Principal, action: str, project_id: str) -> None:
    """Raise PermissionDenied unless ``principal`` may run ``action`` on ``project_id``."""
    if principal.project_id is not None and principal.project_id != project_id:
        raise PermissionDenied()
    del action  # every action is allowed until policies exist


def require_operator(principal: Principal) -> None:
    """Raise PermissionDenied unless ``principal`` may use the operator API."""
    if not (principal.is_operator or principal.is_root):
        raise PermissionDenied()
