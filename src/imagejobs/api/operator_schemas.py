"""Bodies of the operator API (``/_imagejobs``): steering rules, the engine's state.

These structs refuse unknown fields: a mistyped rule field is an error, not a no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from imagejobs.api.schemas import DateTime, pattern_rule
from imagejobs.domain.enums import ImageServerStatus, JobStatus, JobType, SubJobStatus
from imagejobs.domain.lifecycle import (
    GENERIC_ERROR_CODE,
    GENERIC_ERROR_MESSAGE,
    TaskSummary,
    TaskView,
)
from imagejobs.domain.params import ONE_PROJECT_ID_PATTERN
from imagejobs.domain.records import Job, JobDetail, SubJob
from imagejobs.domain.servers import AccountInfo, ImageRef, ImageServer
from imagejobs.domain.steering import (
    MAX_FAULTS,
    MAX_READS,
    MAX_SECONDS,
    MAX_SUB_JOB_INDEX,
    Behaviour,
    Completion,
    Effect,
    Fault,
    Rule,
)
from imagejobs.domain.times import format_optional_time, format_time
from imagejobs.services.testkit import ProjectState

Seconds = Annotated[float, Meta(ge=0, le=MAX_SECONDS, description="Seconds.")]
CompletionName = Literal["immediate", "duration", "reads"]


class FaultBody(Struct, kw_only=True, forbid_unknown_fields=True):
    """A fault: sub-jobs it hits fail with the code and message, or are slowed down."""

    effect: Literal["fail", "slow"] = "fail"
    probability: Annotated[float, Meta(ge=0, le=1)] = 1.0
    sub_job_index: (
        Annotated[
            int,
            Meta(ge=0, le=MAX_SUB_JOB_INDEX, description="Only this sub-job of a job, from 0."),
        ]
        | None
    ) = None
    error_code: Annotated[str, Meta(min_length=1, max_length=16)] = GENERIC_ERROR_CODE
    error_message: Annotated[str, Meta(min_length=1, max_length=255)] = GENERIC_ERROR_MESSAGE
    transient: Annotated[
        bool, Meta(description="Retried with backoff until the attempts run out.")
    ] = False
    slow_seconds: Seconds = 0.0


class RuleBody(Struct, kw_only=True, forbid_unknown_fields=True):
    """The parts of the behaviour this rule sets; fields left out are inherited."""

    queue_seconds: (
        Annotated[Seconds, Meta(description="Time a new sub-job stays WAITING.")] | None
    ) = None
    completion: CompletionName | None = None
    duration_seconds: (
        Annotated[Seconds, Meta(description="With completion duration: time RUNNING.")] | None
    ) = None
    reads: (
        Annotated[
            int,
            Meta(ge=1, le=MAX_READS, description="With completion reads: reads of the job."),
        ]
        | None
    ) = None
    faults: Annotated[list[FaultBody], Meta(max_length=MAX_FAULTS)] | None = None


class BehaviourInfo(Struct, kw_only=True):
    queue_seconds: float
    completion: CompletionName
    duration_seconds: float
    reads: int
    faults: list[FaultBody]


class RuleInfo(RuleBody, kw_only=True):
    project_id: Annotated[str, Meta(description="A project ID, or * for every project.")]
    job_type: Annotated[str, Meta(description="A job type, or * for every type.")]
    updated_at: DateTime


class RulesResponse(Struct, kw_only=True):
    defaults: Annotated[BehaviourInfo, Meta(description="From IMAGEJOBS_SIMULATED_*.")]
    rules: list[RuleInfo]


class DeletedResponse(Struct):
    deleted: int


class EngineStatus(Struct, kw_only=True):
    driver: str
    due: Annotated[int, Meta(description="Sub-jobs claimable now.")]
    scheduled: Annotated[int, Meta(description="Claimable later (queue, backoff, reads).")]
    leased: Annotated[int, Meta(description="Held by a runner.")]
    expired: Annotated[int, Meta(description="Held by a runner whose lease ran out.")]


class TaskInfo(Struct, kw_only=True):
    sub_job_id: str
    job_id: str
    project_id: str
    job_type: str
    phase: Literal["run", "rollback"]
    due_at: DateTime
    lease_owner: str | None
    fencing_token: int
    attempts: int
    started_at: DateTime | None
    reads: int
    wait_reads: int
    error_code: str
    error_message: str
    progress: str


class TasksResponse(Struct):
    tasks: list[TaskInfo]


# --- wire <-> records -----------------------------------------------------------------------


def fault_record(body: FaultBody) -> Fault:
    return Fault(
        effect=Effect(body.effect),
        probability=body.probability,
        sub_job_index=body.sub_job_index,
        error_code=body.error_code,
        error_message=body.error_message,
        transient=body.transient,
        slow_seconds=body.slow_seconds,
    )


def rule_record(project_id: str, job_type: str, body: RuleBody) -> Rule:
    return Rule(
        project_id=project_id,
        job_type=job_type,
        queue_seconds=body.queue_seconds,
        completion=None if body.completion is None else Completion(body.completion),
        duration_seconds=body.duration_seconds,
        reads=body.reads,
        faults=None if body.faults is None else tuple(fault_record(f) for f in body.faults),
    )


def fault_body(fault: Fault) -> FaultBody:
    return FaultBody(
        effect=fault.effect.value,
        probability=fault.probability,
        sub_job_index=fault.sub_job_index,
        error_code=fault.error_code,
        error_message=fault.error_message,
        transient=fault.transient,
        slow_seconds=fault.slow_seconds,
    )


def rule_info(rule: Rule) -> RuleInfo:
    return RuleInfo(
        project_id=rule.project_id,
        job_type=rule.job_type,
        queue_seconds=rule.queue_seconds,
        completion=None if rule.completion is None else rule.completion.value,
        duration_seconds=rule.duration_seconds,
        reads=rule.reads,
        faults=None if rule.faults is None else [fault_body(f) for f in rule.faults],
        updated_at=format_time(rule.updated_at),
    )


def rules_response(
    defaults: Behaviour, rules: Sequence[Rule], shown: Callable[[str], str | None]
) -> RulesResponse:
    """The rules with their projects as ``shown`` names them (services/project_keys.py:
    a project id for a storage key); those it names None are left out."""
    listed = []
    for rule in rules:
        project_id = shown(rule.project_id)
        if project_id is not None:
            listed.append(msgspec.structs.replace(rule_info(rule), project_id=project_id))
    return RulesResponse(defaults=behaviour_info(defaults), rules=listed)


def behaviour_info(behaviour: Behaviour) -> BehaviourInfo:
    return BehaviourInfo(
        queue_seconds=behaviour.queue_seconds,
        completion=behaviour.completion.value,
        duration_seconds=behaviour.duration_seconds,
        reads=behaviour.reads,
        faults=[fault_body(f) for f in behaviour.faults],
    )


def engine_status(driver: str, summary: TaskSummary) -> EngineStatus:
    return EngineStatus(
        driver=driver,
        due=summary.due,
        scheduled=summary.scheduled,
        leased=summary.leased,
        expired=summary.expired,
    )


def tasks_response(views: Sequence[TaskView], shown: Callable[[str], str | None]) -> TasksResponse:
    """The tasks with their projects as ``shown`` names them (services/project_keys.py:
    a project id for a storage key); those it names None are left out."""
    listed = []
    for view in views:
        project_id = shown(view.project_id)
        if project_id is not None:
            listed.append(msgspec.structs.replace(task_info(view), project_id=project_id))
    return TasksResponse(listed)


def task_info(task: TaskView) -> TaskInfo:
    return TaskInfo(
        sub_job_id=str(task.sub_job_id),
        job_id=str(task.job_id),
        project_id=task.project_id,
        job_type=task.job_type.value,
        phase=task.phase.value,
        due_at=format_time(task.due_at),
        lease_owner=task.lease_owner,
        fencing_token=task.fencing_token,
        attempts=task.attempts,
        started_at=format_optional_time(task.started_at),
        reads=task.reads,
        wait_reads=task.wait_reads,
        error_code=task.error_code,
        error_message=task.error_message,
        progress=task.progress,
    )


# --- the test kit: reset, tenants, health (imagejobs.testing) --------------------------------

# Not "*", which answers for every project (ResetResponse) and matches any in a rule, nor
# what a storage key holds ("~").
ProjectId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        description="A project ID: not *, and without ~, / or control characters.",
        # Documented only: the test kit checks it (check_project_id), naming what is wrong.
        extra_json_schema={"pattern": ONE_PROJECT_ID_PATTERN},
    ),
]


class ResetBody(Struct, kw_only=True, forbid_unknown_fields=True):
    """Which project to reset; none: every project."""

    project_id: ProjectId | None = None


class ResetResponse(Struct, kw_only=True):
    reset: Annotated[str, Meta(description="A project ID, or * for every project.")]


_ACCOUNT_PATTERN = pattern_rule(
    "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    "1 to 64 letters, digits, _, . or -, the first a letter or digit",
)
_REGION_PATTERN = pattern_rule(
    "^[a-z0-9][a-z0-9_-]{0,63}$",
    "1 to 64 lowercase letters, digits, _ or -, the first a letter or digit",
)
_PROJECT_ID_PATTERN = pattern_rule("^[0-9a-f]{32}$", "32 lowercase hexadecimal digits")


class TenantBody(Struct, kw_only=True, forbid_unknown_fields=True):
    """The new tenant; every field left out is generated."""

    # The patterns the identity service enforces (services/accounts.py), stated here so that
    # the document tells clients what is accepted.
    account: Annotated[str, Meta(pattern=_ACCOUNT_PATTERN)] | None = None
    region: (
        Annotated[str, Meta(pattern=_REGION_PATTERN, description="The project's name.")] | None
    ) = None
    project_id: Annotated[str, Meta(pattern=_PROJECT_ID_PATTERN)] | None = None
    password: Annotated[str, Meta(min_length=8, max_length=128)] | None = None


class TenantInfo(Struct, kw_only=True):
    """Credentials of a new account's root user (shown once)."""

    account: str
    user: str
    password: str
    domain_id: str
    project_id: str
    region: str
    access_key: str
    secret_key: str


