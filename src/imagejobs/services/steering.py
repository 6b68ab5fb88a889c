"""Steering of the simulated driver: rules (shared through the database), the process
defaults (settings), the effective behaviour, and the reads that steer completion."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Protocol

from imagejobs.domain.enums import JobStatus, JobType
from imagejobs.domain.errors import NotFound
from imagejobs.domain.records import (
    Job,
    JobDetail,
    ListedJob,
    Page,
    PageRequest,
    job_of_row,
    job_row,
)
from imagejobs.domain.steering import (
    Behaviour,
    Completion,
    Effect,
    Fault,
    Rule,
    check_scope,
    resolve,
    uses_reads,
)
from imagejobs.domain.times import now_ms
from imagejobs.ports import JobStore
from imagejobs.services.jobs import FIRST_PAGE, JobService
from imagejobs.settings import Settings

# How long a process trusts its "does any rule complete on reads?" answer (other
# processes' rule changes are seen within this; this process's own at once).
READS_FLAG_SECONDS = 1.0
# How long the read that completes a job may wait for the engine to end it.
SETTLE_SECONDS = 10.0
# Reads of one project that may wait so at once, per process; more are answered as the
# job stands. A waiting read holds one of the process's places in flight (64 by default):
# unbounded, one tenant steering its jobs to end on reads but queue for a day held every
# place with 64 reads of one job, and every other tenant got 503 for 10 s at a time.
SETTLING_PER_PROJECT = 2
_UNFINISHED = (JobStatus.WAITING, JobStatus.RUNNING)
_UNFINISHED_VALUES = frozenset(status.value for status in _UNFINISHED)


class SteeringStore(Protocol):
    async def all_rules(self) -> list[Rule]: ...

    async def rules_for(self, project_ids: Sequence[str]) -> list[Rule]: ...

    async def get(self, project_id: str, job_type: str) -> Rule | None: ...

    async def put(self, rule: Rule) -> None: ...

    async def delete(self, project_id: str, job_type: str) -> int: ...

    async def delete_all(self) -> int: ...


class ReadCounter(Protocol):
    async def count_reads(
        self, project_id: str, job_ids: Sequence[int], now: int
    ) -> dict[int, int]: ...


class RuleNotFound(NotFound):
    """No steering rule is set for this scope."""


def defaults_from(settings: Settings) -> Behaviour:
    """The process's default behaviour, from ``IMAGEJOBS_SIMULATED_*``."""
    faults: tuple[Fault, ...] = ()
    if settings.simulated_failure_probability > 0:
        fault = Fault(
            probability=settings.simulated_failure_probability,
            error_code=settings.simulated_error_code,
            error_message=settings.simulated_error_message,
        )
        faults = (fault,)
    return Behaviour(
        queue_seconds=settings.simulated_queue_seconds,
        completion=Completion(settings.simulated_completion),
        duration_seconds=settings.simulated_duration_seconds,
        reads=settings.simulated_reads,
        faults=faults,
    )


