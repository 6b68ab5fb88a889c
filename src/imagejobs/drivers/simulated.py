"""The ``simulated`` driver: makes nothing, but behaves as steered (domain/steering.py).

Each step first waits for its completion condition (at once; until ``duration_seconds``
after the sub-job started RUNNING, measured from its first start on the engine's clock so
that a retried step does not start over; or until the job has been read ``reads`` times),
then applies the faults that hit it (slow down, then fail with the fault's code and
message), then "makes" its resources. Waiting longer than a second is a ``Pending`` (the
step comes back when the wait is over), never a sleep that would hold a runner slot.
Resource ids are derived from the sub-job id, so a step that runs twice answers the same
ids: the driver is idempotent without any state.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from pathlib import Path

from imagejobs.domain.lifecycle import Phase
from imagejobs.domain.steering import Completion, Effect
from imagejobs.drivers.interface import (
    Deleted,
    DeleteRequest,
    DriverError,
    ImageCreated,
    ImageRequest,
    Pending,
    ServerCreated,
    ServerRequest,
    StepContext,
)
from imagejobs.settings import Settings

_NAMESPACE = uuid.UUID("6c6b0a55-0d1e-4a58-9d4e-8f3f8f3e2a10")
# A job waiting for reads is looked at again after this, even without a read (safety net).
_READS_RECHECK_SECONDS = 60.0
# Waits up to this long are slept in the runner slot (cheaper than a reschedule and a
# claim); longer ones are a Pending, so that no step holds a slot for long.
_SLEEP_IN_SLOT_SECONDS = 1.0
_ROLLBACK_SECONDS = 1.0  # slept in the slot: short, and bounded
_SLOWED = "slowed down"


def derived_id(sub_job_id: int, kind: str) -> str:
    """A stable UUID for the resource ``kind`` made by sub-job ``sub_job_id``."""
    return str(uuid.uuid5(_NAMESPACE, f"{sub_job_id}:{kind}"))


class SimulatedDriver:
    def __init__(self, execution_log: Path | None = None, rng: random.Random | None = None):
        self._log = execution_log
        self._rng = rng or random.Random()  # noqa: S311 - fault injection, not secrets

    async def create_server(
        self, ctx: StepContext, request: ServerRequest
    ) -> ServerCreated | Pending:
        if (pending := await self._steer(ctx)) is not None:
            return pending
        self._record(ctx, "create_server")
        return ServerCreated(
            server_id="wksapp-" + derived_id(ctx.sub_job_id, "aps"),
            instance_id=derived_id(ctx.sub_job_id, "ecs"),
        )

    async def create_image(self, ctx: StepContext, request: ImageRequest) -> ImageCreated | Pending:
        if (pending := await self._steer(ctx)) is not None:
            return pending
        self._record(ctx, "create_image")
        return ImageCreated(image_id=request.image_id)

    async def delete_server(self, ctx: StepContext, request: DeleteRequest) -> Deleted | Pending:
        if (pending := await self._steer(ctx)) is not None:
            return pending
        self._record(ctx, "delete_server")
        return Deleted()

    async def delete_image(self, ctx: StepContext, image_id: str) -> Deleted | Pending:
        if (pending := await self._steer(ctx)) is not None:
            return pending
        self._record(ctx, "delete_image")
        return Deleted()

    async def close(self) -> None:
        return None

    async def _steer(self, ctx: StepContext) -> Pending | None:
        """Wait, slow down or fail as the steering says; a Pending when not done yet."""
        behaviour = ctx.steering
        if ctx.phase is Phase.ROLLBACK:
            # Undoing is quick, but visible: the sub-job shows ROLLBACK for a moment.
            if behaviour.completion is Completion.DURATION:
                await asyncio.sleep(min(_ROLLBACK_SECONDS, behaviour.duration_seconds))
            return None
        if behaviour.completion is Completion.READS and ctx.reads < behaviour.reads:
            progress = f"read {ctx.reads} of {behaviour.reads} times"
            return Pending(_READS_RECHECK_SECONDS, until_reads=behaviour.reads, progress=progress)
        if behaviour.completion is Completion.DURATION:
            done_at = ctx.started_at + round(behaviour.duration_seconds * 1000)
            if (remaining := done_at - ctx.now()) > 0:
                total = max(1, done_at - ctx.started_at)
                progress = f"{min(99, 100 * (total - remaining) // total)}%"
                if remaining > _SLEEP_IN_SLOT_SECONDS * 1000:
                    return Pending(remaining / 1000, progress=progress)
                ctx.report_progress(progress)
                await asyncio.sleep(remaining / 1000)
        slowed = ctx.previous_progress == _SLOWED
        for fault in behaviour.faults:
            if not fault.hits(ctx.position) or self._rng.random() >= fault.probability:
                continue
            if fault.effect is Effect.SLOW:
                if not slowed:  # once per step: it comes back when the slowdown is over
                    return Pending(fault.slow_seconds, progress=_SLOWED)
            else:
                self._record(ctx, "failed")
                raise DriverError(fault.error_code, fault.error_message, transient=fault.transient)
        return None

    def _record(self, ctx: StepContext, step: str) -> None:
        """One line per executed step, appended in one write (atomic for small lines)."""
        if self._log is None:
            return
        line = f"{ctx.sub_job_id} {step} {ctx.phase.value} {ctx.attempt} {os.getpid()}\n"
        descriptor = os.open(self._log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line.encode())
        finally:
            os.close(descriptor)


def create_simulated_driver(settings: Settings) -> SimulatedDriver:
    """The entry point ``simulated`` of group ``imagejobs.drivers``."""
    return SimulatedDriver(settings.simulated_execution_log)
