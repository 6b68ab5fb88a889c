"""What test suites ask of the service: a reset between tests and throwaway tenants
(the operator API's ``/_imagejobs/reset`` and ``/_imagejobs/tenants``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from imagejobs.domain.errors import InvalidParameter
from imagejobs.services.identity import IdentityService
from imagejobs.services.steering import SteeringService

DEFAULT_REGION = "cn-north-4"


class StateStore(Protocol):
    async def reset(self, project_id: str | None) -> None: ...


@dataclass(frozen=True, slots=True)
class NewTenant:
    """An account with its root user, one project and an access key, all shown once."""

    account: str
    user: str
    password: str
    domain_id: str
    project_id: str
    region: str
    access_key: str
    secret_key: str


class TestKitService:
    __test__ = False  # not a pytest test class, whatever its name

    def __init__(
        self,
        state: StateStore,
        steering: SteeringService,
        identity: IdentityService | None,
    ) -> None:
        self._state = state
        self._steering = steering
        self._identity = identity

    async def reset(self, project_id: str | None = None) -> None:
        """One project (or every project) as new: no jobs, servers, rules or lockouts."""
        if project_id is not None and not 1 <= len(project_id) <= 128:
            raise InvalidParameter("project_id", "must be 1 to 128 characters long")
        await self._state.reset(project_id)
        await self._steering.forget_cached_rules()

    async def create_tenant(
        self,
        account: str | None = None,
        region: str | None = None,
        project_id: str | None = None,
        password: str | None = None,
    ) -> NewTenant:
        if self._identity is None:
            raise InvalidParameter("auth", "tenants need IMAGEJOBS_AUTH=iam")
        created = await self._identity.create_account(
            account or f"tenant-{uuid.uuid4().hex[:12]}",
            project_name=region or DEFAULT_REGION,
            project_id=project_id,
            password=password,
        )
        return NewTenant(
            account=created.account.name,
            user=created.root.name,
            password=created.password,
            domain_id=created.account.id,
            project_id=created.project.id,
            region=created.project.name,
            access_key=created.access_key,
            secret_key=created.secret_key,
        )
