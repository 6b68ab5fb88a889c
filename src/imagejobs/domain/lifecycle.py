"""The life of an engine-driven sub-job, as pure rules: what a step's outcome changes.

A sub-job that the engine runs has a *task* (its place in the queue). The task is in one
of two phases: ``run`` (do the work) and, after a failed creation, ``rollback`` (undo
what was made). Each claim of a task runs one driver step, whose outcome is one of

    Done      the step finished: the sub-job succeeds (run) or fails as planned (rollback)
    Pending   not finished yet: look again later (or after N reads of the job)
    Failed    an error; transient ones are retried with backoff, up to a bound

``decide`` turns (task, outcome) into the one ``Transition`` that the store records,
in one transaction with the sub-job, the job, the counters and the image server.

    sub-job:  WAITING -> RUNNING -> SUCCESS
                                 -> FAILED                 (a delete that failed)
                                 -> ROLLBACK -> FAILED     (a creation that failed)
    job:      WAITING -> RUNNING -> SUCCESS | FAILED       (once every sub-job ended)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from imagejobs.domain.enums import ImageServerStatus, JobStatus, JobType, SubJobStatus

GENERIC_ERROR_CODE = "WKS.00211401"
GENERIC_ERROR_MESSAGE = "The requested operation failed. Please try again later."
MAX_BACKOFF_SECONDS = 60.0
# Sub-job statuses after which the engine does nothing more with it.
FINAL_SUB_JOB_STATUSES = frozenset(
    {SubJobStatus.SUCCESS, SubJobStatus.FAILED, SubJobStatus.ABNORMAL}
)


class Phase(StrEnum):
    RUN = "run"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task written with its sub-job, in the transaction that creates the job."""

    sub_job_id: int
    job_id: int
    project_id: str
    job_type: JobType
    position: int  # index of the sub-job within its job, from 0
    due_at: int  # epoch ms: not claimable before (the steering's queue delay)
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """A task a runner holds under a lease; ``fencing_token`` guards every write it makes."""

    sub_job_id: int
    job_id: int
    project_id: str
    job_type: JobType
    position: int
    phase: Phase
    fencing_token: int
    attempts: int  # claims of this phase that did not end normally, this one included
    started_at: int  # when the sub-job first went RUNNING
    reads: int  # ShowImageJob/ListImageJobs reads of the job so far
    payload: Mapping[str, Any]
    error_code: str = ""  # the failure being rolled back, in the rollback phase
    error_message: str = ""
    progress: str = ""  # what the previous step of this phase reported


# --- step outcomes ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Done:
    """The step finished; ``resources`` are what it made (ids for the server row)."""

    resources: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pending:
    after_seconds: float
    until_reads: int = 0  # > 0: wake up once the job has been read this many times
    progress: str = ""


@dataclass(frozen=True, slots=True)
class Failed:
    code: str
    message: str
    transient: bool = False


Outcome = Done | Pending | Failed


# --- what gets recorded -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerChange:
    server_id: int
    status: ImageServerStatus | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    delete: bool = False


@dataclass(frozen=True, slots=True)
class Finish:
    """The sub-job ends: its task is removed, its status and end time are set."""

    task: ClaimedTask
    status: SubJobStatus
    error_code: str = ""
    error_message: str = ""
    server: ServerChange | None = None


@dataclass(frozen=True, slots=True)
class Reschedule:
    """The task goes back to the queue, due at ``due_at``; the sub-job keeps its status."""

    task: ClaimedTask
    due_at: int
    # -1 when the claim did not count as an attempt (a pending step, a release on shutdown)
    attempts_delta: int = 0
    wait_reads: int = 0
    error_code: str = ""
    error_message: str = ""
    progress: str = ""


@dataclass(frozen=True, slots=True)
class StartRollback:
    """A creation failed: the sub-job becomes ROLLBACK and its task undoes the work."""

    task: ClaimedTask
    due_at: int
    error_code: str
    error_message: str


Transition = Finish | Reschedule | StartRollback


def backoff_seconds(attempts: int, base: float, cap: float = MAX_BACKOFF_SECONDS) -> float:
    """Exponential backoff after the ``attempts``-th failed attempt: base, 2*base, 4*base..."""
    return float(min(cap, base * (2 ** max(0, attempts - 1))))