class HealthResponse(Struct, kw_only=True):
    status: Literal["ok"] = "ok"
    version: str


# --- a project's state (GET/POST /_imagejobs/state): times are epoch milliseconds, UTC ------

# Exactly 18 digits, as the service mints them: the API looks up no other id (parse_id),
# so a shorter one would load, list, and then be "not found" by ShowImageJob.
Id = Annotated[
    str,
    Meta(pattern=pattern_rule("^[1-9][0-9]{17}$", "18 digits"), description="An 18-digit id."),
]
# Up to 9999-12-31T23:59:59.999Z: a later time fits no answer's date format (nor, past
# 2**63, any database column).
MAX_EPOCH_MS = 253_402_300_799_999
EpochMs = Annotated[int, Meta(ge=0, le=MAX_EPOCH_MS, description="Epoch milliseconds, UTC.")]
StateJobType = Literal["CREATE_SERVER", "DELETE_SERVER", "CREATE_SERVER_IMAGE"]


class StateSubJob(Struct, kw_only=True, forbid_unknown_fields=True):
    id: Id
    status: Literal["WAITING", "RUNNING", "SUCCESS", "FAILED"]
    begin_time: EpochMs
    end_time: EpochMs | None = None
    resource_id: Annotated[str, Meta(max_length=128)] = ""
    resource_name: Annotated[str, Meta(max_length=255)] = ""
    error_code: Annotated[str, Meta(max_length=64)] = ""
    error_message: Annotated[str, Meta(max_length=1024)] = ""
    payload: (
        Annotated[
            dict[str, Any],
            Meta(description="An unfinished sub-job's driver input (as exported)."),
        ]
        | None
    ) = None


