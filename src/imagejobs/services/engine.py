"""Running sub-jobs: one driver step per claimed task, its outcome turned into the
transition the store records (domain/lifecycle.py). Runners (runner/) call this."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Protocol

from imagejobs.domain.enums import JobType
from imagejobs.domain.lifecycle import (
    GENERIC_ERROR_CODE,
    GENERIC_ERROR_MESSAGE,
    ClaimedTask,
    Done,
    Failed,
    Outcome,
    Pending,
    Phase,
    TaskSummary,
    TaskView,
    Transition,
    decide,
    exhausted,
)
from imagejobs.domain.steering import Behaviour
from imagejobs.domain.times import now_ms
from imagejobs.drivers.interface import (
    Deleted,
    DeleteRequest,
    Driver,
    DriverError,
    ImageCreated,
    ImageRequest,
    ServerCreated,
    ServerRequest,
    StepContext,
)
from imagejobs.services.steering import SteeringService

logger = logging.getLogger("imagejobs.engine")


class EngineStore(Protocol):
    async def claim(self, owner: str, limit: int, now: int, lease_ms: int) -> list[ClaimedTask]: ...

    async def heartbeat(self, held: Sequence[tuple[int, int, str]], until: int) -> None: ...

    async def record(self, transitions: Sequence[Transition], now: int) -> list[bool]: ...

    async def release(self, tasks: Sequence[ClaimedTask], now: int) -> None: ...

    async def next_due_at(self) -> int | None: ...

    async def wait_for_work(self, timeout: float) -> None: ...

    async def listen(self) -> None: ...

    async def unlisten(self) -> None: ...

    async def summary(self, now: int) -> TaskSummary: ...

    async def list_tasks(self, project_id: str | None, limit: int) -> list[TaskView]: ...


class EngineService:
    def __init__(
        self,
        store: EngineStore,
        steering: SteeringService,
        driver: Driver,
        *,
        max_attempts: int = 5,
        backoff_base: float = 1.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self._steering = steering
        self.driver = driver
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._clock = clock

    def now(self) -> int:
        return self._clock()

    async def claim(self, owner: str, limit: int, lease_ms: int) -> list[ClaimedTask]:
        return await self.store.claim(owner, limit, self._clock(), lease_ms)

    async def behaviours(
        self, tasks: Iterable[ClaimedTask]
    ) -> dict[tuple[str, JobType], Behaviour]:
        return await self._steering.behaviours((t.project_id, t.job_type) for t in tasks)

    async def run_step(
        self,
        task: ClaimedTask,
        behaviour: Behaviour,
        progress: Callable[[str], None] = lambda text: None,
    ) -> Transition:
        """Run the task's driver step (unless it used up its attempts); the transition
        to record. Never raises for a failed step: failures are outcomes."""
        outcome: Outcome | None = exhausted(task, self._max_attempts)
        if outcome is None:
            context = StepContext(
                sub_job_id=task.sub_job_id,
                job_id=task.job_id,
                project_id=task.project_id,
                job_type=task.job_type,
                phase=task.phase,
                position=task.position,
                attempt=task.attempts,
                started_at=task.started_at,
                reads=task.reads,
                steering=behaviour,
                progress=progress,
            )
            outcome = await self._outcome(context, task)
        return decide(
            task,
            outcome,
            now=self._clock(),
            max_attempts=self._max_attempts,
            backoff_base=self._backoff_base,
        )

    async def _outcome(self, ctx: StepContext, task: ClaimedTask) -> Outcome:
        try:
            result = await self._dispatch(ctx, task)
        except DriverError as error:
            # Clamped to the columns that keep them (a too long value must not make the
            # whole batch of results fail to record).
            return Failed(error.code[:64], error.message[:1024], error.transient)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("driver step of sub-job %s failed", task.sub_job_id)
            return Failed(GENERIC_ERROR_CODE, GENERIC_ERROR_MESSAGE, transient=True)
        if isinstance(result, Pending):
            return replace(result, progress=result.progress[:255])
        if isinstance(result, ServerCreated):
            return Done({"server_id": result.server_id, "instance_id": result.instance_id})
        if isinstance(result, ImageCreated):
            return Done({"image_id": result.image_id})
        return Done()

    async def _dispatch(
        self, ctx: StepContext, task: ClaimedTask
    ) -> ServerCreated | ImageCreated | Deleted | Pending:
        payload = task.payload
        job_type = task.job_type
        if job_type is JobType.CREATE_SERVER_IMAGE:
            if task.phase is Phase.ROLLBACK:
                return await self.driver.delete_image(ctx, str(payload["image_id"]))
            request = ImageRequest(
                image_server_id=str(payload["server_id"]),
                server_id=str(payload["aps_server_id"]),
                instance_id=str(payload["instance_id"]),
                image_id=str(payload["image_id"]),
                name=str(payload["name"]),
                description=str(payload.get("description", "")),
                execute_sysprep=bool(payload.get("execute_sysprep", False)),
            )
            return await self.driver.create_image(ctx, request)
        if job_type is JobType.CREATE_SERVER and task.phase is Phase.RUN:
            server = ServerRequest(
                image_server_id=str(payload["server_id"]),
                name=str(payload["name"]),
                server_group_id=str(payload.get("server_group_id", "")),
                spec=payload.get("spec", {}),
            )
            return await self.driver.create_server(ctx, server)
        # DELETE_SERVER, and the rollback of CREATE_SERVER: the driver finds what the
        # creation made by its idempotency key, ctx.sub_job_id.
        deletion = DeleteRequest(
            image_server_id=str(payload["server_id"]),
            name=str(payload["name"]),
            server_id=str(payload.get("aps_server_id", "")),
            instance_id=str(payload.get("instance_id", "")),
            recursive=bool(payload.get("recursive", False)),
        )
        return await self.driver.delete_server(ctx, deletion)

    async def record(self, transitions: Sequence[Transition]) -> list[bool]:
        return await self.store.record(transitions, self._clock())

    async def heartbeat(self, held: Sequence[tuple[int, int, str]], lease_ms: int) -> None:
        await self.store.heartbeat(held, self._clock() + lease_ms)

    async def release(self, tasks: Sequence[ClaimedTask]) -> None:
        await self.store.release(tasks, self._clock())

    async def seconds_until_due(self) -> float | None:
        """Seconds until the next task is due (0 if one is), None with an empty queue."""
        due = await self.store.next_due_at()
        return None if due is None else max(0.0, (due - self._clock()) / 1000)

    async def summary(self) -> TaskSummary:
        return await self.store.summary(self._clock())

    async def tasks(self, project_id: str | None = None, limit: int = 100) -> list[TaskView]:
        return await self.store.list_tasks(project_id, limit)
