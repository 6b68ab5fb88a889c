"""Steering: how the ``simulated`` driver behaves, per project and job type.

A *behaviour* says how long a new sub-job waits in WAITING (``queue_seconds``), how it
completes (at once, after ``duration_seconds`` of RUNNING, or on the N-th read of its
job) and which *faults* hit it (fail with a code and message, or slow down; with a
probability; at one sub-job index or all).

Rules set parts of a behaviour for a scope: a project or ``*``, a job type or ``*``.
The effective behaviour starts from the process defaults (settings) and applies the
matching rules from least to most specific, each field a rule sets replacing the
inherited one: ``(*, *)``, ``(*, TYPE)``, ``(PROJECT, *)``, ``(PROJECT, TYPE)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TypeVar

from imagejobs.domain.enums import QUERYABLE_JOB_TYPES
from imagejobs.domain.errors import InvalidParameter
from imagejobs.domain.lifecycle import GENERIC_ERROR_CODE, GENERIC_ERROR_MESSAGE

T = TypeVar("T")
ANY = "*"
MAX_SECONDS = 86_400.0
MAX_READS = 10_000
MAX_FAULTS = 20
MAX_SUB_JOB_INDEX = 19  # a job has at most 20 sub-jobs (BatchDeleteImageServer)
STEERABLE_JOB_TYPES = tuple(t.value for t in QUERYABLE_JOB_TYPES)


class Completion(StrEnum):
    IMMEDIATE = "immediate"  # the step succeeds at once
    DURATION = "duration"  # after duration_seconds of RUNNING
    READS = "reads"  # once the job has been read `reads` times


class Effect(StrEnum):
    FAIL = "fail"
    SLOW = "slow"


def _check_seconds(name: str, value: float | None) -> None:
    if value is not None and not 0 <= value <= MAX_SECONDS:
        raise InvalidParameter(name, f"must be from 0 to {MAX_SECONDS:g} seconds")


@dataclass(frozen=True, slots=True)
class Fault:
    effect: Effect = Effect.FAIL
    probability: float = 1.0
    sub_job_index: int | None = None  # only this sub-job of a job (from 0); None: all
    error_code: str = GENERIC_ERROR_CODE
    error_message: str = GENERIC_ERROR_MESSAGE
    transient: bool = False  # retried with backoff until the attempts run out
    slow_seconds: float = 0.0  # with effect "slow": added to the step

    def __post_init__(self) -> None:
        if not 0 <= self.probability <= 1:
            raise InvalidParameter("probability", "must be from 0 to 1")
        if self.sub_job_index is not None and not 0 <= self.sub_job_index <= MAX_SUB_JOB_INDEX:
            raise InvalidParameter("sub_job_index", f"must be from 0 to {MAX_SUB_JOB_INDEX}")
        if not 1 <= len(self.error_code) <= 16:
            raise InvalidParameter("error_code", "must be 1 to 16 characters long")
        if not 1 <= len(self.error_message) <= 255:
            raise InvalidParameter("error_message", "must be 1 to 255 characters long")
        _check_seconds("slow_seconds", self.slow_seconds)

    def hits(self, position: int) -> bool:
        return self.sub_job_index is None or self.sub_job_index == position


@dataclass(frozen=True, slots=True)
class Behaviour:
    queue_seconds: float = 2.0
    completion: Completion = Completion.DURATION
    duration_seconds: float = 3.0
    reads: int = 3
    faults: tuple[Fault, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """The parts of a behaviour set for one scope; None inherits."""

    project_id: str = ANY
    job_type: str = ANY
    queue_seconds: float | None = None
    completion: Completion | None = None
    duration_seconds: float | None = None
    reads: int | None = None
    faults: tuple[Fault, ...] | None = None
    updated_at: int = 0

    def __post_init__(self) -> None:
        check_scope(self.project_id, self.job_type)
        _check_seconds("queue_seconds", self.queue_seconds)
        _check_seconds("duration_seconds", self.duration_seconds)
        if self.reads is not None and not 1 <= self.reads <= MAX_READS:
            raise InvalidParameter("reads", f"must be from 1 to {MAX_READS}")
        if self.faults is not None and len(self.faults) > MAX_FAULTS:
            raise InvalidParameter("faults", f"must have at most {MAX_FAULTS} items")

    @property
    def specificity(self) -> int:
        return (self.project_id != ANY) * 2 + (self.job_type != ANY)

    def matches(self, project_id: str, job_type: str) -> bool:
        return self.project_id in (ANY, project_id) and self.job_type in (ANY, job_type)


def check_scope(project_id: str, job_type: str) -> None:
    if not 1 <= len(project_id) <= 128:
        raise InvalidParameter("project_id", "must be 1 to 128 characters long, or *")
    if job_type != ANY and job_type not in STEERABLE_JOB_TYPES:
        raise InvalidParameter("job_type", f"must be * or one of {', '.join(STEERABLE_JOB_TYPES)}")


def resolve(
    defaults: Behaviour, rules: Iterable[Rule], project_id: str, job_type: str
) -> Behaviour:
    """The behaviour in effect for ``job_type`` sub-jobs of ``project_id``."""
    behaviour = defaults
    matching = sorted((r for r in rules if r.matches(project_id, job_type)), key=_specificity)
    for rule in matching:
        behaviour = replace(
            behaviour,
            queue_seconds=_pick(rule.queue_seconds, behaviour.queue_seconds),
            completion=_pick(rule.completion, behaviour.completion),
            duration_seconds=_pick(rule.duration_seconds, behaviour.duration_seconds),
            reads=_pick(rule.reads, behaviour.reads),
            faults=_pick(rule.faults, behaviour.faults),
        )
    return behaviour


def _specificity(rule: Rule) -> int:
    return rule.specificity


def _pick(value: T | None, inherited: T) -> T:
    return inherited if value is None else value


def uses_reads(defaults: Behaviour, rules: Iterable[Rule], *also: Completion) -> bool:
    """Whether any sub-job may wait for reads (else reads need not be counted), or
    complete in one of the ``also`` ways."""
    wanted = (Completion.READS, *also)
    return defaults.completion in wanted or any(r.completion in wanted for r in rules)
