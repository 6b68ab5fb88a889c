"""What test suites ask of the service: a reset between tests, throwaway tenants, and a
project's whole state exported and imported (the operator API's ``/_imagejobs/reset``,
``/_imagejobs/tenants`` and ``/_imagejobs/state``)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from imagejobs.domain.enums import FINISHED_JOB_STATUSES, JobType, SubJobStatus
from imagejobs.domain.errors import InvalidParameter
from imagejobs.domain.lifecycle import NewTask, job_status_after
from imagejobs.domain.params import check_project_id
from imagejobs.domain.records import JobDetail
from imagejobs.domain.servers import ImageServer
from imagejobs.domain.times import now_ms
from imagejobs.services.identity import IdentityService
from imagejobs.services.project_keys import ProjectKeys
from imagejobs.services.steering import SteeringService

DEFAULT_REGION = "cn-north-4"


class StateStore(Protocol):
    async def reset(self, project_id: str | None, now: int) -> None: ...

    async def dump(
        self, storage_key: str
    ) -> tuple[list[ImageServer], list[JobDetail], dict[int, dict[str, Any]]]: ...

    async def replace(
        self,
        storage_key: str,
        servers: Sequence[ImageServer],
        jobs: Sequence[JobDetail],
        tasks: Sequence[NewTask],
        now: int,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class ProjectState:
    """A project's servers and jobs; ``payloads``: what each unfinished sub-job's driver
    step needs (by sub-job id), as the engine keeps it."""

    project_id: str
    servers: Sequence[ImageServer] = ()
    jobs: Sequence[JobDetail] = ()
    payloads: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)


_UNFINISHED_SUB_JOBS = (SubJobStatus.WAITING, SubJobStatus.RUNNING)


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
        keys: ProjectKeys,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._keys = keys
        self._state = state
        self._steering = steering
        self._identity = identity
        self._clock = clock

    async def reset(self, project_id: str | None = None) -> None:
        """One project (or every project) as new: no jobs, servers, rules or lockouts."""
        if project_id == "*":
            raise InvalidParameter(
                "project_id", "must name one project (leave it out to reset every project)"
            )
        if project_id is not None:
            check_project_id(project_id)
        await self._state.reset(project_id, self._clock())
        self._keys.forget()  # other processes: within the identity cache's seconds
        await self._steering.forget_cached_rules()
        self._keys.sweeper.wake()

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

    async def dump(self, project_id: str) -> ProjectState:
        check_project_id(project_id)  # a storage key's rows are no project's state
        key = await self._keys.storage_key(project_id)
        servers, jobs, payloads = await self._state.dump(key)
        if key != project_id:  # the records as the API shows them: the project's id
            servers = [replace(s, project_id=project_id) for s in servers]
            jobs = [d.under(project_id) for d in jobs]
        return ProjectState(project_id, servers, jobs, payloads)

    async def load(self, state: ProjectState) -> int:
        """Replace the project's servers, jobs and sub-jobs with ``state``'s, after checking
        it is consistent (else nothing changes). Unfinished sub-jobs become engine tasks,
        due at once: they run as the project's steering says. The number of tasks."""
        check_project_id(state.project_id)
        now = self._clock()
        tasks = _tasks_of(state, now)
        key = await self._keys.storage_key(state.project_id)
        await self._state.replace(key, state.servers, state.jobs, tasks, now)
        return len(tasks)


def _tasks_of(state: ProjectState, now: int) -> list[NewTask]:
    """Check ``state`` as a whole; the tasks of its unfinished sub-jobs."""
    project_id = state.project_id
    seen: set[int] = set()
    names: set[str] = set()
    for i, server in enumerate(state.servers):
        where = f"servers[{i}]"
        _unique(server.id, seen, f"{where}.id")
        if server.name in names:
            raise InvalidParameter(f"{where}.name", f"{server.name} is used twice")
        names.add(server.name)
        if server.project_id != project_id:
            raise InvalidParameter(f"{where}.project_id", "must be the state's project")
    servers = {s.id: s for s in state.servers}
    tasks: list[NewTask] = []
    for i, detail in enumerate(state.jobs):
        job, where = detail.job, f"jobs[{i}]"
        _unique(job.id, seen, f"{where}.id")
        _ends_after_it_begins(job.begin_time, job.end_time, where)
        if job.sub_jobs_total != len(detail.sub_jobs):
            raise InvalidParameter(f"{where}.sub_jobs", "sub_jobs_total must be their number")
        counts = Counter(sub.status for sub in detail.sub_jobs)
        final = job_status_after(counts) if detail.sub_jobs else job.status
        if (job.status in FINISHED_JOB_STATUSES) != (final is not None) or (
            final is not None and final != job.status
        ):
            raise InvalidParameter(
                f"{where}.status", f"{job.status} does not match its sub-jobs' statuses"
            )
        for k, sub in enumerate(detail.sub_jobs):
            sub_where = f"{where}.sub_jobs[{k}]"
            _unique(sub.id, seen, f"{sub_where}.id")
            _ends_after_it_begins(sub.begin_time, sub.end_time, sub_where)
            if sub.status not in (*_UNFINISHED_SUB_JOBS, SubJobStatus.SUCCESS, SubJobStatus.FAILED):
                raise InvalidParameter(
                    f"{sub_where}.status", "must be WAITING, RUNNING, SUCCESS or FAILED"
                )
            if sub.status in _UNFINISHED_SUB_JOBS:
                payload = state.payloads.get(sub.id) or _payload(
                    sub.job_type, sub.resource_id, sub.resource_name, servers, sub_where
                )
                tasks.append(NewTask(sub.id, job.id, project_id, job.job_type, k, now, payload))
    return tasks


def _unique(value: int, seen: set[int], where: str) -> None:
    if value in seen:
        raise InvalidParameter(where, f"{value} is used twice")
    seen.add(value)


def _ends_after_it_begins(begin_time: int, end_time: int | None, where: str) -> None:
    if end_time is not None and end_time < begin_time:
        raise InvalidParameter(f"{where}.end_time", "is before begin_time")


def _payload(
    job_type: JobType,
    resource_id: str,
    resource_name: str,
    servers: Mapping[int, ImageServer],
    where: str,
) -> dict[str, Any]:
    """What an unfinished sub-job's step needs, from the server it names."""
    if job_type is JobType.CREATE_SERVER_IMAGE or not resource_id.isdigit():
        raise InvalidParameter(
            f"{where}.payload",
            "an unfinished sub-job needs its payload, or a resource_id naming a server",
        )
    server = servers.get(int(resource_id))
    if job_type is JobType.CREATE_SERVER:
        return {
            "server_id": resource_id,
            "name": resource_name,
            "server_group_id": server.server_group_id if server else "",
            "spec": dict(server.spec) if server else {},
        }
    return {
        "server_id": resource_id,
        "name": resource_name,
        "aps_server_id": server.server_id if server else "",
        "instance_id": server.instance_id if server else "",
        "recursive": False,
    }
