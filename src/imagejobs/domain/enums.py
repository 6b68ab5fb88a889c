"""The service's enumerations, spelled exactly as on the wire (spec §2)."""

from __future__ import annotations

from enum import StrEnum


class JobType(StrEnum):
    CREATE_SERVER = "CREATE_SERVER"
    CREATE_SERVER_IMAGE = "CREATE_SERVER_IMAGE"
    DELETE_SERVER = "DELETE_SERVER"
    # Listed in the response enums only; no public API produces them (spec §2.6).
    BUILD_IMAGE = "BUILD_IMAGE"
    GENERATE_IMAGE = "GENERATE_IMAGE"
    DELETE_IMAGE_BUILD_SERVER = "DELETE_IMAGE_BUILD_SERVER"
    DELETE_IMAGE = "DELETE_IMAGE"


# The query-parameter pattern of the list APIs accepts only these (spec §4.1).
QUERYABLE_JOB_TYPES: tuple[JobType, ...] = (
    JobType.CREATE_SERVER,
    JobType.CREATE_SERVER_IMAGE,
    JobType.DELETE_SERVER,
)


class JobStatus(StrEnum):
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


class SubJobStatus(StrEnum):
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    ABNORMAL = "ABNORMAL"
    ROLLBACK = "ROLLBACK"
    ABORTING = "ABORTING"


# Only finished sub-jobs may be deleted by BatchDeleteImageSubJobs (spec §4.5).
DELETABLE_SUB_JOB_STATUSES: frozenset[SubJobStatus] = frozenset(
    {SubJobStatus.SUCCESS, SubJobStatus.FAILED}
)
FINISHED_JOB_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.SUCCESS, JobStatus.FAILED})


class ImageServerStatus(StrEnum):
    CREATING = "CREATING"
    ACTIVE = "ACTIVE"
    BUILDING = "BUILDING"
    BUILT = "BUILT"
    ERROR = "ERROR"
    DELETING = "DELETING"
    # "Not set": the lower-case string the SDK knows as ImageServerStatus.NULL (spec §2.4).
    NULL = "null"