class StateJob(Struct, kw_only=True, forbid_unknown_fields=True):
    id: Id
    job_type: StateJobType
    status: Literal["WAITING", "RUNNING", "SUCCESS", "FAILED"]
    begin_time: EpochMs
    end_time: EpochMs | None = None
    sub_jobs: Annotated[list[StateSubJob], Meta(max_length=MAX_SUB_JOB_INDEX + 1)] = []


class StateImageRef(Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    image_type: str
    product_id: str = ""
    spce_code: str = ""


class StateAccount(Struct, kw_only=True, forbid_unknown_fields=True):
    account: str
    account_type: str
    domain: str = ""


class StateServer(Struct, kw_only=True, forbid_unknown_fields=True):
    id: Id
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    status: Literal["CREATING", "ACTIVE", "BUILDING", "BUILT", "ERROR", "DELETING"]
    image_ref: StateImageRef
    create_time: EpochMs
    update_time: EpochMs
    description: Annotated[str, Meta(max_length=255)] = ""
    authorize_accounts: list[StateAccount] = []
    server_group_id: str = ""
    app_group_id: str = ""
    server_id: Annotated[str, Meta(description="The APS instance id.")] = ""
    instance_id: str = ""
    image_id: str = ""
    enterprise_project_id: str = "0"
    spec: dict[str, Any] = {}


class StateDocument(Struct, kw_only=True, forbid_unknown_fields=True):
    """A project's image servers, jobs and sub-jobs: a fixture file."""

    project_id: ProjectId
    servers: Annotated[list[StateServer], Meta(max_length=100_000)] = []
    jobs: Annotated[list[StateJob], Meta(max_length=1_000_000)] = []


class StateLoaded(Struct, kw_only=True):
    project_id: str
    servers: int
    jobs: int
    sub_jobs: int
    tasks: Annotated[int, Meta(description="Unfinished sub-jobs handed to the engine.")]


def state_document(state: ProjectState) -> StateDocument:
    servers = [
        StateServer(
            id=str(s.id),
            name=s.name,
            status=s.status.value,  # type: ignore[arg-type]
            image_ref=StateImageRef(**asdict(s.image_ref)),
            create_time=s.create_time,
            update_time=s.update_time,
            description=s.description,
            authorize_accounts=[StateAccount(**asdict(a)) for a in s.authorize_accounts],
            server_group_id=s.server_group_id,
            app_group_id=s.app_group_id,
            server_id=s.server_id,
            instance_id=s.instance_id,
            image_id=s.image_id,
            enterprise_project_id=s.enterprise_project_id,
            spec=dict(s.spec),
        )
        for s in state.servers
    ]
    jobs = [
        StateJob(
            id=str(d.job.id),
            job_type=d.job.job_type.value,  # type: ignore[arg-type]
            status=d.job.status.value,
            begin_time=d.job.begin_time,
            end_time=d.job.end_time,
            sub_jobs=[
                StateSubJob(
                    id=str(sub.id),
                    status=sub.status.value,  # type: ignore[arg-type]
                    begin_time=sub.begin_time,
                    end_time=sub.end_time,
                    resource_id=sub.resource_id,
                    resource_name=sub.resource_name,
                    error_code=sub.error_code,
                    error_message=sub.error_message,
                    payload=dict(state.payloads[sub.id]) if sub.id in state.payloads else None,
                )
                for sub in d.sub_jobs
            ],
        )
        for d in state.jobs
    ]
    return StateDocument(project_id=state.project_id, servers=servers, jobs=jobs)


def project_state(document: StateDocument) -> ProjectState:
    project_id = document.project_id
    servers = [
        ImageServer(
            id=int(s.id),
            project_id=project_id,
            name=s.name,
            description=s.description,
            status=ImageServerStatus(s.status),
            image_ref=ImageRef(**msgspec.structs.asdict(s.image_ref)),
            authorize_accounts=tuple(
                AccountInfo(**msgspec.structs.asdict(a)) for a in s.authorize_accounts
            ),
            create_time=s.create_time,
            update_time=s.update_time,
            server_group_id=s.server_group_id,
            app_group_id=s.app_group_id,
            server_id=s.server_id,
            instance_id=s.instance_id,
            image_id=s.image_id,
            enterprise_project_id=s.enterprise_project_id,
            spec=s.spec,
        )
        for s in document.servers
    ]
    jobs: list[JobDetail] = []
    payloads: dict[int, dict[str, Any]] = {}
    for j in document.jobs:
        job_id, job_type = int(j.id), JobType(j.job_type)
        ended = j.status in ("SUCCESS", "FAILED")
        job = Job(
            job_id,
            project_id,
            job_type,
            JobStatus(j.status),
            j.begin_time,
            (j.end_time or j.begin_time) if ended else None,
            len(j.sub_jobs),
        )
        sub_jobs = []
        for sub in j.sub_jobs:
            sub_ended = sub.status in ("SUCCESS", "FAILED")
            sub_jobs.append(
                SubJob(
                    int(sub.id),
                    job_id,
                    project_id,
                    job_type,
                    SubJobStatus(sub.status),
                    sub.begin_time,
                    (sub.end_time or sub.begin_time) if sub_ended else None,
                    sub.resource_id,
                    sub.resource_name,
                    sub.error_code,
                    sub.error_message,
                )
            )
            if sub.payload is not None:
                payloads[int(sub.id)] = sub.payload
        jobs.append(JobDetail(job, sub_jobs))
    return ProjectState(project_id, servers, jobs, payloads)


class RuleFileEntry(RuleBody, kw_only=True, forbid_unknown_fields=True):
    """One rule of a ``*.rules.json`` file in IMAGEJOBS_INIT_DIR."""

    project_id: Annotated[str, Meta(min_length=1, max_length=128)] = "*"
    job_type: str = "*"
