"""The image-server APIs as use cases: each request that changes a server starts a job
(CREATE_SERVER, DELETE_SERVER, CREATE_SERVER_IMAGE) whose sub-jobs the engine runs."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from imagejobs.domain.enums import ImageServerStatus, JobStatus, JobType, SubJobStatus
from imagejobs.domain.errors import QuotaExceeded, Throttled
from imagejobs.domain.ids import IdCollision, IdGenerator, parse_id
from imagejobs.domain.lifecycle import NewTask
from imagejobs.domain.records import Job, JobDetail, Page, PageRequest, SubJob
from imagejobs.domain.servers import (
    ImageServer,
    ListedServer,
    NewImage,
    NewServer,
    ServerFilter,
    ServerNotFound,
    ServerUpdate,
)
from imagejobs.domain.times import now_ms
from imagejobs.services.engine import new_owner
from imagejobs.services.steering import SteeringService

JobPlan = tuple[JobDetail, Sequence[NewTask]]
T = TypeVar("T")
logger = logging.getLogger("imagejobs.servers")
NODE_LEASE_MS = 60_000  # renewed once a third of it has passed
ID_ATTEMPTS = 5


class ServerStore(Protocol):
    # Whether create() applies the steering rules' queue delay itself, in the statement that
    # writes the task (one read fewer per create): its plan is due as the defaults say.
    resolves_queue_delay: bool

    async def create(self, server: ImageServer, plan: JobPlan, now: int) -> None: ...

    async def get(self, project_id: str, server_id: int) -> ImageServer | None: ...

    async def list(
        self, project_id: str, server_filter: ServerFilter, page: PageRequest
    ) -> Page[ListedServer]: ...

    async def update(
        self, project_id: str, server_id: int, update: ServerUpdate, now: int
    ) -> None: ...

    async def start_deletion(
        self,
        project_id: str,
        server_ids: Sequence[int],
        plan: Callable[[Sequence[ImageServer]], JobPlan],
        now: int,
    ) -> JobDetail: ...

    async def start_image_build(
        self,
        project_id: str,
        server_id: int,
        plan: Callable[[ImageServer], JobPlan],
        now: int,
    ) -> JobDetail: ...


class NodeStore(Protocol):
    async def lease(self, owner: str, now: int, until: int, node: int | None) -> int | None: ...


class QuotaStore(Protocol):
    async def servers(self, project_id: str, limit: int) -> int: ...

    async def usage(self, project_id: str) -> tuple[int, int]: ...

    async def take_token(self, project_id: str, rate: float, burst: float, now: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class Quotas:
    """Per-project limits (0: none); defaults a normal user never reaches."""

    servers: int = 10_000
    jobs_in_flight: int = 1_000
    creates_per_second: float = 50.0


# One sub-job: what it works on (job_resource_info) and what its driver step needs.
Work = tuple[str, str, Mapping[str, Any]]


class ServerService:
    def __init__(
        self,
        store: ServerStore,
        steering: SteeringService,
        ids: IdGenerator,
        clock: Callable[[], int] = now_ms,
        *,
        nodes: NodeStore | None = None,
        quota_store: QuotaStore | None = None,
        quotas: Quotas = Quotas(),
    ) -> None:
        self._store = store
        self._steering = steering
        self._ids = ids
        self._clock = clock
        self._nodes = nodes
        self._node: int | None = None
        self._node_renew_at = 0
        self._owner = new_owner()
        self._quota_store = quota_store
        self._quotas = quotas

    async def create(self, project_id: str, request: NewServer) -> str:
        """Record the server (CREATING) and its CREATE_SERVER job; the job's id."""
        await self._admit(project_id, new_server=True)
        return await self._with_fresh_ids(lambda: self._create(project_id, request))

    async def _create(self, project_id: str, request: NewServer) -> str:
        now = self._clock()
        server = ImageServer(
            id=self._ids.next_id(),
            project_id=project_id,
            name=request.name,
            description=request.description,
            status=ImageServerStatus.CREATING,
            image_ref=request.image_ref,
            authorize_accounts=request.authorize_accounts,
            create_time=now,
            update_time=now,
            server_group_id=str(uuid.uuid4()),
            enterprise_project_id=request.enterprise_project_id,
            spec=request.spec,
        )
        work = [(str(server.id), server.name, creation_payload(server))]
        if self._store.resolves_queue_delay:
            queue_seconds = self._steering.defaults.queue_seconds
            plan = self._plan_with(project_id, JobType.CREATE_SERVER, work, now, queue_seconds)
        else:
            plan = await self._plan(project_id, JobType.CREATE_SERVER, work, now)
        await self._store.create(server, plan, now)
        return str(plan[0].job.id)

    async def list(
        self, project_id: str, server_filter: ServerFilter, page: PageRequest
    ) -> Page[ListedServer]:
        """The page as rows (ListImageServers encodes them without per-row objects)."""
        return await self._store.list(project_id, server_filter, page)

    async def show(self, project_id: str, server_id: str) -> ImageServer:
        numeric = parse_id(server_id)
        server = None if numeric is None else await self._store.get(project_id, numeric)
        if server is None:
            raise _not_found(server_id)
        return server

    async def update(self, project_id: str, server_id: str, update: ServerUpdate) -> None:
        numeric = parse_id(server_id)
        if numeric is None:
            raise _not_found(server_id)
        await self._store.update(project_id, numeric, update, self._clock())

    async def batch_delete(
        self, project_id: str, server_ids: Sequence[str], recursive: bool = False
    ) -> str:
        """Start a DELETE_SERVER job with one sub-job per existing server; unknown ids
        are ignored (with none left, the job has no sub-jobs and is SUCCESS at once)."""
        await self._admit(project_id)
        return await self._with_fresh_ids(
            lambda: self._batch_delete(project_id, server_ids, recursive)
        )

    async def _batch_delete(
        self, project_id: str, server_ids: Sequence[str], recursive: bool
    ) -> str:
        now = self._clock()
        numeric = [n for n in (parse_id(i) for i in server_ids) if n is not None]
        behaviour = await self._steering.behaviour(project_id, JobType.DELETE_SERVER)

        def plan(servers: Sequence[ImageServer]) -> JobPlan:
            work = [(str(s.id), s.name, deletion_payload(s, recursive)) for s in servers]
            return self._plan_with(
                project_id, JobType.DELETE_SERVER, work, now, behaviour.queue_seconds
            )

        job = await self._store.start_deletion(project_id, numeric, plan, now)
        return str(job.job.id)

    async def recreate_image(self, project_id: str, server_id: str, request: NewImage) -> str:
        """Start a CREATE_SERVER_IMAGE job whose sub-job names the image to be made."""
        numeric = parse_id(server_id)
        if numeric is None:
            raise _not_found(server_id)
        await self._admit(project_id)
        return await self._with_fresh_ids(
            lambda: self._recreate_image(project_id, numeric, request)
        )

    async def _recreate_image(self, project_id: str, numeric: int, request: NewImage) -> str:
        now = self._clock()
        behaviour = await self._steering.behaviour(project_id, JobType.CREATE_SERVER_IMAGE)
        image_id = str(uuid.uuid4())

        def plan(server: ImageServer) -> JobPlan:
            payload = image_payload(
                server, image_id, request.name, request.description, request.execute_sysprep
            )
            work = [(image_id, request.name, payload)]
            return self._plan_with(
                project_id, JobType.CREATE_SERVER_IMAGE, work, now, behaviour.queue_seconds
            )

        job = await self._store.start_image_build(project_id, numeric, plan, now)
        return str(job.job.id)

    # --- ids that cannot collide ------------------------------------------------------------

    async def _with_fresh_ids(self, start: Callable[[], Awaitable[T]]) -> T:
        """Run ``start`` (which mints its ids) under this process's leased node; again,
        with new ids, when an id still collides."""
        for attempt in range(ID_ATTEMPTS):
            await self._lease_node()
            try:
                return await start()
            except IdCollision:
                if attempt == ID_ATTEMPTS - 1:
                    raise
                logger.warning("a new id collided (node %d); retrying", self._ids.node)
                self._ids.skip()
        raise AssertionError("unreachable")

    async def _lease_node(self) -> None:
        if self._nodes is None:
            return
        now = self._clock()
        if self._node is not None and now < self._node_renew_at:
            return
        node = await self._nodes.lease(self._owner, now, now + NODE_LEASE_MS, self._node)
        if node is None:  # every node is leased: share one, and rely on the retries
            logger.warning("no free id node: ids may collide (and are then retried)")
            self._node_renew_at = now + NODE_LEASE_MS // 3
            return
        if node != self._node:
            self._ids.use_node(node)
            self._node = node
        self._node_renew_at = now + NODE_LEASE_MS // 3

    # --- quotas --------------------------------------------------------------------------------

    async def _admit(self, project_id: str, *, new_server: bool = False) -> None:
        """Refuse a job-starting request beyond the project's quotas (documented errors:
        403 WKS.00081105 for a quota, 429 APIGW.0308 for the rate)."""
        store, quotas = self._quota_store, self._quotas
        if store is None:
            return
        if quotas.creates_per_second > 0:
            rate = quotas.creates_per_second
            burst = max(1.0, 2 * rate)
            if not await store.take_token(project_id, rate, burst, self._clock()):
                raise Throttled(
                    f"policy project over ratelimit,limit:{rate:g},time:1 second",
                    retry_after=1,
                )
        in_flight, servers = quotas.jobs_in_flight, quotas.servers if new_server else 0
        if not in_flight and not servers:
            return
        jobs_in_flight, creations = await store.usage(project_id)
        if in_flight and jobs_in_flight >= in_flight:
            raise QuotaExceeded(
                f"Number of jobs in progress exceeds limit {in_flight}: wait for some to end."
            )
        # Counted only once the project ever started that many creations (cheap till then).
        if servers and creations >= servers and await store.servers(project_id, servers) >= servers:
            raise QuotaExceeded(f"Number of image servers exceeds limit {servers}.")

    async def _plan(
        self, project_id: str, job_type: JobType, work: Sequence[Work], now: int
    ) -> JobPlan:
        behaviour = await self._steering.behaviour(project_id, job_type)
        return self._plan_with(project_id, job_type, work, now, behaviour.queue_seconds)

    def _plan_with(
        self,
        project_id: str,
        job_type: JobType,
        work: Sequence[Work],
        now: int,
        queue_seconds: float,
    ) -> JobPlan:
        """A WAITING job with one WAITING sub-job (and task) per item of ``work``."""
        job_id = self._ids.next_id()
        due_at = now + round(queue_seconds * 1000)
        sub_jobs: list[SubJob] = []
        tasks: list[NewTask] = []
        for position, (resource_id, resource_name, payload) in enumerate(work):
            sub_job = SubJob(
                id=self._ids.next_id(),
                job_id=job_id,
                project_id=project_id,
                job_type=job_type,
                status=SubJobStatus.WAITING,
                begin_time=now,
                end_time=None,
                resource_id=resource_id,
                resource_name=resource_name,
            )
            sub_jobs.append(sub_job)
            tasks.append(
                NewTask(sub_job.id, job_id, project_id, job_type, position, due_at, payload)
            )
        # Nothing to do (a batch delete of unknown servers): the job is done at once.
        status = JobStatus.WAITING if sub_jobs else JobStatus.SUCCESS
        job = Job(
            id=job_id,
            project_id=project_id,
            job_type=job_type,
            status=status,
            begin_time=now,
            end_time=None if sub_jobs else now,
            sub_jobs_total=len(sub_jobs),
        )
        return JobDetail(job=job, sub_jobs=sub_jobs), tasks


# What each job type's step needs from its server (services/engine.py reads it back); the
# demo world builds its live jobs with the same functions.


def creation_payload(server: ImageServer) -> dict[str, Any]:
    return {
        "server_id": str(server.id),
        "name": server.name,
        "server_group_id": server.server_group_id,
        "spec": dict(server.spec),
    }


def image_payload(
    server: ImageServer, image_id: str, name: str, description: str, execute_sysprep: bool
) -> dict[str, Any]:
    return {
        "server_id": str(server.id),
        "server_name": server.name,
        "aps_server_id": server.server_id,
        "instance_id": server.instance_id,
        "image_id": image_id,
        "name": name,
        "description": description,
        "execute_sysprep": execute_sysprep,
        "previous_status": server.status.value,
    }


def deletion_payload(server: ImageServer, recursive: bool) -> dict[str, Any]:
    return {
        "server_id": str(server.id),
        "name": server.name,
        "aps_server_id": server.server_id,
        "instance_id": server.instance_id,
        "recursive": recursive,
    }


def _not_found(server_id: str) -> ServerNotFound:
    return ServerNotFound(f"The image server {server_id} does not exist.")