class SteeringService:
    def __init__(
        self,
        store: SteeringStore,
        defaults: Behaviour,
        clock: Callable[[], int] = now_ms,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.defaults = defaults
        self._clock = clock
        self._monotonic = monotonic
        self._reads_flag: tuple[float, bool, bool] | None = None

    async def rules(self) -> list[Rule]:
        return await self._store.all_rules()

    async def rule(self, project_id: str, job_type: str) -> Rule:
        check_scope(project_id, job_type)
        rule = await self._store.get(project_id, job_type)
        if rule is None:
            raise RuleNotFound(f"No steering rule is set for {project_id}/{job_type}.")
        return rule

    async def put_rule(self, rule: Rule) -> Rule:
        stored = replace(rule, updated_at=self._clock())
        await self._store.put(stored)
        self._reads_flag = None
        return stored

    async def delete_rule(self, project_id: str, job_type: str) -> int:
        check_scope(project_id, job_type)
        self._reads_flag = None
        return await self._store.delete(project_id, job_type)

    async def clear(self) -> int:
        self._reads_flag = None
        return await self._store.delete_all()

    async def forget_cached_rules(self) -> None:
        """Rules changed behind this service's back (a reset): look again."""
        self._reads_flag = None

    async def behaviour(self, project_id: str, job_type: JobType) -> Behaviour:
        rules = await self._store.rules_for([project_id])
        return resolve(self.defaults, rules, project_id, job_type.value)

    async def behaviours(
        self, scopes: Iterable[tuple[str, JobType]]
    ) -> dict[tuple[str, JobType], Behaviour]:
        """The behaviour of each (project, job type), from one read of the rules."""
        wanted = set(scopes)
        rules = await self._store.rules_for([p for p, _ in wanted])
        return {(p, t): resolve(self.defaults, rules, p, t.value) for p, t in wanted}

    async def counts_reads(self) -> bool:
        """Whether reads of jobs must be counted (some behaviour completes on reads)."""
        return (await self._read_flags())[0]

    async def may_end_on_read(self) -> bool:
        """Whether some behaviour completes on reads or at once: then a read may have to
        wait for a job to end (SteeredJobService)."""
        return (await self._read_flags())[1]

    async def _read_flags(self) -> tuple[bool, bool]:
        now = self._monotonic()
        if self._reads_flag is None or now - self._reads_flag[0] > READS_FLAG_SECONDS:
            rules = await self._store.all_rules()
            self._reads_flag = (
                now,
                uses_reads(self.defaults, rules),
                uses_reads(self.defaults, rules, Completion.IMMEDIATE),
            )
        return self._reads_flag[1:]


class SteeredJobService(JobService):
    """The job APIs, counting reads of unfinished jobs when a behaviour completes on
    reads. A read is a ShowImageJob of the job, or a ListImageJobs whose page holds it,
    answered while the job is WAITING or RUNNING. The read that brings a job to its
    behaviour's ``reads`` waits until the engine has ended the job (at most
    SETTLE_SECONDS), so it is the first read to see it SUCCESS or FAILED, whatever the
    polling rate; with completion ``immediate`` and no queue delay, the first read does.
    Only in a process that embeds a runner (``serve`` without ``--no-runner``)."""

    def __init__(
        self,
        store: JobStore,
        steering: SteeringService,
        reads: ReadCounter,
        clock: Callable[[], int] = now_ms,
        *,
        settle: bool = False,
    ) -> None:
        super().__init__(store)
        self._steering = steering
        self._reads = reads
        self._clock = clock
        # Wait for the engine only where a runner of this process is sure to act.
        self._settle_reads = settle
        self._settling: dict[str, int] = {}  # project -> its reads waiting now

    async def list_jobs(
        self,
        project_id: str,
        job_type: JobType,
        status: JobStatus | None = None,
        page: PageRequest = FIRST_PAGE,
    ) -> Page[Job]:
        result = await super().list_jobs(project_id, job_type, status, page)
        unfinished = [j for j in result.items if j.status in _UNFINISHED]
        if await self._count(unfinished, project_id):
            result = await super().list_jobs(project_id, job_type, status, page)
        return result

    async def list_job_rows(
        self, project_id: str, job_type: str, status: str | None, offset: int, limit: int
    ) -> Page[ListedJob]:
        # The store's own method, as JobService's only passes the call on (the hot path).
        result = await self._store.list_job_rows(project_id, job_type, status, offset, limit)
        if result.all_finished:
            return result
        unfinished = [
            job_of_row(project_id, row)
            # A row's text (JobRowText) is parsed only here: a page with an unfinished job.
            for row in map(job_row, result.items)
            if row[2] in _UNFINISHED_VALUES
        ]
        if unfinished and await self._count(unfinished, project_id):
            result = await self._store.list_job_rows(project_id, job_type, status, offset, limit)
        return result

    async def show_job(self, project_id: str, job_id: str) -> JobDetail:
        detail = await super().show_job(project_id, job_id)
        if detail.job.status in _UNFINISHED and await self._count([detail.job], project_id):
            detail = await super().show_job(project_id, job_id)
        return detail

    async def _count(self, jobs: Sequence[Job], project_id: str) -> bool:
        """Count a read of each job; True when one of them is due to end on this read
        and has ended since (then the caller reads again)."""
        if not jobs:
            return False
        may_wait = self._settle_reads and await self._steering.may_end_on_read()
        if not (may_wait or await self._steering.counts_reads()):
            return False
        # Reads so far of each job that has engine tasks (others, such as seeded jobs,
        # never end: no read waits for them).
        reads = await self._reads.count_reads(project_id, [j.id for j in jobs], self._clock())
        if not may_wait:
            return False
        behaviours = await self._steering.behaviours((project_id, j.job_type) for j in jobs)
        due = [
            j.id
            for j in jobs
            if j.id in reads and _ends_on_read(behaviours[(project_id, j.job_type)], reads, j.id)
        ]
        return bool(due) and await self._settle(project_id, due)

    async def _settle(self, project_id: str, job_ids: Sequence[int]) -> bool:
        """Wait until the engine has ended these jobs (it was woken by the read); at most
        SETTLING_PER_PROJECT reads of a project wait at once."""
        settling = self._settling.get(project_id, 0)
        if settling >= SETTLING_PER_PROJECT:
            return False
        self._settling[project_id] = settling + 1
        try:
            return await self._wait_ended(project_id, job_ids)
        finally:
            left = self._settling[project_id] - 1
            if left:
                self._settling[project_id] = left
            else:
                del self._settling[project_id]

    async def _wait_ended(self, project_id: str, job_ids: Sequence[int]) -> bool:
        deadline = time.monotonic() + SETTLE_SECONDS
        pause = 0.001
        waiting = list(job_ids)
        while waiting:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
            ended = await self._ended(project_id, waiting)
            waiting = [job_id for job_id in waiting if job_id not in ended]
        return True

    async def _ended(self, project_id: str, job_ids: Sequence[int]) -> set[int]:
        ended = set()
        for job_id in job_ids:
            detail = await self._store.get_job(project_id, job_id)
            if detail is None or detail.job.status not in _UNFINISHED:
                ended.add(job_id)
        return ended


def _ends_on_read(behaviour: Behaviour, reads: dict[int, int], job_id: int) -> bool:
    """Whether this read must see the job ended: it completes on this read, or at once
    with no queue delay. Not with slow or transient faults: those take the time they say
    (retries with backoff), and reads meanwhile see the job RUNNING."""
    if any(f.effect is Effect.SLOW or f.transient for f in behaviour.faults):
        return False
    if behaviour.completion is Completion.READS:
        return reads.get(job_id, 0) >= behaviour.reads
    return behaviour.completion is Completion.IMMEDIATE and behaviour.queue_seconds == 0
