"""Running sub-jobs: one driver step per claimed task, its outcome turned into the
transition the store records (domain/lifecycle.py). Runners (runner/) call this."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
    Reschedule,
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
# Column sizes of what a step's result writes (storage/schema.py).
_MAX_RESOURCE_ID = 128
_MAX_CODE = 64
_MAX_MESSAGE = 1024
_MAX_PROGRESS = 255


def new_owner() -> str:
    """A name for a lease owner (a runner, a process minting ids): host, process and a
    random part, unique per owner, at most 64 characters (the columns' size)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(4)}"


class Clock(Protocol):
    """The engine's clock, epoch ms (storage/engine_clock.py: the database's)."""

    def __call__(self) -> int: ...

    async def sync(self) -> None: ...


class LocalClock:
    """This machine's clock (tests, and tools that run on the database's machine)."""

    def __call__(self) -> int:
        return now_ms()

    async def sync(self) -> None:
        return None


class EngineStore(Protocol):
    async def claim(self, owner: str, limit: int, now: int, lease_ms: int) -> list[ClaimedTask]: ...

    async def heartbeat(
        self, owner: str, held: Sequence[tuple[int, int, str]], until: int
    ) -> None: ...

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
        clock: Clock | None = None,
        project_of: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        """``project_of``: a task's project id from its storage key (services/project_keys.py),
        for the driver's StepContext (None from it: a key retired since); None: the key
        is the id."""
        self.store = store
        self._project_of = project_of
        self._steering = steering
        self.driver = driver
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self.clock: Clock = clock or LocalClock()

    def now(self) -> int:
        return self.clock()

    async def sync_clock(self) -> None:
        """Anchor to the database's clock before the first decision (start-up)."""
        await self.clock.sync()

    async def claim(self, owner: str, limit: int, lease_ms: int) -> list[ClaimedTask]:
        return await self.store.claim(owner, limit, self.clock(), lease_ms)

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
            project_id: str | None = task.project_id
            if self._project_of is not None:  # a reset project's id, not its storage key
                project_id = await self._project_of(task.project_id)
            if project_id is None:
                # Its project was reset since the claim (twice, if the key was a reset's):
                # no driver is told of a step whose result would be dropped. Given back
                # as at shutdown; a retired key's task takes no write (RETIRED_FENCE).
                return Reschedule(
                    task,
                    self.clock(),
                    attempts_delta=-1,
                    error_code=task.error_code,
                    error_message=task.error_message,
                    progress=task.progress,
                )
            context = StepContext(
                sub_job_id=task.sub_job_id,
                job_id=task.job_id,
                project_id=project_id,
                job_type=task.job_type,
                phase=task.phase,
                position=task.position,
                attempt=task.attempts,
                started_at=task.started_at,
                reads=task.reads,
                steering=behaviour,
                progress=progress,
                clock=self.clock,
                previous_progress=task.progress,
            )
            outcome = await self._outcome(context, task)
        return decide(
            task,
            outcome,
            now=self.clock(),
            max_attempts=self._max_attempts,
            backoff_base=self._backoff_base,
        )

    async def _outcome(self, ctx: StepContext, task: ClaimedTask) -> Outcome:
        try:
            result = await self._dispatch(ctx, task)
        except DriverError as error:
            # Clamped to the columns that keep them (a too long value must not make the
            # whole batch of results fail to record).
            return Failed(
                _text(error.code, _MAX_CODE), _text(error.message, _MAX_MESSAGE), error.transient
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("driver step of sub-job %s failed", task.sub_job_id)
            return Failed(GENERIC_ERROR_CODE, GENERIC_ERROR_MESSAGE, transient=True)
        if isinstance(result, Pending):
            return replace(result, progress=_text(result.progress, _MAX_PROGRESS))
        resources: dict[str, str] = {}
        if isinstance(result, ServerCreated):
            resources = {"server_id": result.server_id, "instance_id": result.instance_id}
        elif isinstance(result, ImageCreated):
            resources = {"image_id": result.image_id}
        if invalid := _invalid_resources(resources):
            # Stored as it is, it would fail the whole batch of results it is written with.
            logger.error("driver step of sub-job %s: %s", task.sub_job_id, invalid)
            return Failed(GENERIC_ERROR_CODE, f"The driver answered {invalid}.", transient=False)
        return Done(resources)

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

    def unrecordable(self, transition: Transition) -> Transition:
        """What to record instead of a result the database refused: the step failed."""
        failure = Failed(GENERIC_ERROR_CODE, "The driver's result could not be recorded.")
        return decide(
            transition.task,
            failure,
            now=self.clock(),
            max_attempts=self._max_attempts,
            backoff_base=self._backoff_base,
        )

    async def record(self, transitions: Sequence[Transition]) -> list[bool]:
        return await self.store.record(transitions, self.clock())

    async def heartbeat(
        self, owner: str, held: Sequence[tuple[int, int, str]], lease_ms: int
    ) -> None:
        await self.store.heartbeat(owner, held, self.clock() + lease_ms)

    async def release(self, tasks: Sequence[ClaimedTask]) -> None:
        await self.store.release(tasks, self.clock())

    async def seconds_until_due(self) -> float | None:
        """Seconds until the next task is due (0 if one is), None with an empty queue."""
        due = await self.store.next_due_at()
        return None if due is None else max(0.0, (due - self.clock()) / 1000)

    async def summary(self) -> TaskSummary:
        return await self.store.summary(self.clock())

    async def tasks(self, project_id: str | None = None, limit: int = 100) -> list[TaskView]:
        return await self.store.list_tasks(project_id, limit)


def _text(value: object, size: int) -> str:
    """A driver's text as a column keeps it: a string, no NUL (PostgreSQL refuses one),
    at most ``size`` characters."""
    return str(value).replace("\x00", "")[:size]


def _invalid_resources(resources: dict[str, str]) -> str:
    """What is wrong with the ids a step made ("" when nothing is)."""
    for name, value in resources.items():
        if "\x00" in value or len(value) > _MAX_RESOURCE_ID:
            return f"an invalid {name} (a NUL character, or over {_MAX_RESOURCE_ID} characters)"
    return ""
