"""The driver interface: what a plug-in implements to do the work behind sub-jobs.

A driver has four async steps. The engine calls one step per claim of a sub-job, with a
``StepContext`` and a typed request, and records what the step returns:

    create_server(ctx, ServerRequest) -> ServerCreated | Pending     CREATE_SERVER
    create_image(ctx, ImageRequest)   -> ImageCreated | Pending      CREATE_SERVER_IMAGE
    delete_server(ctx, DeleteRequest) -> Deleted | Pending           DELETE_SERVER, and the
                                                                     rollback of a creation
    delete_image(ctx, image_id)       -> Deleted | Pending           rollback of an image

Rules a driver must follow:

- **Idempotent by sub-job id.** A step may run more than once for one sub-job (its runner
  died, or its lease expired mid-step): use ``ctx.sub_job_id`` as the idempotency key
  (a client token), so a second run finds the server it made instead of making another.
  Deleting what does not exist is a success.
- **Return ``Pending(after_seconds)``** for long work instead of blocking: the sub-job
  stays RUNNING, its runner slot is freed for other work, and the step runs again after
  that delay. A step that blocks holds a slot meanwhile (its runner heartbeats its
  lease), so keep blocking short.
- **Expect to be fenced.** A runner that stalls past its lease (a long pause, a lost
  network) may still be running a step while another runner runs it again; its result
  is then dropped. The idempotency key makes the two runs converge on one resource.
- **Use ``ctx.now()``** (the database's clock) for any deadline: machines' clocks differ.
- **Raise ``DriverError(code, message, transient=...)``** on failure. Transient errors are
  retried with exponential backoff up to ``IMAGEJOBS_MAX_ATTEMPTS``; others fail the
  sub-job at once (a failed creation is rolled back first). Any other exception counts
  as a transient error with a generic code.
- ``ctx.report_progress(text)`` shows progress to operators (``imagejobs engine tasks``).

Register a factory ``(Settings) -> Driver`` under the entry-point group
``imagejobs.drivers`` and choose it with ``IMAGEJOBS_DRIVER=<name>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from imagejobs.domain.enums import JobType
from imagejobs.domain.lifecycle import Pending, Phase
from imagejobs.domain.steering import Behaviour
from imagejobs.domain.times import now_ms
from imagejobs.settings import Settings

__all__ = [
    "DeleteRequest",
    "Deleted",
    "Driver",
    "DriverError",
    "DriverFactory",
    "ImageCreated",
    "ImageRequest",
    "Pending",
    "ServerCreated",
    "ServerRequest",
    "StepContext",
]


class DriverError(Exception):
    """A step failed; ``code`` and ``message`` become the sub-job's job_execute_info."""

    def __init__(self, code: str, message: str, *, transient: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.transient = transient


@dataclass(frozen=True, slots=True)
class StepContext:
    sub_job_id: int  # the idempotency key of the step
    job_id: int
    project_id: str
    job_type: JobType
    phase: Phase  # run, or rollback (undoing a failed creation)
    position: int  # index of the sub-job in its job, from 0
    attempt: int  # 1 on the first try of this phase
    started_at: int  # epoch ms when the sub-job went RUNNING (first try)
    reads: int  # how often the job has been read (ShowImageJob, ListImageJobs)
    steering: Behaviour  # the emulation settings in effect (the simulated driver's)
    progress: Callable[[str], None] = field(default=lambda text: None)
    # The engine's clock (the database's, epoch ms): compare times such as started_at
    # with this, never with this machine's wall clock, which may be minutes off.
    clock: Callable[[], int] = field(default=now_ms)
    previous_progress: str = ""  # what the previous Pending step of this phase reported

    def now(self) -> int:
        return self.clock()

    def report_progress(self, text: str) -> None:
        self.progress(text[:255])


@dataclass(frozen=True, slots=True)
class ServerRequest:
    image_server_id: str
    name: str
    server_group_id: str
    # The creation request as sent (image_ref, root_volume, vpc_id, subnet_id, ...).
    spec: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ImageRequest:
    image_server_id: str
    server_id: str  # the APS instance the image is made from
    instance_id: str
    image_id: str  # chosen by the service: the job's job_resource_info names it
    name: str
    description: str = ""
    execute_sysprep: bool = False


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    image_server_id: str
    name: str
    server_id: str  # "" when the server was never made (a creation that failed early)
    instance_id: str
    recursive: bool = False  # also delete the server group and app-group resources


@dataclass(frozen=True, slots=True)
class ServerCreated:
    server_id: str  # APS instance id, e.g. wksapp-<uuid>
    instance_id: str  # ECS server id


@dataclass(frozen=True, slots=True)
class ImageCreated:
    image_id: str


@dataclass(frozen=True, slots=True)
class Deleted:
    pass


class Driver(Protocol):
    async def create_server(
        self, ctx: StepContext, request: ServerRequest
    ) -> ServerCreated | Pending: ...

    async def create_image(
        self, ctx: StepContext, request: ImageRequest
    ) -> ImageCreated | Pending: ...

    async def delete_server(
        self, ctx: StepContext, request: DeleteRequest
    ) -> Deleted | Pending: ...

    async def delete_image(self, ctx: StepContext, image_id: str) -> Deleted | Pending: ...

    async def close(self) -> None:
        """Release connections; called once when the runner stops."""
        ...


DriverFactory = Callable[[Settings], Driver]
