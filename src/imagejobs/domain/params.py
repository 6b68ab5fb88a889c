"""Request-parameter rules, each defined once: the API validates with them and the
OpenAPI document is rendered from them, so the two cannot disagree.

Limits and patterns come from spec §1.5 and §4 (``shared/spec/workspaceapp-image-api.md``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from imagejobs.domain.enums import QUERYABLE_JOB_TYPES, JobStatus, JobType, SubJobStatus
from imagejobs.domain.errors import InvalidParameter

Location = Literal["query", "path"]
# Plain decimal digits, at most 20 (ids have 18): enough for every maximum, and int() never
# sees a caller's megabyte of digits; the range check decides the rest.
_DIGITS = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class IntegerParam:
    name: str
    minimum: int
    maximum: int
    default: int
    description: str
    location: Location = "query"
    required: bool = False

    def parse(self, raw: str | None) -> int:
        if raw is None:
            return self.default
        # Only plain decimal digits: "1.5", "+5", " 5", "1e2" and "-1" are all refused.
        if _DIGITS.fullmatch(raw) is None or not (self.minimum <= int(raw) <= self.maximum):
            raise InvalidParameter(
                self.name, f"must be an integer from {self.minimum} to {self.maximum}"
            )
        return int(raw)


@dataclass(frozen=True, slots=True)
class EnumParam:
    name: str
    values: tuple[str, ...]
    description: str
    required: bool = False
    location: Location = "query"

    def parse(self, raw: str | None) -> str | None:
        if raw is None or raw == "":
            # The documented pattern ends in "?", so "" means "not given".
            if self.required:
                raise InvalidParameter(self.name, "is required")
            return None
        if raw not in self.values:
            raise InvalidParameter(self.name, f"must be one of {', '.join(self.values)}")
        return raw


@dataclass(frozen=True, slots=True)
class EnumListParam:
    """A comma-separated list of enum values (CountImageSubJobs ``job_type``)."""

    name: str
    values: tuple[str, ...]
    max_length: int
    description: str
    location: Location = "query"
    required: bool = False

    def parse(self, raw: str | None) -> tuple[str, ...]:
        if raw is None or raw == "":
            return ()
        if len(raw) > self.max_length:
            raise InvalidParameter(self.name, f"must be at most {self.max_length} characters")
        chosen: list[str] = []
        for part in raw.split(","):
            value = part.strip()
            if value not in self.values:
                raise InvalidParameter(
                    self.name, f"must be a comma-separated list of {', '.join(self.values)}"
                )
            if value not in chosen:
                chosen.append(value)
        return tuple(chosen)


@dataclass(frozen=True, slots=True)
class StringParam:
    name: str
    min_length: int
    max_length: int
    description: str
    location: Location = "query"
    required: bool = False

    def parse(self, raw: str | None) -> str | None:
        if raw is None:
            if self.required:
                raise InvalidParameter(self.name, "is required")
            return None
        if not (self.min_length <= len(raw) <= self.max_length):
            raise InvalidParameter(
                self.name,
                f"must be {self.min_length} to {self.max_length} characters long",
            )
        return raw


Param = IntegerParam | EnumParam | EnumListParam | StringParam

# What no project id holds: "~" starts every storage key a reset makes (storage/
# project_keys.py: "~" and 32 hex digits), so a project named with it could be another
# project's rows; "/" cannot be in the path segment that names a project (an encoded %2F
# is a "/" again once the path is decoded and signed); and control characters are no id
# (PostgreSQL's text cannot even hold NUL). The spec says only "1 to 128 characters".
_NOT_IN_PROJECT_IDS = re.compile(r"[~/\x00-\x1f\x7f-\x9f]")
# The same rule as the OpenAPI documents state it (JSON Schema patterns): a rule's scope
# may be "*" (every project); what names one project (a reset, a state) may not.
PROJECT_ID_PATTERN = "^[^~/\\u0000-\\u001f\\u007f-\\u009f]+$"
ONE_PROJECT_ID_PATTERN = "^(?!\\*$)[^~/\\u0000-\\u001f\\u007f-\\u009f]+$"


def check_project_id(project_id: str, name: str = "project_id") -> str:
    """``project_id`` if it can be a project's id (1 to 128 characters, none of "~", "/"
    or a control character, and not "*", which means every project), else InvalidParameter
    naming ``name``: for what stores rows under a project id it was given (a reset, an
    imported state, a steering rule), where a storage key must never be taken for one."""
    if not 1 <= len(project_id) <= 128:
        raise InvalidParameter(name, "must be 1 to 128 characters long")
    if project_id == "*":
        raise InvalidParameter(name, "must name one project, not * (every project)")
    found = _NOT_IN_PROJECT_IDS.search(project_id)
    if found is not None:
        shown = found.group() if found.group() in "~/" else f"U+{ord(found.group()):04X}"
        raise InvalidParameter(
            name, f"must not contain {shown} (a project id has no ~, / or control characters)"
        )
    return project_id


PROJECT_ID = StringParam(
    "project_id", 1, 128, "Unique ID of a project.", location="path", required=True
)
JOB_ID_PATH = StringParam("job_id", 1, 128, "Job ID.", location="path", required=True)
OFFSET = IntegerParam("offset", 0, 2_147_483_647, 0, "Query offset. The default value is 0.")
LIMIT = IntegerParam(
    "limit", 1, 100, 10, "Number of records to be queried, 1 to 100. The default value is 10."
)
_QUERYABLE = tuple(t.value for t in QUERYABLE_JOB_TYPES)
JOB_TYPE = EnumParam("job_type", _QUERYABLE, "Task type.", required=True)
JOB_STATUS = EnumParam("status", tuple(s.value for s in JobStatus), "Job status.")
SUB_JOB_STATUS = EnumParam("status", tuple(s.value for s in SubJobStatus), "Sub-job status.")
SUB_JOB_JOB_ID = StringParam("job_id", 0, 128, "Parent job ID.")
JOB_TYPE_LIST = EnumListParam(
    "job_type",
    tuple(t.value for t in JobType),
    128,
    "Comma-separated task types; when absent, CREATE_SERVER, CREATE_SERVER_IMAGE and "
    "DELETE_SERVER sub-jobs are counted.",
)