def _success(task: ClaimedTask, resources: Mapping[str, str]) -> Finish:
    server_id = int(task.payload["server_id"])
    if task.job_type is JobType.CREATE_SERVER:
        fields = {k: resources[k] for k in ("server_id", "instance_id") if k in resources}
        change = ServerChange(server_id, ImageServerStatus.ACTIVE, fields)
    elif task.job_type is JobType.CREATE_SERVER_IMAGE:
        fields = {"image_id": resources.get("image_id", str(task.payload["image_id"]))}
        change = ServerChange(server_id, ImageServerStatus.BUILT, fields)
    else:
        change = ServerChange(server_id, delete=True)
    return Finish(task, SubJobStatus.SUCCESS, server=change)


def _rolled_back(task: ClaimedTask, code: str, message: str) -> Finish:
    """The rollback ended (or gave up): the sub-job fails with the original error."""
    server_id = int(task.payload["server_id"])
    if task.job_type is JobType.CREATE_SERVER_IMAGE:
        # A failed image build leaves the instance as it was: it can try again.
        previous = ImageServerStatus(task.payload.get("previous_status", "ACTIVE"))
        change = ServerChange(server_id, previous)
    else:
        change = ServerChange(server_id, ImageServerStatus.ERROR)
    return Finish(task, SubJobStatus.FAILED, code, message, change)


def rolls_back(job_type: JobType) -> bool:
    """Creations undo what they made when they fail; deletions just fail."""
    return job_type in (JobType.CREATE_SERVER, JobType.CREATE_SERVER_IMAGE)


def decide(
    task: ClaimedTask,
    outcome: Outcome,
    *,
    now: int,
    max_attempts: int,
    backoff_base: float,
) -> Transition:
    """The transition that records ``outcome`` of one step of ``task`` at time ``now``."""
    if isinstance(outcome, Pending):
        return Reschedule(
            task,
            now + round(outcome.after_seconds * 1000),
            attempts_delta=-1,
            wait_reads=outcome.until_reads,
            error_code=task.error_code,
            error_message=task.error_message,
            progress=outcome.progress,
        )
    if isinstance(outcome, Done):
        if task.phase is Phase.ROLLBACK:
            return _rolled_back(task, task.error_code, task.error_message)
        return _success(task, outcome.resources)
    return _failure(task, outcome, now, max_attempts, backoff_base)


def _failure(
    task: ClaimedTask, failure: Failed, now: int, max_attempts: int, backoff_base: float
) -> Transition:
    rollback = task.phase is Phase.ROLLBACK
    if failure.transient and task.attempts < max_attempts:
        delay = round(backoff_seconds(task.attempts, backoff_base) * 1000)
        # In the rollback phase the error to report stays the one being rolled back.
        code = task.error_code if rollback else failure.code
        message = task.error_message if rollback else failure.message
        return Reschedule(task, now + delay, error_code=code, error_message=message)
    if rollback:
        message = f"{task.error_message} (rollback failed: {failure.message})"
        return _rolled_back(task, task.error_code, message[:1024])
    if rolls_back(task.job_type):
        return StartRollback(task, now, failure.code, failure.message)
    server = ServerChange(int(task.payload["server_id"]), ImageServerStatus.ERROR)
    return Finish(task, SubJobStatus.FAILED, failure.code, failure.message, server)


def exhausted(task: ClaimedTask, max_attempts: int) -> Failed | None:
    """The failure to record, without running the step, once a task used up its attempts
    (a step that keeps crashing its runner must not be retried forever)."""
    if task.attempts <= max_attempts:
        return None
    return Failed(
        GENERIC_ERROR_CODE,
        f"The operation was abandoned after {max_attempts} attempts.",
        transient=False,
    )


def job_status_after(sub_job_counts: Mapping[SubJobStatus, int]) -> JobStatus | None:
    """The job's final status once every sub-job has ended, else None."""
    if any(n for status, n in sub_job_counts.items() if status not in FINAL_SUB_JOB_STATUSES):
        return None
    failed = sub_job_counts.get(SubJobStatus.FAILED, 0) + sub_job_counts.get(
        SubJobStatus.ABNORMAL, 0
    )
    return JobStatus.FAILED if failed else JobStatus.SUCCESS


# --- what operators see -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskView:
    """A live task, as the operator API and ``imagejobs engine tasks`` show it."""

    sub_job_id: int
    job_id: int
    project_id: str
    job_type: JobType
    phase: Phase
    due_at: int
    lease_owner: str | None
    fencing_token: int
    attempts: int
    started_at: int | None
    reads: int
    wait_reads: int
    error_code: str
    error_message: str
    progress: str


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """The queue at a glance: tasks by state."""

    due: int  # claimable now
    scheduled: int  # claimable later (queue delay, backoff, waiting for reads)
    leased: int  # held by a live runner
    expired: int  # held by a runner whose lease ran out: the next claim takes them over
